"""A workdir written before a config field existed: resumable at that field's default only."""

import dataclasses
import json

import pytest

import toy_model
from recjax.train.runner import TrainConfig, train_and_evaluate
from recjax.train.workdir import WorkdirMismatch, check_workdir


def _info(**model_config):
  return {"model": "toy", "model_config": {"dim": 8, **model_config},
          "train_config": {"epochs": 2, "seed": 0}, "train_shape": [3, 4], "train_nnz": 5}


DEFAULTS = {"model_config": {"dim": 8, "new_option": "off"}, "train_config": {"seed": 0}}


def _write(path, info):
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(json.dumps(info))


def test_a_missing_field_at_its_default_is_accepted_and_logged(tmp_path):
  _write(tmp_path, _info())
  logs = []
  check_workdir(tmp_path, _info(new_option="off"), 2, False, logs.append, DEFAULTS)
  assert len(logs) == 1 and "model_config.new_option" in logs[0] and "accepted" in logs[0]


def test_a_missing_field_away_from_its_default_is_refused(tmp_path):
  _write(tmp_path, _info())
  with pytest.raises(WorkdirMismatch, match=r'model_config.new_option: <unset> -> "on"'):
    check_workdir(tmp_path, _info(new_option="on"), 2, False, lambda s: None, DEFAULTS)
  # Without the defaults nothing is known about the field: refused as before.
  with pytest.raises(WorkdirMismatch, match="new_option"):
    check_workdir(tmp_path, _info(new_option="off"), 2, False, lambda s: None)


def test_a_field_the_old_run_had_and_this_one_lacks_is_refused(tmp_path):
  _write(tmp_path, _info(old_option=1))
  with pytest.raises(WorkdirMismatch, match=r"model_config.old_option: 1 -> <unset>"):
    check_workdir(tmp_path, _info(), 2, False, lambda s: None, DEFAULTS)
  # A recorded field that differs is refused even if the new value is the default.
  _write(tmp_path, _info(new_option="on"))
  with pytest.raises(WorkdirMismatch, match="new_option"):
    check_workdir(tmp_path, _info(new_option="off"), 2, False, lambda s: None, DEFAULTS)


def test_runner_resumes_a_workdir_written_before_a_field_existed(tmp_path):
  split = toy_model.make_split()
  config = TrainConfig(epochs=2, batch_size=32, eval_batch_size=33, n_devices=1, progress=False,
                       metrics=("recall@20",))
  first = train_and_evaluate(toy_model.make(), split, config, tmp_path, log=lambda s: None)
  path = tmp_path / "config.json"
  info = json.loads(path.read_text())
  del info["model_config"]["dropout"], info["train_config"]["seed"]  # As an older recjax wrote it.
  path.write_text(json.dumps(info))
  logs = []
  again = train_and_evaluate(toy_model.make(), split, config, tmp_path, log=logs.append)
  assert again["test"] == first["test"]
  assert any("model_config.dropout=0.5" in l and "accepted" in l for l in logs)
  # config.json now records the fields.
  assert json.loads(path.read_text())["model_config"]["dropout"] == 0.5
  # Away from the default the same workdir is refused, naming the field.
  path.write_text(json.dumps(info))
  other = toy_model.make(dataclasses.replace(toy_model.Config(), dropout=0.1))
  with pytest.raises(WorkdirMismatch, match="model_config.dropout"):
    train_and_evaluate(other, split, config, tmp_path, log=lambda s: None)
