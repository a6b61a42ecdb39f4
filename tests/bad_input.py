"""Shared helper of the bad-input suites (tests/test_bad_*.py): run a binary as a user would.

`run_cli` starts ``python -m <module> <args>`` in a subprocess (optionally under an
address-space limit, as ``ulimit -v`` does) and `assert_clear_error` checks what a
user sees when the input is wrong: a non-zero exit, no Python traceback, and one
``error: ...`` line that contains the expected words.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], *, module: str = "experiments.main", timeout: float = 120,
            memory_limit_bytes: int | None = None, env: dict | None = None,
            cwd: Path | str | None = None) -> subprocess.CompletedProcess:
  """Runs ``python -m module *args``; a hang fails the test (TimeoutExpired), never CI."""
  run_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
  command = [sys.executable, "-m", module, *args]
  if memory_limit_bytes is not None:
    # A fresh interpreter sets the limit and execs the binary (no preexec_fn: forking this
    # multithreaded jax process to run Python before exec could deadlock).
    command = [sys.executable, "-c", _LIMITED_EXEC, str(int(memory_limit_bytes)), *command]
  return subprocess.run(command, cwd=cwd or REPO, env=run_env, capture_output=True, text=True,
                        timeout=timeout)


_LIMITED_EXEC = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_AS, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")


def assert_clear_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
  """Asserts rc != 0, no traceback, and an ``error:`` line containing every needle.

  Returns that line.
  """
  out = proc.stdout + proc.stderr
  assert proc.returncode != 0, f"expected a failure, got rc=0:\n{out[-3000:]}"
  assert "Traceback" not in out, f"a traceback instead of one clear line:\n{out[-3000:]}"
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1, f"expected one 'error:' line on stderr, got {lines}:\n{out[-3000:]}"
  for needle in needles:
    assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
  return lines[0]
