"""experiments.cross_validate: fold jobs on the random-P<P>-cv<f>of<k> protocols, the choice
by fold mean, and the final runs with it (tiny WMF runs, in process)."""

import json
import shlex

import numpy as np
import pytest

from experiments import cross_validate as cv
from experiments import train as exp_train


def _files(tmp_path):
  rng = np.random.default_rng(0)
  lines = ["user\titem"]
  for u in range(40):
    for i in rng.choice(30, size=int(rng.integers(6, 12)), replace=False):
      lines.append(f"u{u}\ti{i}")
  data = tmp_path / "clicks.tsv"
  data.write_text("\n".join(lines) + "\n")
  config = tmp_path / "wmf_cv.py"
  config.write_text(
      "def get_config():\n"
      f"  return {{'model': 'wmf', 'dataset': {str(data)!r}, 'model_config': {{'dim': 4}},\n"
      "          'data': {'protocol': 'random-P3', 'split_seed': 1},\n"
      "          'train': {'epochs': 2, 'eval_every': 2, 'metrics': ('recall_cdl@10',),\n"
      "                    'select_metric': 'recall_cdl@10'}}\n")
  return config


def _run_job(line):
  """Runs a jobs-file line in process (experiments.main's flags, parsed back)."""
  args = shlex.split(line.split(" ", 1)[1])
  config = next(a.split("=", 1)[1] for a in args if a.startswith("--config="))
  workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
  sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
  exp = exp_train.build_experiment(config, overrides=sets)
  exp_train.run_experiment(exp, workdir, log=lambda s: None)
  return sets


def test_fold_jobs_select_and_final_runs(tmp_path):
  config = _files(tmp_path)
  root = str(tmp_path / "cv")
  lines = cv.fold_jobs(str(config), "reg", ["0.01", "1000"], [3], 3, 1, root)
  assert len(lines) == 6 and len({l.split()[0] for l in lines}) == 6
  for line in lines:
    sets = _run_job(line)
    assert sets[0].startswith("protocol=random-P3-cv") and sets[1] == "split_seed=1"
  logs = []
  chosen = cv.select("reg", ["0.01", "1000"], [3], 3, root, "recall_cdl@10", log=logs.append)
  means = {}
  for value in ("0.01", "1000"):
    got = [json.loads((cv.fold_workdir(root, 3, "reg", value, f, 3) / "results.json")
                      .read_text())["test"]["recall_cdl@10"] for f in (1, 2, 3)]
    means[value] = np.mean(got)
    assert chosen["P3"]["scores"][value]["mean"] == pytest.approx(means[value])
    assert chosen["P3"]["scores"][value]["folds"] == 3
  assert chosen["P3"]["chosen"] == max(means, key=means.get)
  # The fold runs never saw random-P3's test clicks: each run's training matrix plus its
  # held-out fold is exactly random-P3's training set.
  w = cv.fold_workdir(root, 3, "reg", "0.01", 1, 3)
  info = json.loads((w / "config.json").read_text())["data"]["split"]
  assert info["train_interactions"] + info["validation_interactions"] == 40 * 3
  final = cv.final_jobs(str(config), "reg", chosen, [1, 2], str(tmp_path / "final"))
  assert len(final) == 2
  assert all(f"protocol=random-P3" in l and f"reg={chosen['P3']['chosen']}" in l for l in final)
  # An unfinished fold: reported, nothing chosen.
  (cv.fold_workdir(root, 3, "reg", "1000", 2, 3) / "results.json").unlink()
  again = cv.select("reg", ["0.01", "1000"], [3], 3, root, "recall_cdl@10", log=logs.append)
  assert again["P3"]["chosen"] is None and again["P3"]["scores"]["1000"]["folds"] == 2
  assert cv.final_jobs(str(config), "reg", again, [1], str(tmp_path / "final")) == []
  named = cv.fold_jobs(str(config), "reg", ["1"], [2], 2, 1, root, prefix="wmf-")
  assert [l.split()[0] for l in named] == ["wmf-cv-P2-reg1-f1of2", "wmf-cv-P2-reg1-f2of2"]
  assert cv.final_jobs(str(config), "reg", chosen, [1], root, prefix="wmf-")[0].startswith(
      "wmf-final-P3-s1 ")
  with pytest.raises(ValueError, match="P = 1 is not cross-validated"):
    cv.fold_jobs(str(config), "reg", ["1"], [1], 5, 1, root)


def _fake_folds(root, p, field, table, folds=5):
  """results.json of fold runs with the given scores (value -> list), no training."""
  for value, got in table.items():
    for fold, x in enumerate(got, 1):
      w = cv.fold_workdir(root, p, field, value, fold, folds)
      w.mkdir(parents=True)
      (w / "results.json").write_text(json.dumps({"test": {"m": x}}))


def test_racing_chooses_only_when_unfinished_values_cannot_catch_up(tmp_path):
  root = str(tmp_path / "cv")
  # "10" is complete, mean 0.148; the best fold of any value is 0.16.  Hand-worked:
  # "1" would need (5 * 0.148 - 0.21) / 3 = 0.17667 on its 3 other folds, "100"
  # (0.74 - 0.375) / 2 = 0.1825: both above 0.16, so both are ruled out.
  _fake_folds(root, 3, "reg", {"10": [0.14, 0.15, 0.14, 0.15, 0.16], "1": [0.10, 0.11],
                               "100": [0.13, 0.12, 0.125]})
  values = ["1", "10", "100"]
  logs = []
  strict = cv.select("reg", values, [3], 5, root, "m", log=logs.append)
  assert strict["P3"]["chosen"] is None and "raced" not in strict["P3"]
  raced = cv.select("reg", values, [3], 5, root, "m", log=logs.append, racing=True)
  assert raced["P3"]["chosen"] == "10"
  assert raced["P3"]["raced"]["1"]["needed"] == pytest.approx(0.17666667)
  assert raced["P3"]["raced"]["100"]["needed"] == pytest.approx(0.1825)
  assert raced["P3"]["raced"]["100"]["ceiling"] == pytest.approx(0.16)
  assert "chosen reg=10 by racing" in logs[-1] and "reg=1 ruled out after 2 of 5" in logs[-1]
  # A value that could still catch up, (0.74 - 0.305) / 3 = 0.145 <= 0.16, blocks the choice;
  # so does a value with no fold at all, and so does having no complete value.
  _fake_folds(root, 2, "reg", {"10": [0.14, 0.15, 0.14, 0.15, 0.16], "1": [0.15, 0.155]})
  assert cv.select("reg", ["1", "10"], [2], 5, root, "m", log=logs.append,
                   racing=True)["P2"]["chosen"] is None
  assert cv.select("reg", ["10", "100", "1000"], [3], 5, root, "m", log=logs.append,
                   racing=True)["P3"]["chosen"] is None
  assert cv.race({"a": {"mean": 0.1, "folds": 2, "scores": [0.1, 0.1]}}, 5) == (None, {})
