"""Memory checks before large allocations: what there is, and one clear line when it is too little.

A closed-form model (EASE, SLIM) needs a few dense items x items matrices, so its
memory is known from the catalog size before anything is allocated.  Rather than
start, build a Gram matrix and die minutes later in a numpy `ArrayMemoryError`
traceback, callers estimate the peak and call `check_fits`, which raises
`InsufficientMemory` (a `MemoryError`) with one line: what needs how much, how
much there is, and what to do.

`available_bytes` is the smallest of

* the address-space headroom under ``RLIMIT_AS`` (``ulimit -v``): the soft limit
  minus the process's current virtual size (``VmSize``);
* the cgroup's headroom (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) minus
  its current usage, not counting reclaimable inactive file pages;
* ``MemAvailable`` in ``/proc/meminfo``.

Sources that are absent or unlimited are skipped.  Everything here is host-side
(stdlib, numpy, scipy); it says nothing about accelerator memory.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

# Values this large mean "no limit" (cgroup v1 writes 2**63 rounded to pages).
_UNLIMITED = 1 << 60


class InsufficientMemory(MemoryError):
  """An allocation would not fit; the message is one line saying what to do."""


def format_bytes(n: float) -> str:
  """1.5 GB, 320 MB, 12 KB (decimal units, as `free -h` and `ulimit -v` users expect)."""
  n = float(n)
  for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
    if abs(n) >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{int(n)} B"


def _read_int(path: Path) -> int | None:
  try:
    text = path.read_text().strip()
  except OSError:
    return None
  if not text or text == "max":
    return None
  try:
    return int(text)
  except ValueError:
    return None


def _stat_value(path: Path, key: str) -> int:
  try:
    for line in path.read_text().splitlines():
      name, _, value = line.partition(" ")
      if name == key:
        return int(value)
  except (OSError, ValueError):
    pass
  return 0


def _proc_kb(path: str, key: str) -> int | None:
  """A ``Key:  N kB`` field of a /proc file, in bytes."""
  try:
    with open(path) as f:
      for line in f:
        if line.startswith(key + ":"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def rlimit_headroom() -> int | None:
  """RLIMIT_AS soft limit minus the current virtual size; None when unlimited."""
  soft, _ = resource.getrlimit(resource.RLIMIT_AS)
  if soft == resource.RLIM_INFINITY or soft < 0:
    return None
  size = _proc_kb("/proc/self/status", "VmSize") or 0
  return max(0, soft - size)


def cgroup_headroom(root: str | Path = "/sys/fs/cgroup") -> int | None:
  """The cgroup's memory limit minus its usage (inactive file pages count as free)."""
  root = Path(root)
  # cgroup v2 (unified) first, then v1's memory controller.
  for limit_f, usage_f, stat_f, inactive_key in (
      ("memory.max", "memory.current", "memory.stat", "inactive_file"),
      ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
       "total_inactive_file")):
    limit = _read_int(root / limit_f)
    if limit is None or limit >= _UNLIMITED:
      continue
    usage = _read_int(root / usage_f) or 0
    usage -= min(usage, _stat_value(root / stat_f, inactive_key))
    return max(0, limit - usage)
  return None


def mem_available() -> int | None:
  """``MemAvailable`` of /proc/meminfo in bytes (None where there is no such file)."""
  return _proc_kb("/proc/meminfo", "MemAvailable")


_SOURCES = {
    "rlimit": "the address-space limit (ulimit -v) minus what this process already maps",
    "cgroup": "the container's memory limit minus its usage",
    "meminfo": "MemAvailable in /proc/meminfo",
}


def _smallest() -> tuple[int | None, str]:
  known = [(v, name) for name, v in (("rlimit", rlimit_headroom()), ("cgroup", cgroup_headroom()),
                                     ("meminfo", mem_available())) if v is not None]
  return min(known) if known else (None, "")


def available_bytes() -> int | None:
  """The most this process can still allocate: the smallest known headroom, or None."""
  return _smallest()[0]


def check_fits(needed_bytes: float, what: str, advice: str = "",
               available: int | None = None) -> None:
  """Raises `InsufficientMemory` when `needed_bytes` exceed what is available.

  Args:
    needed_bytes: the estimated peak of the allocation(s) about to be made.
    what: what needs it, e.g. "EASE on 40,981 items (2.3 dense 40,981 x 40,981 float32)".
    advice: what to do instead (a flag to set, a model that scales); appended.
    available: bytes available (for tests); default `available_bytes()`.  When
      nothing is known (no limit, no /proc) the check passes.

  Raises:
    InsufficientMemory: one line, "<what> needs about X but only Y is available
    (...); <advice>".
  """
  source = "given"
  if available is None:
    available, source = _smallest()
  if available is None or needed_bytes <= available:
    return
  _refuse(needed_bytes, available, source, what, advice)


def _refuse(needed_bytes: float, available: int, source: str, what: str, advice: str):
  where = f" ({_SOURCES[source]})" if source in _SOURCES else ""
  message = (f"{what} needs about {format_bytes(needed_bytes)} of memory but only "
             f"{format_bytes(available)} is available{where}")
  if advice:
    message += f"; {advice}"
  raise InsufficientMemory(" ".join(message.split()))


def _fitting_min_count(counts: np.ndarray, bytes_for_items: Callable[[int], float],
                       available: float) -> tuple[int | None, int]:
  """The smallest min count t > 1 whose kept items (counts >= t) fit, and how many it keeps.

  Tried count by count (not by bisection: a solver chosen by catalog size makes
  the estimate jump).  (None, 0) when no threshold leaves a catalog that fits.
  """
  values = np.unique(counts[counts > 0])
  kept = len(counts) - np.searchsorted(np.sort(counts), values, side="left")
  for t, k in zip(values, kept):
    if t > 1 and k >= 1 and bytes_for_items(int(k)) <= available:
      return int(t), int(k)
  return None, 0


def check_catalog_fits(model: str, train, bytes_for_items: Callable[[int], float],
                       detail: str = "", available: int | None = None,
                       all_users_per_training_user: float = 1.25) -> None:
  """Stops a model whose memory grows with the catalog (items²) before it allocates.

  The message names the need and the headroom, and what to do: a
  ``--set min_item_count=...`` that leaves a catalog that fits (from the
  training matrix's item counts, scaled to all users), more memory, or a model
  whose memory does not grow with items².

  Args:
    model: the model's name, for the message.
    train: csr [users, items], the training matrix.
    bytes_for_items: the estimated peak for a catalog of m items (increasing in m).
    detail: what the estimate counts, e.g. "2 dense items x items float32 matrices".
    available: bytes available (for tests); default `available_bytes()`.
    all_users_per_training_user: how many users the min-count filter sees per
      training user (it runs before the split); the suggested count is scaled by it.
  """
  n = train.shape[1]
  needed = bytes_for_items(n)
  source = "given"
  if available is None:
    available, source = _smallest()
  if available is None or needed <= available:
    return
  counts = np.diff(sp.csc_matrix(train).indptr)  # Training users per item.
  threshold, kept = _fitting_min_count(counts, bytes_for_items, available)
  if threshold is not None:
    # min_item_count counts every user, and training holds ~80% of them by default
    # (10% validation + 10% test): scaled up, the advice errs on the side that fits.
    suggested = int(math.ceil(threshold * all_users_per_training_user))
    smaller = (f"a smaller catalog, e.g. --set min_item_count={suggested} (about {kept:,} "
               f"items fit: those with at least {threshold} training users)")
  else:
    smaller = "a smaller catalog (--set min_item_count=...)"
  what = f"{model} on {n:,} items" + (f" ({detail})" if detail else "")
  _refuse(needed, available, source, what,
          f"use {smaller}; more memory; or a model whose memory does not grow with items² "
          f"(e.g. --model=wmf or --model=mult-vae)")



def pid_peak_rss_bytes(pid: int | None = None) -> int | None:
  """``VmHWM`` (peak resident set) of a process, in bytes; default this one."""
  return _proc_kb(f"/proc/{pid or os.getpid()}/status", "VmHWM")
