"""The runner: determinism, resume after SIGKILL, 1 device against 4, early stopping, outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import toy_model
from recjax.models.registry import get_model
from recjax.train.runner import TrainConfig, train_and_evaluate

HERE = Path(__file__).parent
SCRIPT = HERE / "run_toy.py"


_split = toy_model.make_split


def _config(**kw):
  base = dict(epochs=4, batch_size=32, eval_batch_size=33, n_devices=1, progress=False,
              metrics=("recall@20", "ndcg@100", "map@50"))
  base.update(kw)
  return TrainConfig(**base)


def _run_script(workdir, *extra, timeout=240):
  out = subprocess.run([sys.executable, str(SCRIPT), str(workdir), *extra], capture_output=True,
                       text=True, timeout=timeout, cwd=HERE.parent)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULTS ")][-1]
  return json.loads(line[len("RESULTS "):]), out.stdout


def test_same_seed_is_bit_identical_and_outputs_are_written(tmp_path):
  split = _split()
  logs = []
  a = train_and_evaluate(toy_model.make(), split, _config(), tmp_path / "a", log=logs.append)
  b = train_and_evaluate(toy_model.make(), split, _config(checkpoint=False), tmp_path / "b",
                         log=lambda s: None)
  assert a["validation"] == b["validation"] and a["test"] == b["test"]
  c = train_and_evaluate(toy_model.make(), split, _config(seed=1, checkpoint=False),
                         tmp_path / "c", log=lambda s: None)
  assert c["validation"] != a["validation"]
  results = json.loads((tmp_path / "a" / "results.json").read_text())
  assert set(results) >= {"validation", "test"}
  assert set(results["test"]) == {"recall@20", "ndcg@100", "map@50", "users"}
  records = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2, 3, 4]
  assert all(np.isfinite(r["train"]["loss"]) and "ndcg@100" in r["validation"] for r in records)
  assert json.loads((tmp_path / "a" / "config.json").read_text())["model"] == "toy"
  assert sum(l.startswith("epoch ") for l in logs) == 4 and any(l.startswith("test") for l in logs)
  # The model learns: training NLL falls and validation NDCG@100 beats popularity.
  assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
  pop = train_and_evaluate(get_model("popularity"), split, _config(checkpoint=False),
                           tmp_path / "pop", log=lambda s: None)
  assert a["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"]


def test_rerun_after_completion_resumes_and_reports_the_same(tmp_path):
  split = _split()
  a = train_and_evaluate(toy_model.make(), split, _config(), tmp_path, log=lambda s: None)
  logs = []
  b = train_and_evaluate(toy_model.make(), split, _config(), tmp_path, log=logs.append)
  assert any("resumed" in l for l in logs) and not any(l.startswith("epoch ") for l in logs)
  assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
  reference, _ = _run_script(tmp_path / "ref", "--epochs", "8")
  workdir = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, str(SCRIPT), str(workdir), "--epochs", "8"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 180
  while time.time() < deadline:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    if proc.poll() is not None:
      pytest.fail("the run finished before it could be killed")
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = len(metrics.read_text().splitlines())
  assert 3 <= done < 8, f"killed after {done} epochs"
  resumed, stdout = _run_script(workdir, "--epochs", "8")
  assert "resumed" in stdout
  assert resumed == reference
  records = [json.loads(l) for l in metrics.read_text().splitlines()]
  assert [r["epoch"] for r in records] == list(range(1, 9))
  ref_records = [json.loads(l) for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
  assert [r["validation"] for r in records] == [r["validation"] for r in ref_records]


def test_four_devices_match_one(tmp_path):
  one, _ = _run_script(tmp_path / "one", "--host_devices", "4", "--devices", "1", "--epochs", "3")
  four, _ = _run_script(tmp_path / "four", "--host_devices", "4", "--devices", "4", "--epochs", "3")
  for part in ("validation", "test"):
    assert one[part]["users"] == four[part]["users"]
    for k, v in one[part].items():
      np.testing.assert_allclose(four[part][k], v, rtol=1e-4, atol=1e-5, err_msg=f"{part} {k}")


def test_early_stopping_and_best_state(tmp_path):
  split = _split()
  config = _config(epochs=30, patience=2, checkpoint=False, select_metric="ndcg@100")
  model = toy_model.make(toy_model.Config(learning_rate=0.5))  # Overfits fast, so it stops early.
  res = train_and_evaluate(model, split, config, tmp_path, log=lambda s: None)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(records) < 30
  best = max(r["validation"]["ndcg@100"] for r in records)
  assert res["validation"]["ndcg@100"] == pytest.approx(best, abs=1e-6)
  assert records[res["best_epoch"] - 1]["validation"]["ndcg@100"] == pytest.approx(best, abs=1e-6)
  assert res["select_metric"] == "ndcg@100"


def test_select_metric_defaults_to_the_last_reported_metric(tmp_path):
  res = train_and_evaluate(toy_model.make(), _split(), _config(epochs=2, checkpoint=False),
                           tmp_path, log=lambda s: None)
  assert res["select_metric"] == "map@50"


def test_non_finite_loss_raises_with_a_clear_message(tmp_path):
  split = _split()
  model = toy_model.make(toy_model.Config(learning_rate=1e30, optimizer="sgd"))
  with pytest.raises(FloatingPointError, match="non-finite"):
    train_and_evaluate(model, split, _config(epochs=5), tmp_path, log=lambda s: None)


def test_train_step_compiles_once_across_epochs(tmp_path):
  import dataclasses
  model = toy_model.make()
  loss = model.loss
  traces = []

  def counting_loss(*args):
    traces.append(1)  # Runs only while jax traces the step.
    return loss(*args)

  model = dataclasses.replace(model, loss=counting_loss)
  train_and_evaluate(model, _split(), _config(epochs=3, checkpoint=False), tmp_path,
                     log=lambda s: None)
  assert len(traces) == 1  # 9 batches per epoch x 3 epochs, one trace (last batch is padded).


def test_progress_bar_logs_without_a_terminal():
  import io
  from recjax.train.progress import ProgressBar
  stream = io.StringIO()
  bar = ProgressBar(4, "epoch 1", log_every_s=0.0, stream=stream)
  for _ in range(4):
    bar.update()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 4 and lines[-1].startswith("epoch 1 [") and "4/4" in lines[-1]
  quiet = io.StringIO()
  bar = ProgressBar(4, "epoch 1", log_every_s=3600.0, stream=quiet)
  for _ in range(4):
    bar.update()
  assert quiet.getvalue().count("\n") == 1  # Only the final line within the hour.


def test_checkpoints_are_spaced_in_time_and_the_last_epoch_is_always_saved(tmp_path):
  from recjax.train.checkpoint import Checkpointer
  split = _split()
  train_and_evaluate(toy_model.make(), split, _config(epochs=4, checkpoint_every_s=3600.0),
                     tmp_path / "spaced", log=lambda s: None)
  ckpt = Checkpointer(tmp_path / "spaced")
  assert ckpt.manager.all_steps() == [4]  # None in between: an hour had not passed.
  train_and_evaluate(toy_model.make(), split, _config(epochs=4, checkpoint_every_s=0.0),
                     tmp_path / "every", log=lambda s: None)
  assert Checkpointer(tmp_path / "every").manager.all_steps() == [3, 4]  # keep_checkpoints=2.


def test_a_crash_between_record_and_checkpoint_loses_no_epoch(tmp_path, monkeypatch):
  """A run killed around an epoch's record and checkpoint resumes to the full record.

  (Checkpointing before writing the record lost epoch 2's record here: the
  resume started after the checkpointed epoch 2 and truncated nothing.)
  """
  from recjax.train import writer as writer_lib
  split = _split()
  config = _config(epochs=4, checkpoint_every_s=0.0)
  reference = train_and_evaluate(toy_model.make(), split, config, tmp_path / "ref",
                                 log=lambda s: None)
  real_write = writer_lib.MetricWriter.write

  def dies_writing_epoch_2(self, record):  # Killed as epoch 2's record was about to be written.
    if record["epoch"] == 2:
      raise KeyboardInterrupt("killed")
    real_write(self, record)

  monkeypatch.setattr(writer_lib.MetricWriter, "write", dies_writing_epoch_2)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(toy_model.make(), split, config, tmp_path / "run", log=lambda s: None)
  monkeypatch.setattr(writer_lib.MetricWriter, "write", real_write)
  resumed = train_and_evaluate(toy_model.make(), split, config, tmp_path / "run",
                               log=lambda s: None)
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2, 3, 4]
  assert resumed["test"] == reference["test"]
