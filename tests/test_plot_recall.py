"""experiments.plot_recall: averaging runs' recall@M, clear errors, and the PNG it writes."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import plot_recall


def _write(workdir, test, **extra):
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps({"test": test, **extra}))
  return workdir


def test_mean_std_over_seeds(tmp_path):
  a = _write(tmp_path / "a", {"recall_cdl@50": 0.1, "recall_cdl@100": 0.2, "recall@50": 0.9,
                              "users": 3})
  b = _write(tmp_path / "b", {"recall_cdl@50": 0.3, "recall_cdl@100": 0.4, "recall_cdl@300": 0.5})
  ms, mean, std = plot_recall.mean_std([a, b], "recall_cdl")
  assert ms == [50, 100]  # Only the cutoffs both runs have; recall@50 is another kind.
  np.testing.assert_allclose(mean, [0.2, 0.3])
  # Sample std (ddof 1, as the ledger's) of two values 0.2 apart: 0.2 / sqrt(2).
  np.testing.assert_allclose(std, [0.2 / 2 ** 0.5] * 2)
  with pytest.raises(KeyError, match="lacks"):
    plot_recall.mean_std([a, b], "recall_cdl", at=[300])


def test_a_gone_workdir_is_read_from_the_ledger(tmp_path):
  a = _write(tmp_path / "a", {"recall_cdl@300": 0.2})
  gone = tmp_path / "gone"
  records = {str(gone): {"workdir": str(gone), "test": {"recall_cdl@300": 0.4}}}
  _, mean, std = plot_recall.mean_std([a, gone], "recall_cdl", at=[300], records=records)
  np.testing.assert_allclose(mean, [0.3])
  np.testing.assert_allclose(std, [0.2 / 2 ** 0.5])
  with pytest.raises(FileNotFoundError, match="not in the ledger either"):
    plot_recall.load_metrics(tmp_path / "other", records=records)
  with pytest.raises(KeyError, match="ledger record has no 'test_cold'"):
    plot_recall.load_metrics(gone, "test_cold", records=records)


def test_rescored_metrics_in_the_ledger_fill_in_what_results_lack(tmp_path):
  a = _write(tmp_path / "a", {"recall_cdl@300": 0.2})
  gone = tmp_path / "gone"
  rescore = lambda m, **kw: {"test": {"map@500": m, "recall_cdl@300": 0.9}, **kw}
  records = {
      # The run's own recall wins over its rescoring's; mAP comes from the rescoring.
      str(a): {"test": {"recall_cdl@300": 0.2}, "rescored": [rescore(0.01)]},
      # Rescorings with overrides or cold-start are another evaluation: never used.
      str(gone): {"test": {"recall_cdl@300": 0.4},
                  "rescored": [rescore(0.5, overrides=["k=1"]), rescore(0.5, cold_start=True),
                               rescore(0.03)]},
  }
  assert plot_recall.load_metrics(a, records=records) == {"recall_cdl@300": 0.2, "map@500": 0.01}
  assert plot_recall.load_metrics(gone, records=records) == {"recall_cdl@300": 0.4,
                                                             "map@500": 0.03}
  _, mean, _ = plot_recall.mean_std([a, gone], "map", at=[500], records=records)
  np.testing.assert_allclose(mean, [0.02])
  # Without the ledger the same request names the run and what it lacks, as bad input.
  with pytest.raises(ValueError, match=r"a/results.json \[test\] lacks \['map@500'\]"):
    plot_recall.mean_std([a, gone], "map", at=[500], records={str(gone): records[str(gone)]})


def test_errors_name_the_file_and_section(tmp_path):
  with pytest.raises(ValueError, match="LABEL=WORKDIR"):
    plot_recall.parse_run("no-equals-sign")
  assert plot_recall.parse_run("CVAE=x,y") == ("CVAE", [pathlib.Path("x"), pathlib.Path("y")])
  with pytest.raises(FileNotFoundError, match="results.json"):
    plot_recall.load_metrics(tmp_path / "missing")
  run = _write(tmp_path / "r", {"recall_cdl@50": 0.1})
  with pytest.raises(KeyError, match="cold_start=true"):
    plot_recall.load_metrics(run, "test_cold")


def test_writes_png_and_prints_the_table(tmp_path):
  pytest.importorskip("matplotlib")
  a = _write(tmp_path / "a", {"recall_cdl@50": 0.1, "recall_cdl@300": 0.25},
             test_cold={"recall_cdl@50": 0.05, "recall_cdl@300": 0.15})
  b = _write(tmp_path / "b", {"recall_cdl@50": 0.1, "recall_cdl@300": 0.25},
             test_cold={"recall_cdl@50": 0.05, "recall_cdl@300": 0.15})
  out = tmp_path / "fig.png"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.plot_recall", "--kind=sweep", f"--run=0.01={a}",
       f"--run=100={a},{b}", "--results_key=test_cold", "--xlabel=lambda_r", f"--out={out}"],
      capture_output=True, text=True, check=True)
  assert "lambda_r=100 (n=2): recall_cdl@300=0.1500±0.0000" in proc.stdout
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_series_share_one_plot(tmp_path):
  pytest.importorskip("matplotlib")
  assert plot_recall.sweep_label("CRAE:2") == ("CRAE", 2.0)
  assert plot_recall.sweep_label("0.01") == ("", 0.01)
  with pytest.raises(ValueError, match="SERIES:X"):
    plot_recall.sweep_label("CRAE:two")
  a = _write(tmp_path / "a", {"recall_cdl@300": 0.2})
  b = _write(tmp_path / "b", {"recall_cdl@300": 0.3})
  out = tmp_path / "p.png"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.plot_recall", "--kind=sweep", "--nologx", "--xlabel=P",
       f"--run=CRAE:1={a}", f"--run=CRAE:2={b}", f"--run=CDL:1={b}", f"--out={out}"],
      capture_output=True, text=True, check=True)
  assert "CRAE P=2 (n=1): recall_cdl@300=0.3000" in proc.stdout
  assert "CDL P=1 (n=1): recall_cdl@300=0.3000" in proc.stdout
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_globs_expand_to_finished_runs_on_disk_and_in_the_ledger(tmp_path):
  s1 = _write(tmp_path / "P3-s1", {"recall_cdl@300": 0.2})
  s2 = _write(tmp_path / "P3-s2", {"recall_cdl@300": 0.4})
  (tmp_path / "P3-s3").mkdir()  # Unfinished: no results.json, so the glob skips it.
  gone = str(tmp_path / "P3-s4")
  records = {gone: {"workdir": gone, "test": {"recall_cdl@300": 0.6}}}
  dirs = plot_recall.expand_workdirs([pathlib.Path(f"{tmp_path}/P3-s*")], records)
  assert dirs == [s1, s2, pathlib.Path(gone)]
  _, mean, _ = plot_recall.mean_std(dirs, "recall_cdl", at=[300], records=records)
  np.testing.assert_allclose(mean, [0.4])
  assert plot_recall.expand_workdirs([pathlib.Path(f"{tmp_path}/P3-s*")]) == [s1, s2]
  with pytest.raises(ValueError, match="listed twice"):
    plot_recall.expand_workdirs([s1, pathlib.Path(f"{tmp_path}/P3-s*")])
  with pytest.raises(ValueError, match="P5-s\\*: matches no finished run on disk or in the ledger"):
    plot_recall.expand_workdirs([pathlib.Path(f"{tmp_path}/P5-s*")], records)


def _config(workdir, reg_v, split_seed):
  (workdir / "config.json").write_text(json.dumps({
      "model": "crae", "dataset": "citeulike-a",
      "model_config": {"reg_v": reg_v, "dim": 50},
      "data_config": {"protocol": "random-P3", "split_seed": split_seed},
      "train_config": {"epochs": 80, "seed": 0}, "train_shape": [5, 7], "train_nnz": 9 + split_seed}))


def test_one_label_averages_only_replicates(tmp_path):
  a = _write(tmp_path / "a", {"recall_cdl@300": 0.2})
  b = _write(tmp_path / "b", {"recall_cdl@300": 0.4})
  _config(a, reg_v=10.0, split_seed=1)
  _config(b, reg_v=10.0, split_seed=2)  # Another draw of the same experiment: fine.
  plot_recall.check_replicates("CRAE:3", [a, b])
  gone = str(tmp_path / "gone")  # Identity from the ledger when the workdir is gone.
  records = {gone: {"workdir": gone, "test": {"recall_cdl@300": 0.3}, "identity": {
      "model": "crae", "dataset": "citeulike-a", "model_config.reg_v": 1.0,
      "model_config.dim": 50, "data_config.protocol": "random-P3",
      "data_config.split_seed": 3, "train_config.epochs": 80, "train_config.seed": 0}}}
  with pytest.raises(ValueError, match=r"not a replicate .*model_config.reg_v: 10.0 there, 1.0 here"):
    plot_recall.check_replicates("CRAE:3", [a, b, pathlib.Path(gone)], records)
  _config(b, reg_v=1.0, split_seed=2)
  with pytest.raises(ValueError, match="model_config.reg_v"):
    plot_recall.check_replicates("CRAE:3", [a, b])
