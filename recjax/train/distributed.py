"""Runs over several processes: JAX's multi-controller runtime (`jax.distributed`).

Every process runs the same program on its own host (or its own share of one
host's devices); `jax.devices()` then lists the devices of every process and the
runner's mesh spans all of them.  What each process does in a run:

* it reads the dataset and computes the split itself (the split is a seeded,
  deterministic function of the file, so every process gets the same one, and
  no matrix has to travel through the coordinator);
* it builds only the rows of each global batch that its own devices hold
  (`jax.make_array_from_callback` asks for them), so no process densifies or
  places a whole batch;
* every process takes part in every jitted step, every evaluation (metric sums
  are reduced over all devices inside jit) and every orbax save and restore;
* process 0 alone writes ``config.json``, ``metrics.jsonl``, ``results.json``
  and the exported model's files, and alone prints progress.

`initialize` joins the run from flags or the environment (``JAX_COORDINATOR_ADDRESS``,
JAX's own, with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; SLURM and Open MPI
jobs are detected by JAX itself when ``--num_processes`` is 0 / ``auto``).  One
process with no coordinator is the ordinary single-process run: nothing is
initialized.
"""

from __future__ import annotations

import os
from typing import Any

import jax

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _int_or_none(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name} must be an integer, got {value!r}") from None


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ=os.environ) -> dict[str, Any] | None:
  """The `jax.distributed.initialize` arguments from flags, else the environment; None: one process.

  Raises ValueError when the settings are incomplete or inconsistent (a process
  id without a process count, an id out of range, several processes without a
  coordinator address).
  """
  coordinator = coordinator or environ.get(ENV_COORDINATOR) or None
  num_processes = (num_processes if num_processes is not None
                   else _int_or_none(environ.get(ENV_PROCESSES), ENV_PROCESSES))
  process_id = (process_id if process_id is not None
                else _int_or_none(environ.get(ENV_PROCESS_ID), ENV_PROCESS_ID))
  if num_processes == 0:  # A cluster JAX knows (SLURM, Open MPI...): JAX fills in everything.
    return {"coordinator_address": coordinator}
  if coordinator is None and (num_processes or 1) == 1:
    if process_id not in (None, 0):
      raise ValueError(f"process id {process_id} given for a single-process run; set the "
                       f"number of processes (--num_processes or ${ENV_PROCESSES})")
    return None
  if coordinator is None:
    raise ValueError(f"{num_processes} processes need a coordinator address "
                     f"(--coordinator or ${ENV_COORDINATOR}, e.g. 10.0.0.1:1234, the host of "
                     "process 0)")
  if num_processes is None or process_id is None:
    raise ValueError(f"a multi-process run needs the number of processes and this process's id "
                     f"(--num_processes/--process_id or ${ENV_PROCESSES}/${ENV_PROCESS_ID}); "
                     f"got {num_processes} and {process_id}")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
  return {"coordinator_address": coordinator, "num_processes": num_processes,
          "process_id": process_id}


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> bool:
  """Joins a multi-process run when the flags or environment describe one; returns whether it did.

  Must run before anything touches a JAX device.  CPU devices talk through gloo
  (JAX's CPU collectives), so the same command works on CPU-only hosts.
  """
  kwargs = settings(coordinator, num_processes, process_id)
  if kwargs is None:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None},
                             initialization_timeout=timeout_s)
  return True


def is_primary() -> bool:
  """Whether this process writes the run's files and prints its progress (process 0)."""
  return jax.process_index() == 0


def multi_process() -> bool:
  return jax.process_count() > 1


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing to wait for on one process)."""
  if multi_process():
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def process_rows(sharding, n_rows: int) -> tuple[int, int] | None:
  """The rows ``(lo, hi)`` of an [n_rows, ...] array split by `sharding` that this process's
  devices hold, when this is one of several processes and they are one contiguous block; else
  None (one process, or a layout whose pieces are not contiguous)."""
  if not multi_process():
    return None
  starts = sorted({(s[0].start or 0, n_rows if s[0].stop is None else s[0].stop)
                   for s in sharding.addressable_devices_indices_map((n_rows,)).values()})
  lo, hi = starts[0][0], starts[-1][1]
  if sum(b - a for a, b in starts) != hi - lo:
    return None
  return lo, hi
