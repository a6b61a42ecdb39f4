"""Honest timing of jitted functions, and the environment to print beside the figures.

The method (used for every figure, the matmul roofline included):

1. arguments are moved to the device first (`jax.device_put`), so no transfer
   is timed;
2. `jax.jit(fn).lower(*args)` and `.compile()` are timed apart from running;
3. `n_warmup` untimed calls, then `n_runs` calls each followed by
   `jax.block_until_ready`; the median is the figure to quote.

Usable as a library (no flags are read on import) or as
`python -m benchmarks.harness [--n=2048]`, which prints the environment and
the float32 matmul peak.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def _shape_of(x) -> Any:
  return f"{x.dtype}{list(x.shape)}" if hasattr(x, "shape") else repr(x)


def time_jitted(
    fn: Callable,
    *args,
    n_runs: int = 10,
    n_warmup: int = 2,
    name: str | None = None,
) -> dict[str, Any]:
  """Compiles `fn` for `args`, then times its execution.

  Args:
    fn: a function of array pytrees (not yet jitted, or jitted; static
      arguments should be bound with `functools.partial`).
    *args: its arguments; moved to the default device (or left where they are
      if already placed) before anything is timed.
    n_runs: timed calls.
    n_warmup: untimed calls after compiling.
    name: label stored in the record (default: `fn.__name__`).

  Returns:
    A record: name, arg_shapes, lower_s, compile_s, median_s, min_s, max_s,
    n_runs, n_warmup, and flops (XLA's cost-analysis estimate, or None).
  """
  args = jax.block_until_ready(jax.device_put(args))
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  for _ in range(n_warmup):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(n_runs):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  flops = None
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except  # Cost analysis is optional.
    pass
  return {
      "name": name or getattr(fn, "__name__", repr(fn)),
      "arg_shapes": jax.tree.map(_shape_of, list(args)),
      "lower_s": t1 - t0,
      "compile_s": t2 - t1,
      "median_s": statistics.median(times),
      "min_s": min(times),
      "max_s": max(times),
      "n_runs": n_runs,
      "n_warmup": n_warmup,
      "flops": flops,
  }


def environment() -> dict[str, Any]:
  """Device, software versions and host facts to store with every measurement."""
  import flax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel

  devices = jax.devices()
  return {
      "platform": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "n_devices": len(devices),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "flax": flax.__version__,
      "numpy": np.__version__,
      "python": platform.python_version(),
      "cpu_count": os.cpu_count(),
      "machine": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def matmul_peak_gflops(n: int = 2048, dtype=jnp.float32, n_runs: int = 10) -> float:
  """Achieved GFLOP/s of a jitted n x n matmul (the roofline to quote against).

  Args:
    n: matrix size.
    dtype: element type.
    n_runs: timed calls.

  Returns:
    2 n³ / median seconds, in GFLOP/s.
  """
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (n, n), dtype)
  b = jax.random.normal(key_b, (n, n), dtype)
  record = time_jitted(jnp.matmul, a, b, n_runs=n_runs, name=f"matmul{n}")
  return 2.0 * n**3 / record["median_s"] / 1e9


def write_json(path: str | os.PathLike, records: list[dict[str, Any]], **extra) -> pathlib.Path:
  """Writes {"environment": ..., "records": records, **extra} as indented JSON.

  Args:
    path: output file; parent directories are created.
    records: results, e.g. from `time_jitted`.
    **extra: further top-level entries (flags, a roofline figure, ...).

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  payload = {"environment": environment(), "records": records, **extra}
  path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
  return path


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel

  for key, value in environment().items():
    print(f"{key:>12}: {value}")
  n = flags.FLAGS.n
  print(f"{'matmul':>12}: {n}x{n} float32 {matmul_peak_gflops(n):.1f} GFLOP/s (median)")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  flags.DEFINE_integer("n", 2048, "Matrix size for the matmul peak.")
  app.run(main)
