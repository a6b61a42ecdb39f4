"""Checkpoints with orbax's CheckpointManager, saved after completed epochs (the runner says which).

A checkpoint holds three items:

* ``state`` -- step, params, optimizer state, factors and RNG key;
* ``best`` -- the best params/factors, written only when they differ from the
  current ones (for EASE-sized factors that halves the disk written);
* ``meta`` -- JSON host bookkeeping (epoch, best metric, patience counter).

Saves are synchronous and orbax writes each one to a temporary directory that
is renamed when complete, so a run killed mid-save resumes from the previous
finished checkpoint and never from a partial one.  Such a leftover
(``N.orbax-checkpoint-tmp``) is removed by the next `Checkpointer`, which says
so in one line.  A save the disk refuses (no space, permission, read-only)
raises `CheckpointWriteError`, one line, and orbax's background-thread
tracebacks of that failure are not printed; the previous checkpoint is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import jax
import orbax.checkpoint as ocp

from recjax.train import distributed, writer
from recjax.train.state import TrainState

# orbax 0.12 writes the save of step N to N.orbax-checkpoint-tmp and renames it N when complete.
TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointWriteError(writer.DiskWriteError):
  """A checkpoint save the disk refused; str() is one line with the cause and what to do."""


def _orbax_noise(exc: BaseException | None, obj=None) -> bool:
  """Whether a background report is orbax's echo of a refused write."""
  if exc is not None and writer.disk_errno(exc) is not None:
    return True
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True  # tensorstore finishing a write for orbax's event loop, closed by the failure.
  code = getattr(obj, "cr_code", None)  # Its unfinished coroutines, collected later.
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


class _QuietFailure(logging.Filter):
  """Keeps orbax's background reports of a save the disk refused off the console.

  orbax's writer threads log each failed write at ERROR with a traceback (the
  absl logger), tensorstore reports writes that finish after orbax closed its
  event loop (sys.unraisablehook), and the abandoned tasks and coroutines are
  reported when collected (the asyncio logger, sys.unraisablehook).  While a save runs these reports are held; if it fails for a
  refused write they are dropped and the hooks stay to drop the same failure's
  late echoes (nothing else); otherwise the held reports are passed on and the
  hooks removed.
  """

  def __init__(self):
    super().__init__()
    self.holding, self.held_logs, self.held_unraisable = True, [], []
    self.loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    self.previous_hook = sys.unraisablehook

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    if self.holding:
      self.held_logs.append(record)
      return False
    return not _orbax_noise(record.exc_info[1] if record.exc_info else None)

  def unraisable(self, u) -> None:
    if self.holding:
      self.held_unraisable.append(u)
    elif not _orbax_noise(u.exc_value, u.object):
      self.previous_hook(u)

  def __enter__(self):
    for logger in self.loggers:
      logger.addFilter(self)
    sys.unraisablehook = self.unraisable
    return self

  def passed(self) -> None:
    """The save succeeded or failed for another reason: everything is reported as usual."""
    for logger in self.loggers:
      logger.removeFilter(self)
    if sys.unraisablehook == self.unraisable:
      sys.unraisablehook = self.previous_hook
    for record in self.held_logs:
      logging.getLogger(record.name).handle(record)
    for u in self.held_unraisable:
      self.previous_hook(u)

  def refused(self) -> None:
    """The disk refused the save: its echoes are dropped, now and later."""
    self.holding = False
    self.held_logs, self.held_unraisable = [], []
    gc.collect()  # The failed save's finished tasks report now, not at exit.


@contextlib.contextmanager
def quiet_refused_writes():
  """Runs an orbax save; if the disk refuses it, orbax's background reports of it stay off the
  console (see `_QuietFailure`) and the error propagates for the caller to word."""
  quiet = _QuietFailure().__enter__()
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if writer.disk_errno(e) is None:
      quiet.passed()
    else:
      quiet.refused()
    raise
  quiet.passed()


@contextlib.contextmanager
def _kill_before_commit(epoch: int):
  """Test hook (see writer.KILL_AT_ENV): RECJAX_TEST_KILL_AT=during_save:N SIGKILLs the save of
  epoch N after its files are written to N.orbax-checkpoint-tmp, before orbax renames it."""
  if os.environ.get(writer.KILL_AT_ENV) != f"during_save:{epoch}":
    yield
    return
  from orbax.checkpoint._src.path import atomicity  # Where orbax 0.12's Checkpointer commits.
  real = atomicity.on_commit_callback

  def killed(*args, **kwargs):
    writer.kill_if_asked("during_save", epoch)
    raise AssertionError("the during_save test hook did not kill the process")

  atomicity.on_commit_callback = killed
  try:
    yield
  finally:
    atomicity.on_commit_callback = real


def _core(state: TrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "factors": state.factors, "rng": state.rng}


def _abstract(tree, sharding):
  def leaf(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype,
                                sharding=sharding(x) if callable(sharding) else sharding)
  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves and restores `TrainState` under ``workdir/checkpoints``."""

  def __init__(self, workdir: Path, max_to_keep: int = 2, log: Callable[[str], None] = print):
    """Opens ``workdir/checkpoints`` (created; it must be writable).

    Unfinished saves of a killed run (``N.orbax-checkpoint-tmp``) are removed
    first, with one line to `log`; their names are in `removed_temporaries`.
    Raises `writer.DiskWriteError` (an OSError, one line) when the directory
    cannot be written.
    """
    self.directory = (Path(workdir) / "checkpoints").absolute()
    writer.ensure_writable_dir(self.directory)
    # One process clears a killed run's leftovers; the others wait for it (a multi-process run).
    self.removed_temporaries = self._remove_temporaries() if distributed.is_primary() else []
    distributed.barrier("recjax: checkpoint temporaries")
    if self.removed_temporaries:
      log(f"removed the unfinished checkpoint save of an interrupted run "
          f"({', '.join(self.removed_temporaries)}) under {self.directory}")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def _remove_temporaries(self) -> list[str]:
    stale = sorted(p for p in self.directory.iterdir() if TMP_SUFFIX in p.name)
    with writer.writing(self.directory):
      for p in stale:
        if p.is_dir() and not p.is_symlink():
          shutil.rmtree(p)
        else:
          p.unlink()
    return [p.name for p in stale]

  def _finished_epochs(self) -> list[int]:
    return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())

  def save(self, state: TrainState) -> None:
    """Saves `state` as the checkpoint of ``state.epoch``; returns when it is on disk.

    Raises:
      CheckpointWriteError: the disk refused the save (no space, permission,
        read-only); the previous checkpoint is kept and the unfinished one removed.
    """
    items = {"state": ocp.args.StandardSave(_core(state)),
             "meta": ocp.args.JsonSave(state.meta())}
    if not state.best_is_current:
      items["best"] = ocp.args.StandardSave(
          {"params": state.best_params, "factors": state.best_factors})
    try:
      with quiet_refused_writes(), _kill_before_commit(state.epoch):
        self.manager.save(state.epoch, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      code = writer.disk_errno(e)
      if code is None:
        raise
      shutil.rmtree(self.directory / f"{state.epoch}{TMP_SUFFIX}", ignore_errors=True)
      error = self._write_error(state.epoch, code)
      error.orbax_error = e  # The original, for debugging; its traceback is orbax's threads.
      raise error from None
    writer.kill_if_asked("after_save", state.epoch)

  def _write_error(self, epoch: int, code: int) -> CheckpointWriteError:
    kept = [e for e in self._finished_epochs() if e != epoch]
    previous = (f"the previous checkpoint (epoch {kept[-1]}) is kept" if kept
                else "there is no earlier checkpoint, so a rerun starts from epoch 1")
    todo = ("free space" if writer.is_space(code) else f"make {self.directory} writable")
    return CheckpointWriteError(
        code, f"{writer.reason(code)} while saving the checkpoint of epoch {epoch} under "
        f"{self.directory}; {previous}; {todo} and rerun the same command to resume",
        str(self.directory))

  def restore(self, template: TrainState, sharding) -> TrainState:
    """Restores the latest checkpoint into the structure of `template`.

    Args:
      template: a freshly initialised state (its leaves may be arrays or
        ShapeDtypeStructs); gives tree structure, shapes and dtypes.
      sharding: where restored arrays are placed: a sharding for every leaf, or a
        function of the template's leaf to its sharding (`sharding.sharding_of`:
        the template's own placement, e.g. item-sharded parameters).
    """
    epoch = self.manager.latest_step()
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint under {self.directory}")
    meta = self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    items = {"state": ocp.args.StandardRestore(_abstract(_core(template), sharding))}
    if not meta["best_is_current"]:
      items["best"] = ocp.args.StandardRestore(_abstract(
          {"params": template.params, "factors": template.factors}, sharding))
    restored = self.manager.restore(epoch, args=ocp.args.Composite(**items))
    core = restored["state"]
    best = restored["best"] if not meta["best_is_current"] else {
        "params": core["params"], "factors": core["factors"]}
    return dataclasses.replace(
        template, step=core["step"], params=core["params"], opt_state=core["opt_state"],
        factors=core["factors"], rng=core["rng"], best_params=best["params"],
        best_factors=best["factors"], epoch=int(meta["epoch"]),
        best_metric=float("-inf") if meta["best_metric"] is None else float(meta["best_metric"]), best_epoch=int(meta["best_epoch"]),
        bad_epochs=int(meta["bad_epochs"]), best_is_current=bool(meta["best_is_current"]))

  def close(self) -> None:
    self.manager.close()
