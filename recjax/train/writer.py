"""Run outputs under ``workdir``: config.json, metrics.jsonl, results.json.

Durability: `write_json` and `MetricWriter.truncate_after` replace their file
atomically (a temporary file, fsynced, then renamed), and `MetricWriter.write`
fsyncs each record before returning, so a record the runner has written
survives a SIGKILL (or a power cut) that comes after it.  A disk that refuses
a write (permission, read-only file system, no space) raises `DiskWriteError`:
an OSError whose message is one line naming the path and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

# Test hook (tests/test_durability.py): with RECJAX_TEST_KILL_AT=POINT:EPOCH in the
# environment, `kill_if_asked(POINT, EPOCH)` SIGKILLs the process, so a test can kill a
# run at an exact point: after_record (writer.py), during_save and after_save
# (checkpoint.py).  Unset, it does nothing.  With RECJAX_TEST_KILL_PROCESS=i as well,
# only process i of a multi-process run is killed.
KILL_AT_ENV = "RECJAX_TEST_KILL_AT"


KILL_PROCESS_ENV = "RECJAX_TEST_KILL_PROCESS"  # Multi-process runs: only this JAX_PROCESS_ID.


def kill_if_asked(point: str, epoch: int) -> None:
  only = os.environ.get(KILL_PROCESS_ENV)
  if only is not None and only != os.environ.get("JAX_PROCESS_ID", "0"):
    return
  if os.environ.get(KILL_AT_ENV) == f"{point}:{epoch}":
    os.kill(os.getpid(), signal.SIGKILL)


_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system"}
# How the same causes read in errors that are not OSErrors (tensorstore raises ValueError).
_TEXTS = (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT),
          ("Permission denied", errno.EACCES), ("PERMISSION_DENIED", errno.EACCES),
          ("Read-only file system", errno.EROFS))


class DiskWriteError(OSError):
  """A write the disk refused (permission, read-only, no space); str() is one line."""

  def __init__(self, code: int, message: str, filename: str | None = None):
    super().__init__(code, message, filename)
    self.message = message

  def __str__(self) -> str:
    return self.message


def disk_errno(exc: BaseException) -> int | None:
  """The errno of a refused write behind `exc` (its cause chain included), else None."""
  seen = set()
  e: BaseException | None = exc
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _REASONS:
      return e.errno
    text = str(e)
    for needle, code in _TEXTS:
      if needle in text:
        return code
    if "RESOURCE_EXHAUSTED" in text and ("writ" in text.lower()):  # tensorstore's ENOSPC.
      return errno.ENOSPC
    e = e.__cause__ or e.__context__
  return None


def reason(code: int) -> str:
  return _REASONS.get(code, os.strerror(code))


def is_space(code: int) -> bool:
  return code in (errno.ENOSPC, errno.EDQUOT)


def refused_write(path: Path, code: int) -> DiskWriteError:
  """The one-line error for a refused write of `path` (a file or a directory)."""
  path = Path(path)
  if is_space(code):
    text = (f"cannot write {path}: {reason(code)}; free space and rerun the same command "
            f"to resume")
  elif path.is_dir():
    text = f"{path} is not writable ({reason(code)})"
  elif path.exists() and os.access(path.parent, os.W_OK):
    text = f"cannot write {path}: the file is not writable ({reason(code)})"
  else:
    where = path.parent  # The folder that refused: the nearest one that exists.
    while not where.exists() and where != where.parent:
      where = where.parent
    text = f"cannot write {path}: {where} is not writable ({reason(code)})"
  return DiskWriteError(code, text, str(path))


@contextlib.contextmanager
def writing(path: Path):
  """Turns a refused write inside the block into `DiskWriteError` naming `path`."""
  try:
    yield
  except DiskWriteError:
    raise
  except OSError as e:
    code = disk_errno(e)
    if code is None:
      raise
    raise refused_write(path, code) from None


def ensure_writable_dir(path: Path) -> Path:
  """Creates directory `path` (and parents) and checks that files can be written in it."""
  path = Path(path)
  with writing(path):
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  return path


def _fsync_dir(path: Path) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _replace_text(path: Path, text: str) -> None:
  """Atomically replaces `path` with `text`: temp file, fsync, rename, fsync of the folder."""
  tmp = path.with_suffix(path.suffix + ".tmp")
  with writing(path):
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  _fsync_dir(path.parent)


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return str(x)
  return x


def write_json(path: Path, obj: Any) -> None:
  """Writes atomically (temp file + rename), so a killed run never leaves half a file."""
  path = Path(path)
  _replace_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def _parse(line: str) -> dict | None:
  try:
    record = json.loads(line)
  except ValueError:
    return None
  return record if isinstance(record, dict) else None


class MetricWriter:
  """Appends one JSON record per epoch to ``metrics.jsonl``.

  On resume, `truncate_after(epoch)` drops records of epochs that the restored
  checkpoint does not contain (and a line torn by a full disk or a power cut),
  so the file matches an uninterrupted run.  The runner writes an epoch's
  record before its checkpoint: a kill between the two leaves a record past
  the last checkpoint, which the resume drops and recomputes.
  """

  def __init__(self, workdir: Path, enabled: bool = True):
    """`enabled` False (the processes other than 0 of a multi-process run): writes nothing."""
    self.path = Path(workdir) / "metrics.jsonl"
    self.enabled = enabled

  def truncate_after(self, epoch: int) -> None:
    if not self.enabled or not self.path.exists():
      return
    kept = []
    for line in self.path.read_text().splitlines():
      record = _parse(line) if line.strip() else None
      if record is not None and record.get("epoch", 0) <= epoch:
        kept.append(line)
    _replace_text(self.path, "".join(k + "\n" for k in kept))

  def write(self, record: dict) -> None:
    """Appends `record` and fsyncs it: when this returns, the record is on disk."""
    if not self.enabled:
      return
    with writing(self.path):
      with open(self.path, "a") as f:
        f.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    kill_if_asked("after_record", int(record.get("epoch", 0)))

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [r for r in map(_parse, self.path.read_text().splitlines()) if r is not None]
