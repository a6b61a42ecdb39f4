"""What the experiment binaries print when they fail: one ``error: ...`` line, no traceback.

Every binary runs its work inside `one_line_errors` (through `run`; `main.py`
and `recommend.py` call it directly): a bad flag or config value, a missing or
malformed file, a path that cannot be read or written, or too little memory
ends the process with one line on stderr that names the path (or setting) and
the problem, and a non-zero exit code (2 for
bad input, 1 for the environment: permissions, disk, memory).  ``--verbosity``
re-raises instead, for the traceback.  KeyboardInterrupt and SystemExit pass
through untouched (the runner's SIGTERM handling stays as it is).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Iterator, Mapping

from absl import app, flags

WRITTEN = ("out",)  # Flags (besides --workdir) naming a path the binary writes.
BAD_INPUT = 2  # Exit code of a bad flag, config value or data file.
ENVIRONMENT = 1  # Exit code of a path that cannot be read/written, or too little memory.


def _memory_errors() -> tuple[type[BaseException], ...]:
  try:  # The closed-form models' one-line estimate, where it exists.
    from recjax.ops.memory import InsufficientMemory  # pylint: disable=import-outside-toplevel
  except Exception:  # pylint: disable=broad-except  (absent or broken: MemoryError still counts)
    return (MemoryError,)
  return (InsufficientMemory, MemoryError)


def _inside(path: Path, root: Path) -> bool:
  return path == root or root in path.parents


def _abs(path) -> Path:
  return Path(os.path.abspath(os.fspath(path)))


def _first_non_folder(path: Path) -> Path | None:
  """The first existing component of path (from the root down) that is not a folder."""
  for p in [*reversed(path.parents), path]:
    if p.exists() and not p.is_dir():
      return p
    if not p.exists():
      return None
  return None


def check_workdir(workdir: str) -> None:
  """Raises NotADirectoryError (one clear message) when a file sits where the workdir goes.

  Nothing is created: a workdir that cannot be created for want of permission
  is reported by `describe` when the run first writes it.
  """
  blocker = _first_non_folder(_abs(workdir))
  if blocker is not None:
    what = "a file is there" if blocker == _abs(workdir) else f"{blocker} is a file"
    raise NotADirectoryError(f"--workdir {workdir}: {what}, not a folder; give a folder path "
                             "(it is created if missing)")


def describe(e: BaseException, paths: Mapping[str, str | None]) -> str:
  """The one-line message of a failure; paths maps flag names to their values (for context)."""
  own_message = isinstance(e, OSError) and type(e).__str__ is not OSError.__str__
  if isinstance(e, OSError) and e.filename is not None and not own_message:
    fname = _abs(e.filename)
    reason = (e.strerror or str(e)).lower()
    if e.errno in (errno.EACCES, errno.EPERM):
      reason = "permission denied"
    role = next((flag for flag, value in paths.items()
                 if value and (_inside(fname, _abs(value)) or
                               (flag == "workdir" and _inside(_abs(value), fname)))), None)
    shown = os.fspath(e.filename)
    if e.filename2 is not None:
      shown += f" -> {os.fspath(e.filename2)}"
    if role == "workdir":
      blocker = _first_non_folder(_abs(paths["workdir"]))
      if e.errno in (errno.EEXIST, errno.ENOTDIR) and blocker is not None:
        return (f"--workdir {paths['workdir']}: {blocker} is a file, not a folder; give a "
                "folder path (it is created if missing)")
      return (f"{shown}: {reason}: the workdir (--workdir {paths['workdir']}) must be a folder "
              "this user can create and write")
    if role is not None:
      verb = "write" if role in WRITTEN else "read"
      return f"{shown}: {reason}: cannot {verb} --{role} {paths[role]}"
    return f"{shown}: {reason}"
  text = str(e).strip()
  memory = _memory_errors()
  if len(memory) > 1 and isinstance(e, memory[0]):
    return text  # InsufficientMemory says what is needed, what there is and what to do.
  if isinstance(e, MemoryError):  # numpy's "Unable to allocate 6.94 EiB for an array ..."
    return f"out of memory: {text or 'MemoryError'}"
  return text or type(e).__name__


def exit_code(e: BaseException) -> int:
  if isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, app.UsageError,
                    flags.Error)):
    return BAD_INPUT
  return ENVIRONMENT


def fail(message: str, code: int = BAD_INPUT):
  """Prints ``error: message`` on stderr and exits with code."""
  sys.stdout.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


@contextlib.contextmanager
def one_line_errors(paths: Mapping[str, str | None], verbose: bool,
                    extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
  """Turns user-facing failures raised in the block into one ``error:`` line and an exit.

  Args:
    paths: flag name -> path value, to say which path a file-system error concerns.
    verbose: re-raise instead (``--verbosity`` given: the traceback is wanted).
    extra: further exception types to report as bad input.
  """
  caught = (app.UsageError, flags.Error, ValueError, OSError, *_memory_errors(), *extra)
  try:
    yield
  except caught as e:  # pylint: disable=catching-non-exception
    if verbose:
      raise
    fail(describe(e, paths), exit_code(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags parser for app.run: a bad flag is one ``error:`` line (exit 2), not a usage dump."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e} (--helpshort lists the flags)")


PATH_FLAGS = ("workdir", "dataset", "data_dir", "cache_dir", "config", "out")


def run(main) -> None:
  """`app.run(main)` for an experiment binary, with its failures as one ``error:`` line.

  Bad flags fail in `parse_flags`; what `main` raises goes through `one_line_errors`,
  which names the binary's path flags (those of `PATH_FLAGS` it defines).
  """
  def wrapped(argv):
    paths = {name: flags.FLAGS[name].value for name in PATH_FLAGS if name in flags.FLAGS}
    with one_line_errors(paths, flags.FLAGS["verbosity"].present):
      return main(argv)

  app.run(wrapped, flags_parser=parse_flags)
