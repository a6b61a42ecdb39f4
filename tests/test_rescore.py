"""experiments.rescore: a finished run scored again reproduces its own test metrics, adds
other conventions, and refuses overrides that would not describe the trained model."""

import json

import numpy as np
import pytest

from experiments import rescore
from experiments import train as exp_train


def _run(tmp_path):
  rng = np.random.default_rng(0)
  lines = ["user\titem"]
  for u in range(60):
    for i in rng.choice(40, size=8, replace=False):
      lines.append(f"u{u}\ti{i}")
  path = tmp_path / "clicks.tsv"
  path.write_text("\n".join(lines) + "\n")
  exp = exp_train.build_experiment(model="wmf", dataset=str(path), overrides=[
      "dim=4", "epochs=2", "metrics=recall@5,ndcg@10", "select_metric=recall@5"])
  workdir = tmp_path / "w"
  exp_train.run_experiment(exp, str(workdir), log=lambda s: None)
  return workdir


def test_rescore_reproduces_the_run_and_adds_the_authors_recall(tmp_path):
  workdir = _run(tmp_path)
  results = json.loads((workdir / "results.json").read_text())
  logs = []
  out = rescore.rescore(str(workdir), ("recall@5", "ndcg@10", "recall_train_test@5"),
                        log=logs.append)
  assert out["test"]["recall@5"] == pytest.approx(results["test"]["recall@5"], abs=1e-6)
  assert out["test"]["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)
  assert 0.0 < out["test"]["recall_train_test@5"] <= 1.0
  assert out["test"]["users_train_test"] >= out["test"]["users"] > 0
  assert out["overrides"] == {}
  # A scoring-time field may change (and is said); a data or training field may not.
  out = rescore.rescore(str(workdir), ("recall@5",), ["fold_in_chunk=7"], log=logs.append)
  assert out["overrides"] == {"fold_in_chunk": 7}
  assert any("fold_in_chunk=7" in line for line in logs)
  assert out["test"]["recall@5"] == pytest.approx(results["test"]["recall@5"], abs=1e-6)
  with pytest.raises(ValueError, match="only model config fields"):
    rescore.rescore(str(workdir), ("recall@5",), ["split_seed=3"], log=logs.append)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    rescore.rescore(str(tmp_path), ("recall@5",), log=logs.append)
