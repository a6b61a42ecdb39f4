"""Files and disk: kills at exact points, unfinished saves, a full disk, a read-only workdir.

The kill tests run tests/run_toy.py in subprocesses and SIGKILL it at an exact
point with the RECJAX_TEST_KILL_AT test hook (recjax/train/writer.py):

* ``after_record:N`` -- epoch N's metrics.jsonl record is on disk, its checkpoint not begun;
* ``during_save:N`` -- epoch N's checkpoint is written to N.orbax-checkpoint-tmp, not renamed;
* ``after_save:N`` -- epoch N's checkpoint is complete.

Whatever the point, the rerun of the same command ends with the metrics.jsonl
and results of the uninterrupted run (no gap, no duplicate).

A full disk is a real one where the tests may mount a 2 MB tmpfs (root with
CAP_SYS_ADMIN); elsewhere the same checks run with an injected ENOSPC.  A
read-only workdir is a tmpfs remounted read-only, a chmod-ed folder when not
root, or injected EACCES.
"""

import contextlib
import errno
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import toy_model
from recjax.train import checkpoint as checkpoint_lib
from recjax.train import writer as writer_lib
from recjax.train.checkpoint import Checkpointer, CheckpointWriteError
from recjax.train.runner import TrainConfig, train_and_evaluate
from recjax.train.writer import DiskWriteError, MetricWriter, write_json

HERE = Path(__file__).parent
SCRIPT = HERE / "run_toy.py"
EPOCHS = 3
VOLATILE = ("seconds", "block_seconds", "peak_host_memory_gb")  # Timing and memory differ per run.


def _run(workdir, kill_at=None):
  env = dict(os.environ)
  env.pop(writer_lib.KILL_AT_ENV, None)
  if kill_at:
    env[writer_lib.KILL_AT_ENV] = kill_at
  return subprocess.run([sys.executable, str(SCRIPT), str(workdir), "--epochs", str(EPOCHS)],
                        capture_output=True, text=True, timeout=240, cwd=HERE.parent, env=env)


def _results(out):
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULTS ")][-1]
  return json.loads(line[len("RESULTS "):])


def _records(workdir):
  return [{k: v for k, v in r.items() if k not in VOLATILE}
          for r in MetricWriter(workdir).read()]


def _entries(workdir):
  return sorted(p.name for p in (Path(workdir) / "checkpoints").iterdir())


def _config(epochs):  # As tests/run_toy.py trains.
  return TrainConfig(epochs=epochs, batch_size=32, eval_batch_size=33, n_devices=1,
                     progress=False, checkpoint_every_s=0.0,
                     metrics=("recall@20", "ndcg@100", "map@50"))


# Each run of the same command is killed at the next point; after each kill the workdir holds
# (metrics.jsonl epochs, checkpoints/ entries).  Every point meets every case: no checkpoint
# yet, a checkpoint before the killed epoch, the last epoch.
KILLS = [
    ("during_save:1", [1], ["1.orbax-checkpoint-tmp"]),
    ("after_record:2", [1, 2], ["1"]),  # The rerun started over (no checkpoint).
    ("during_save:2", [1, 2], ["1", "2.orbax-checkpoint-tmp"]),
    ("after_save:2", [1, 2], ["1", "2"]),
    ("after_record:3", [1, 2, 3], ["1", "2"]),
    ("during_save:3", [1, 2, 3], ["1", "2", "3.orbax-checkpoint-tmp"]),
    ("after_save:3", [1, 2, 3], ["2", "3"]),  # Killed before the model export.
]


def test_a_kill_at_any_point_resumes_to_the_uninterrupted_metrics(tmp_path):
  reference = train_and_evaluate(toy_model.make(), toy_model.make_split(), _config(EPOCHS),
                                 tmp_path / "ref", log=lambda s: None)
  ref_results = json.loads(json.dumps({k: reference[k] for k in ("validation", "test")}))
  ref_records = _records(tmp_path / "ref")
  assert [r["epoch"] for r in ref_records] == list(range(1, EPOCHS + 1))
  workdir = tmp_path / "run"
  previous = None
  for kill_at, epochs, entries in KILLS + [(None, None, ["2", "3"])]:
    out = _run(workdir, kill_at)
    removed = [l for l in out.stdout.splitlines() if "unfinished checkpoint save" in l]
    if previous is not None and previous.startswith("during_save"):
      tmp = f"{previous.split(':')[1]}{checkpoint_lib.TMP_SUFFIX}"
      assert removed == [f"removed the unfinished checkpoint save of an interrupted run "
                         f"({tmp}) under {(workdir / 'checkpoints').absolute()}"], out.stdout
    else:
      assert not removed, out.stdout
    assert _entries(workdir) == entries, kill_at
    if kill_at is None:
      break
    assert out.returncode == -signal.SIGKILL, (kill_at, out.returncode, out.stderr[-2000:])
    assert [r["epoch"] for r in _records(workdir)] == epochs, kill_at  # Killed where it says.
    previous = kill_at
  assert "resumed from" in out.stdout
  assert _results(out) == ref_results
  assert _records(workdir) == ref_records  # Same epochs, no gap, no duplicate, same values.


def test_opening_removes_stale_temporaries_and_says_so(tmp_path):
  ckpt_dir = tmp_path / "checkpoints"
  (ckpt_dir / "7.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
  (ckpt_dir / "7.orbax-checkpoint-tmp" / "state" / "x").write_text("partial")
  (ckpt_dir / "3").mkdir()  # Not a temporary: kept.
  logs = []
  ckpt = Checkpointer(tmp_path, 2, log=logs.append)
  assert ckpt.removed_temporaries == ["7.orbax-checkpoint-tmp"]
  assert sorted(p.name for p in ckpt_dir.iterdir()) == ["3"]
  assert logs == [f"removed the unfinished checkpoint save of an interrupted run "
                  f"(7.orbax-checkpoint-tmp) under {ckpt_dir.absolute()}"]
  ckpt.close()
  logs.clear()
  Checkpointer(tmp_path, 2, log=logs.append).close()
  assert logs == []


def test_metrics_survive_a_torn_line_and_truncation_is_atomic(tmp_path):
  writer = MetricWriter(tmp_path)
  for epoch in (1, 2, 3):
    writer.write({"epoch": epoch, "loss": float(epoch)})
  with open(writer.path, "a") as f:
    f.write('{"epoch": 4, "lo')  # A line torn by a full disk or a power cut.
  assert [r["epoch"] for r in writer.read()] == [1, 2, 3]
  writer.truncate_after(2)
  assert writer.path.read_text() == '{"epoch": 1, "loss": 1.0}\n{"epoch": 2, "loss": 2.0}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # No temp file left.


# -- A full disk ---------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size: str) -> bool:
  if os.geteuid() != 0:
    return False
  path.mkdir(parents=True, exist_ok=True)
  out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
  return out.returncode == 0


def _umount(path: Path):
  subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path: Path, leave_bytes: int) -> Path:
  filler = path / "filler"
  free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
  with open(filler, "wb") as f:
    f.write(b"\0" * max(free - leave_bytes, 0))
  return filler


def _fake_full_disk(monkeypatch):
  """Where no tmpfs can be mounted: the save fails as orbax 0.12 does on a full disk (the
  error as tensorstore words it, and a background thread logging it with a traceback)."""
  real = checkpoint_lib.ocp.CheckpointManager.save

  def full(self, step, *args, **kwargs):
    if step < 2:
      return real(self, step, *args, **kwargs)
    err = ValueError('RESOURCE_EXHAUSTED: Error writing local file "x/_sharding": Failed '
                     'writing: Failed to write 2553 bytes to file 9: No space left on device')

    def background():
      try:
        raise err
      except ValueError:
        logging.getLogger("absl").exception("_SignalingThread.run() raised an exception: %s", err)

    t = threading.Thread(target=background)
    t.start()
    t.join()
    raise err

  monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", full)


def test_a_full_disk_stops_with_one_line_and_the_rerun_resumes(tmp_path, capfd, monkeypatch):
  split = toy_model.make_split()
  reference = train_and_evaluate(toy_model.make(), split, _config(EPOCHS), tmp_path / "ref",
                                 log=lambda s: None)
  disk = tmp_path / "disk"
  real_disk = _mount_tmpfs(disk, "2m")
  try:
    workdir = disk / "w"
    train_and_evaluate(toy_model.make(), split, _config(1), workdir, log=lambda s: None)
    if real_disk:
      filler = _fill(disk, 40 << 10)  # Room for the next record, not for the next checkpoint.
    else:
      _fake_full_disk(monkeypatch)
    capfd.readouterr()
    with pytest.raises(CheckpointWriteError) as info:
      train_and_evaluate(toy_model.make(), split, _config(EPOCHS), workdir, log=lambda s: None)
    ckpt_dir = (workdir / "checkpoints").absolute()
    assert str(info.value) == (
        f"no space left on device while saving the checkpoint of epoch 2 under {ckpt_dir}; "
        f"the previous checkpoint (epoch 1) is kept; free space and rerun the same command "
        f"to resume")
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    gc.collect()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "ERROR" not in out + err, (out + err)[-3000:]
    assert _entries(workdir) == ["1"]  # The unfinished save is gone, the previous one kept.
    if real_disk:
      filler.unlink()
    else:
      monkeypatch.undo()
    resumed = train_and_evaluate(toy_model.make(), split, _config(EPOCHS), workdir,
                                 log=lambda s: None)
    assert resumed["test"] == reference["test"] and resumed["validation"] == reference["validation"]
    assert _records(workdir) == _records(tmp_path / "ref")
  finally:
    if real_disk:
      _umount(disk)


def test_a_full_disk_during_the_model_export_is_one_line(tmp_path, capfd):
  import jax
  import numpy as np
  import scipy.sparse as sp
  from recjax.train import artifact
  disk = tmp_path / "disk"
  if not _mount_tmpfs(disk, "1m"):
    pytest.skip("needs a small tmpfs (root with CAP_SYS_ADMIN) for a real full disk")
  try:
    train = sp.random(4, 3, density=0.5, format="csr", random_state=0)
    params = {"big": jax.random.normal(jax.random.PRNGKey(0), (512, 1024))}  # 2 MB > the disk.
    capfd.readouterr()
    with pytest.raises(DiskWriteError) as info:
      artifact.export(disk / "w", model=toy_model.make(), params=params, factors={}, train=train,
                      item_ids=np.arange(3), user_ids=np.arange(4), info={})
    assert str(info.value) == (
        f"no space left on device while exporting the model to {disk / 'w' / 'model'}; the "
        f"checkpoints are kept; free space and rerun the same command to finish")
    gc.collect()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "ERROR" not in out + err, (out + err)[-3000:]
    assert not (disk / "w" / "model.tmp").exists() and not (disk / "w" / "model").exists()
  finally:
    _umount(disk)


def test_other_save_errors_are_not_hidden(tmp_path, monkeypatch, caplog):
  """Only a refused write is reworded and quieted; any other failure passes through as is."""
  def broken(self, step, *args, **kwargs):
    logging.getLogger("absl").error("something else went wrong")
    raise RuntimeError("not a disk problem")

  monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", broken)
  filters, hook = list(logging.getLogger("absl").filters), sys.unraisablehook
  with pytest.raises(RuntimeError, match="not a disk problem"):
    train_and_evaluate(toy_model.make(), toy_model.make_split(), _config(1), tmp_path,
                       log=lambda s: None)
  assert "something else went wrong" in caplog.text  # Passed on, not held back.
  assert logging.getLogger("absl").filters == filters and sys.unraisablehook is hook


# -- A read-only workdir ---------------------------------------------------------------------


@contextlib.contextmanager
def _read_only(path: Path, monkeypatch):
  """Makes `path` (with what it holds) read-only; yields (the cause its writes will give,
  whether the refusal is real rather than injected)."""
  if os.geteuid() != 0:
    files = [p for p in path.iterdir() if p.is_file()]
    for p in files:
      p.chmod(0o444)
    path.chmod(0o555)
    try:
      yield "permission denied", True
    finally:
      path.chmod(0o755)
      for p in files:
        p.chmod(0o644)
    return
  mount = path.parent / (path.name + ".mnt")
  if _mount_tmpfs(mount, "4m"):
    try:
      subprocess.run(["cp", "-a", f"{path}/.", str(mount)], check=True)
      subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
      path.rename(path.parent / (path.name + ".orig"))
      path.symlink_to(mount)  # `path` now reads as before and refuses writes.
      yield "read-only file system", True
    finally:
      path.unlink()
      (path.parent / (path.name + ".orig")).rename(path)
      _umount(mount)
    return
  # Root without mounts (chmod does not stop root): inject EACCES where files are made.
  def refuse(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")

  real_open = open
  monkeypatch.setattr(writer_lib, "open",
                      lambda f, mode="r", *a, **k: refuse() if "r" != mode else real_open(f, mode, *a, **k),
                      raising=False)
  monkeypatch.setattr(writer_lib.tempfile, "TemporaryFile", refuse)
  try:
    yield "permission denied", False
  finally:
    monkeypatch.undo()


def test_a_read_only_workdir_is_one_line_naming_the_path(tmp_path, monkeypatch):
  workdir = tmp_path / "w"
  workdir.mkdir()
  write_json(workdir / "config.json", {"a": 1})
  MetricWriter(workdir).write({"epoch": 1})
  with _read_only(workdir, monkeypatch) as (cause, real):
    attempts = {
        "write_json": (lambda: write_json(workdir / "results.json", {"a": 2}),
                       f"cannot write {workdir / 'results.json'}: {workdir} is not writable"),
        "write_json over a file": (lambda: write_json(workdir / "config.json", {"a": 2}),
                                   f"cannot write {workdir / 'config.json'}: {workdir} is not "
                                   f"writable"),
        "MetricWriter.write": (lambda: MetricWriter(workdir).write({"epoch": 2}),
                               f"cannot write {workdir / 'metrics.jsonl'}: "),
        "MetricWriter.truncate_after": (lambda: MetricWriter(workdir).truncate_after(0),
                                        f"cannot write {workdir / 'metrics.jsonl'}: {workdir} "
                                        f"is not writable"),
        "ensure_writable_dir": (lambda: writer_lib.ensure_writable_dir(workdir / "a" / "b"),
                                f"cannot write {workdir / 'a' / 'b'}: {workdir} is not writable"),
        "Checkpointer": (lambda: Checkpointer(workdir),
                         f"cannot write {(workdir / 'checkpoints').absolute()}: "
                         f"{workdir.absolute()} is not writable"),
    }
    for name, (attempt, start) in attempts.items():
      with pytest.raises(DiskWriteError) as info:
        attempt()
      message = str(info.value)
      assert isinstance(info.value, OSError), name
      if not real:  # Injected: root may write, so the message cannot tell which one refused.
        start = start.split(": ")[0].replace("cannot write ", "")
        assert start in message and "not writable" in message, (name, message)
      else:
        assert message.startswith(start), (name, message)
      assert message.endswith(f"({cause})"), (name, message)
      assert "\n" not in message and info.value.errno in (errno.EACCES, errno.EROFS), name
  assert json.loads((workdir / "config.json").read_text()) == {"a": 1}  # Untouched.
