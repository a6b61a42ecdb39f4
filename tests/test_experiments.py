"""The experiment binary and the data pipeline, end to end on real and user-supplied data."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import train as exp_train
from recjax.data import pipeline, registry
from recjax.data.types import Dataset, Interactions
from recjax.models.registry import get_model, list_models
from recjax.train.runner import TrainConfig, train_and_evaluate
from conftest import REPO


def _main(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], capture_output=True,
                        text=True, timeout=timeout, cwd=REPO)


def test_quickstart_command_trains_ease_on_ml100k(tmp_path, shared_data):
  out = _main("--model=ease", "--dataset=ml-100k", f"--data_dir={shared_data}",
              f"--workdir={tmp_path}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "test (" in out.stdout and "recall@20=" in out.stdout and "ndcg@100=" in out.stdout
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["test"]) == {"recall@20", "recall@50", "ndcg@100", "users"}
  assert 0.1 < results["test"]["ndcg@100"] < 1.0
  assert results["run"]["data"]["resolved"]["binarize_threshold"] == 4.0


def test_unknown_model_and_dataset_list_the_valid_names(tmp_path):
  out = _main("--model=nope", "--dataset=ml-100k", f"--workdir={tmp_path}")
  assert out.returncode != 0 and "ease" in out.stderr and "popularity" in out.stderr
  out = _main("--model=ease", "--dataset=not-a-dataset", f"--workdir={tmp_path}")
  assert out.returncode != 0
  assert "ml-1m-lightgcn" in out.stderr and "gowalla" in out.stderr


def test_overrides_are_typed_and_checked():
  groups = exp_train.split_overrides("ease", ["l2=250", "epochs=3", "heldout_users=0.2",
                                              "train.metrics=recall@5,ndcg@10", "checkpoint=false",
                                              "item_chunk=none"])
  assert groups["model"] == {"l2": 250.0}
  assert groups["train"] == {"epochs": 3, "metrics": ("recall@5", "ndcg@10"), "checkpoint": False,
                             "item_chunk": None}
  assert groups["data"] == {"heldout_users": 0.2}
  with pytest.raises(ValueError, match="no config field 'lambda'"):
    exp_train.split_overrides("ease", ["lambda=3"])
  with pytest.raises(ValueError, match="expected float"):
    exp_train.split_overrides("ease", ["l2=big"])
  with pytest.raises(ValueError, match="key=value"):
    exp_train.split_overrides("ease", ["l2"])


def test_build_experiment_precedence_and_errors(tmp_path):
  config = tmp_path / "c.py"
  config.write_text('def get_config():\n  return {"model": "ease", "dataset": "ml-100k",'
                    ' "model_config": {"l2": 10.0}, "train": {"epochs": 1}}\n')
  exp = exp_train.build_experiment(str(config), dataset="ml-1m-lightgcn",
                                   overrides=["l2=250", "epochs=2", "protocol=strong"])
  assert exp == {"model": "ease", "dataset": "ml-1m-lightgcn", "model_config": {"l2": 250.0},
                 "train": {"epochs": 2}, "data": {"protocol": "strong"}}
  assert exp_train.build_experiment(dataset="x", default_model="mult-vae")["model"] == "mult-vae"
  with pytest.raises(ValueError, match="--dataset is required"):
    exp_train.build_experiment(model="ease")
  with pytest.raises(ValueError, match="valid models: .*ease"):
    exp_train.build_experiment(model="nope", dataset="x")
  with pytest.raises(ValueError, match="runs model 'crae' only, got 'ease'"):
    exp_train.build_experiment(str(config), only_model="crae", default_model="crae")
  with pytest.raises(FileNotFoundError, match="not found"):
    exp_train.build_experiment(str(tmp_path / "missing.py"))


def test_user_supplied_file_runs_through_the_binary(tmp_path):
  rng = np.random.default_rng(0)
  lines = ["user,item,rating"]
  for u in range(120):
    for i in rng.choice(60, size=12, replace=False):
      lines.append(f"u{u},item{i},{rng.integers(1, 6)}")
  path = tmp_path / "mine.csv"
  path.write_text("\n".join(lines) + "\n")
  out = _main("--model=popularity", f"--dataset={path}", f"--workdir={tmp_path / 'wd'}",
              "--set", "heldout_users=20", "--set", "metrics=recall@5,ndcg@10")
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "wd" / "results.json").read_text())
  assert set(results["test"]) == {"recall@5", "ndcg@10", "users"}
  bad = tmp_path / "bad.csv"
  bad.write_text("user,item,rating\nu1,i1,5\nu2,i2,five\n")
  out = _main("--model=popularity", f"--dataset={bad}", f"--workdir={tmp_path / 'wd2'}")
  assert out.returncode != 0 and "bad.csv:3" in out.stderr


def _toy_dataset(kind):
  users = np.repeat(np.arange(50), 12)
  items = np.tile(np.arange(12), 50)
  values = np.where(items % 2 == 0, 5.0, 2.0).astype(np.float32)
  inter = Interactions(users=users, items=items, values=values, timestamps=None,
                       user_ids=np.arange(50), item_ids=np.arange(12),
                       duplicate_rule="last" if kind == "explicit" else "sum", name="toy")
  return Dataset(name="toy", interactions=inter, kind=kind)


def test_pipeline_defaults_per_dataset_kind():
  explicit = pipeline.resolve(pipeline.DataConfig(), _toy_dataset("explicit"))
  assert (explicit.binarize_threshold, explicit.min_user_count, explicit.heldout_users) == (4.0, 5, 0.1)
  implicit = pipeline.resolve(pipeline.DataConfig(), _toy_dataset("implicit"))
  assert (implicit.binarize_threshold, implicit.min_user_count) == (None, None)
  split, info = pipeline.ranking_split(_toy_dataset("explicit"), pipeline.DataConfig(heldout_users=5))
  assert info["preprocessed"] == {"users": 50, "items": 6, "interactions": 300}  # only 5-star items
  assert split.validation.fold_in.shape[0] == 5 and split.test.fold_in.shape[0] == 5
  ml20m = registry.dataset_spec("ml-20m")
  assert (ml20m.heldout_users, ml20m.binarize_threshold, ml20m.min_user_count) == (10_000, 4.0, 5)


def test_ease_is_far_above_popularity_on_ml1m_lightgcn(tmp_path, shared_data):
  dataset = registry.load_dataset("ml-1m-lightgcn", data_dir=shared_data)
  split, info = pipeline.ranking_split(dataset, pipeline.DataConfig())
  assert info["split"]["validation_users"] == info["split"]["test_users"] == 603
  config = TrainConfig(checkpoint=False, progress=False)
  ease = train_and_evaluate(get_model("ease", {"l2": 500.0}), split, config, tmp_path / "e",
                            log=lambda s: None)
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "p",
                           log=lambda s: None)
  assert ease["test"]["ndcg@100"] > 1.5 * pop["test"]["ndcg@100"]
  assert ease["test"]["recall@20"] > 1.5 * pop["test"]["recall@20"]


def test_registry_lists_models():
  assert {"ease", "popularity"} <= set(list_models())
