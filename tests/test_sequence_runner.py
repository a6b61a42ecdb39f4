"""The sequence models under the runner: every one trains, evaluates, resumes after SIGKILL."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_sequence_toy as toy  # noqa: E402
from recjax.train import config as train_config  # noqa: E402
from recjax.train import writer as writer_lib  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "run_sequence_toy.py"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return toy.write_events(tmp_path_factory.mktemp("seq") / "events.csv")


def _results(workdir):
  return json.loads((Path(workdir) / "results.json").read_text())


@pytest.mark.parametrize("model", ["uniform", "unigram", "bigram", "hmm", "mf-logcount"])
def test_closed_form_models_train_and_report_e(tmp_path, data, model):
  res = toy.run(tmp_path / model, model, data, epochs=2, log=lambda s: None)
  test = res["test"]
  n_items = res["run"]["train_shape"][1]
  assert res["validation"] is None and res["best_epoch"] == 2  # No validation: the last epoch.
  assert test["users"] == 30 and math.isfinite(test["error"]) and test["neg_error"] == -test["error"]
  assert len(test["per_user_error"]) == 30 and len(test["history_entropy"]) == 30
  assert np.nanmean(np.array(test["per_user_error"], float)) == pytest.approx(test["error"])
  if model == "uniform":
    assert test["error"] == pytest.approx(math.log(n_items), rel=1e-6)
  else:  # The users repeat their own items: every model beats uniform.
    assert test["error"] < math.log(n_items)
  assert (tmp_path / model / "model" / "model.json").is_file()  # Exported.


@pytest.mark.parametrize("model", ["p-gru", "c-tanh"])
def test_recurrent_variants_train_with_validation(tmp_path, data, model):
  res = toy.run(tmp_path / model, model, data, epochs=1, log=lambda s: None)
  assert res["run"]["model"] == model and res["select_metric"] == "neg_error"
  assert math.isfinite(res["validation"]["error"]) and math.isfinite(res["test"]["error"])
  config = json.loads((tmp_path / model / "config.json").read_text())
  assert config["model_config"]["pooled"] == (model == "p-gru")
  assert config["model_config"]["cell"] == ("tanh" if model == "c-tanh" else "gru")


def _killed_then_resumed(tmp_path, data, model, kill_at, epochs=3):
  env = {**os.environ, writer_lib.KILL_AT_ENV: kill_at}
  out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "killed"), model, str(data),
                        "--epochs", str(epochs)], env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == -9, out.stderr[-2000:]  # SIGKILL.
  assert not (tmp_path / "killed" / "results.json").exists()
  lines = []
  resumed = toy.run(tmp_path / "killed", model, data, epochs=epochs, log=lines.append)
  assert any("resumed from" in line for line in lines), lines
  straight = toy.run(tmp_path / "straight", model, data, epochs=epochs, log=lambda s: None)
  for part in ("validation", "test"):
    assert resumed[part] == straight[part]
  assert resumed["best_epoch"] == straight["best_epoch"]
  metrics = lambda d: (tmp_path / d / "metrics.jsonl").read_text().splitlines()
  strip = lambda ls: [{k: v for k, v in json.loads(l).items()
                       if "seconds" not in k and "memory" not in k} for l in ls]
  assert strip(metrics("killed")) == strip(metrics("straight"))


def test_cgru_resumes_after_sigkill_to_the_same_result(tmp_path, data):
  # Killed after epoch 2's record, before its checkpoint: epoch 2 is recomputed.
  _killed_then_resumed(tmp_path, data, "c-gru", "after_record:2")


def test_hmm_resumes_at_its_em_iteration_after_sigkill(tmp_path, data):
  _killed_then_resumed(tmp_path, data, "hmm", "after_save:1")


def test_sequence_metrics_are_checked():
  with pytest.raises(ValueError, match="does not apply to this run's sequence protocol"):
    train_config.check_metrics(train_config.TrainConfig(), "sequence")
  with pytest.raises(ValueError, match="use 'neg_error'"):
    train_config.check_metrics(train_config.TrainConfig(metrics=("error",)), "sequence")
  with pytest.raises(ValueError, match="'error' is a sequence metric"):
    train_config.check_metrics(train_config.TrainConfig(metrics=("error", "recall@5")), "ranking")


def test_a_sequence_model_on_a_ranking_split_says_which_protocol(tmp_path, data):
  from experiments import train as exp_train
  exp = exp_train.build_experiment(model="bigram", dataset=str(data), overrides=[
      "binarize_threshold=none", "min_user_count=none", "progress=false"])
  with pytest.raises(ValueError, match="protocol=sequence-tail"):
    exp_train.run_experiment(exp, str(tmp_path / "w"), log=lambda s: None)


def test_figure_reads_the_runs_results(tmp_path, data):
  from experiments import plot_sequence_figure as fig
  for model in ("unigram", "bigram"):
    toy.run(tmp_path / model, model, data, epochs=1, log=lambda s: None)
  runs = [fig.load_run(tmp_path / m) for m in ("unigram", "bigram")]
  assert [r["model"] for r in runs] == ["unigram", "bigram"]
  assert runs[0]["uniform_error"] == pytest.approx(math.log(25))
  assert len(runs[1]["per_user_error"]) == len(runs[1]["history_entropy"]) == 30
  with pytest.raises(FileNotFoundError, match="no results.json"):
    fig.load_run(tmp_path / "missing")
  pytest.importorskip("matplotlib")
  fig.plot(runs, tmp_path / "figure2.png")
  assert (tmp_path / "figure2.png").stat().st_size > 0
