"""experiments.ledger: finished runs recorded with their identity, refused when they change, and a
cross-validation choice remade from the ledger alone once the fold workdirs are gone (tiny WMF
runs, in process)."""

import json
import shutil

import numpy as np
import pytest

from experiments import cross_validate as cv
from experiments import ledger
from experiments import train as exp_train
from test_cross_validate import _files


def _config(tmp_path):
  return str(_files(tmp_path))


def _run(config, workdir, sets):
  exp = exp_train.build_experiment(config, overrides=sets)
  exp_train.run_experiment(exp, str(workdir), log=lambda s: None)


def _cv_runs(tmp_path, root):
  config = _config(tmp_path)
  for value in ("0.01", "1000"):
    for fold in (1, 2, 3):
      _run(config, cv.fold_workdir(root, 3, "reg", value, fold, 3),
           [f"protocol=random-P3-cv{fold}of3", "split_seed=1", f"reg={value}"])
  return config


def test_add_records_refuses_a_changed_run_and_replaces_on_request(tmp_path):
  config = _config(tmp_path)
  run = tmp_path / "runs" / "a"
  _run(config, run, ["reg=0.5"])
  (tmp_path / "runs" / "unfinished").mkdir()
  book = str(tmp_path / "ledger.jsonl")
  logs = []
  counts = ledger.add(book, ledger.expand([str(tmp_path / "runs" / "*")]), log=logs.append)
  assert counts == {"added": 1, "unchanged": 0, "replaced": 0, "unfinished": 1}
  assert any("unfinished" in line and "not recorded" in line for line in logs)
  record = ledger.load(book)[str(run)]
  results = json.loads((run / "results.json").read_text())
  assert record["test"] == results["test"]
  assert record["identity"]["model_config.reg"] == 0.5
  assert record["identity"]["data_config.protocol"] == "random-P3"
  assert record["epochs"] == 2 and record["ran_on"]["devices"]
  # Again: nothing changes.
  assert ledger.add(book, [str(run)], log=logs.append)["unchanged"] == 1
  # A changed figure is refused, naming what changed; --replace overwrites and says so.
  results["test"]["recall_cdl@10"] += 0.25
  (run / "results.json").write_text(json.dumps(results))
  with pytest.raises(ValueError, match=r"test\.recall_cdl@10: recorded"):
    ledger.add(book, [str(run)], log=logs.append)
  assert ledger.add(book, [str(run)], replace=True, log=logs.append)["replaced"] == 1
  assert ledger.load(book)[str(run)]["test"] == results["test"]
  with pytest.raises(ValueError, match="matches no workdir"):
    ledger.expand([str(tmp_path / "nothing" / "*")])


def test_select_from_the_ledger_once_the_workdirs_are_gone(tmp_path):
  root = str(tmp_path / "cv")
  _cv_runs(tmp_path, root)
  before = cv.select("reg", ["0.01", "1000"], [3], 3, root, "recall_cdl@10", log=lambda s: None)
  book = str(tmp_path / "ledger.jsonl")
  ledger.add(book, ledger.expand([f"{root}/P3/*/fold*"]), log=lambda s: None)
  shutil.rmtree(root)
  gone = cv.select("reg", ["0.01", "1000"], [3], 3, root, "recall_cdl@10", log=lambda s: None)
  assert gone["P3"]["chosen"] is None and gone["P3"]["scores"]["0.01"]["folds"] == 0
  logs = []
  after = cv.select("reg", ["0.01", "1000"], [3], 3, root, "recall_cdl@10", log=logs.append,
                    ledger=book, split_seed=1)
  assert after["P3"]["chosen"] == before["P3"]["chosen"]
  for value in ("0.01", "1000"):
    assert after["P3"]["scores"][value]["mean"] == before["P3"]["scores"][value]["mean"]
    assert after["P3"]["scores"][value]["from_ledger"] == 3
  assert any("3 from the ledger" in line for line in logs)
  # A record that is not the fold it is filed under is refused.
  records = ledger.load(book)
  key = str(cv.fold_workdir(root, 3, "reg", "1000", 2, 3))
  records[key]["identity"]["data_config.protocol"] = "random-P3-cv1of3"
  ledger._save(book, records)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match=r"not that fold: protocol 'random-P3-cv1of3', expected "
                                       r"'random-P3-cv2of3'"):
    cv.select("reg", ["1000"], [3], 3, root, "recall_cdl@10", log=lambda s: None, ledger=book)
  with pytest.raises(ValueError, match="split_seed 1, expected 2"):
    cv.select("reg", ["0.01"], [3], 3, root, "recall_cdl@10", log=lambda s: None, ledger=book,
              split_seed=2)


def test_rescored_figures_and_show(tmp_path):
  config = _config(tmp_path)
  runs = [tmp_path / "final" / f"s{s}" for s in (1, 2)]
  for s, run in zip((1, 2), runs):
    _run(config, run, [f"split_seed={s}"])
  book = str(tmp_path / "ledger.jsonl")
  ledger.add(book, [str(r) for r in runs], log=lambda s: None)
  out = tmp_path / "rescored.json"
  out.write_text(json.dumps({"workdir": str(runs[0]), "overrides": {}, "cold_start": False,
                             "exclude_fold_in": True, "test": {"map@5": 0.125}}))
  ledger.add_rescored(book, str(out), log=lambda s: None)
  ledger.add_rescored(book, str(out), log=lambda s: None)  # Attached once.
  records = ledger.load(book)
  assert len(records[str(runs[0])]["rescored"]) == 1
  assert ledger.metric(records[str(runs[0])], "map@5") == 0.125
  assert ledger.metric(records[str(runs[1])], "map@5") is None
  logs = []
  shown = ledger.show(book, [str(tmp_path / "final" / "s*")], ["recall_cdl@10", "map@5"],
                      log=logs.append)
  assert len(shown) == 2
  values = [records[str(r)]["test"]["recall_cdl@10"] for r in runs]
  mean, std = np.mean(values), np.std(values, ddof=1)
  assert f"recall_cdl@10: {mean:.4f} ± {std:.4f} over 2 of 2 runs" in logs
  assert "map@5: 0.1250 (no spread: one run) over 1 of 2 runs" in logs
  out.write_text(json.dumps({"workdir": str(tmp_path / "elsewhere"), "test": {}}))
  with pytest.raises(ValueError, match="is not in .*record it first"):
    ledger.add_rescored(book, str(out), log=lambda s: None)
  with open(book, "a", encoding="utf-8") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"ledger\.jsonl:3: not a ledger record"):
    ledger.load(book)


def test_the_repository_ledger_is_well_formed():
  """The committed ledger parses, and every record says what ran, where, and what it scored."""
  from pathlib import Path
  book = Path(__file__).resolve().parent.parent / ledger.DEFAULT_LEDGER
  if not book.is_file():
    pytest.skip(f"{book} not present")
  records = ledger.load(str(book))
  for key, record in records.items():
    assert key == record["workdir"]
    assert record["identity"]["model"] and record["identity"]["data_config.protocol"]
    assert record["test"] and record["ran_on"]["devices"] and record["recorded"]
    for name, value in record["test"].items():
      if name.startswith(("recall", "map", "ndcg", "precision")):
        assert 0.0 <= value <= 1.0, (key, name, value)


def test_show_averages_replicates_only(tmp_path):
  """Folds (and seeds) of one setting are averaged together; two settings are never mixed."""
  root = tmp_path / "cv"
  _cv_runs(tmp_path, root)
  book = str(tmp_path / "ledger.jsonl")
  ledger.add(book, ledger.expand([str(root / "P3" / "*" / "fold*")]), log=lambda s: None)
  records = ledger.load(book)
  logs = []
  ledger.show(book, [str(root / "P3" / "*" / "*")], ["recall_cdl@10"], log=logs.append)
  for value, reg in (("0.01", 0.01), ("1000", 1000.0)):
    values = [r["test"]["recall_cdl@10"] for k, r in records.items() if f"reg={value}" in k]
    assert len(values) == 3
    i = logs.index(f"group wmf {tmp_path / 'clicks.tsv'} random-P3-cv*of3 reg={reg}:")
    assert logs[i + 1] == (f"recall_cdl@10: {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
                           " over 3 of 3 runs")
  assert sum(line.startswith("group ") for line in logs) == 2
