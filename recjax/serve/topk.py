"""The batched top-k engine behind every recommendation query.

`rank_rows` answers csr rows (users' training rows or encoded histories) in
fixed-size batches, as evaluation does: each batch goes to the devices as dense
rows, or as padded item lists for models with ``score_padded`` (rows sorted
by length within groups of `GROUP_ROWS`, about `PADDED_SLOTS` item slots a
batch); one jitted step scores it with the model's own function and sets
excluded items to -inf, a second reduces to the top k on device (per item shard,
then merged, when the model's item axis is split over the mesh), and only
[batch, k] values and columns come back.  Rows without items get the most
popular allowed items.  Batches are answered on `default_workers()` threads,
with at most a few in flight, so no full score matrix is ever held.
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.ops import ranking as ranking_ops
from recjax.train import sharding as shd
from recjax.train.artifact import TrainedModel

# (score fn, padded, exclude_seen) -> jitted scoring; (k, item_chunk) -> jitted selection.
_SCORE_STEPS: dict[tuple, Any] = {}
_SELECT_STEPS: dict[tuple, Any] = {}


def _score_step(score_fn, padded: bool, exclude_seen: bool, filtered: bool):
  """Jitted ``(params, factors, inputs, allowed [I]) -> scores [B, I]``.

  The model's scores with -inf on excluded items: the row's own items when
  `exclude_seen`, everything outside `allowed` when `filtered` (static flags,
  so an unfiltered query pays no extra pass over the catalog).  ``inputs``:
  dense rows [B, I], or padded item lists ``(items, values, mask)``.  Rows with
  no item are answered on the host (popularity), not here.
  """
  key = (score_fn, padded, exclude_seen, filtered)
  step = _SCORE_STEPS.get(key)
  if step is None:

    def step_fn(params, factors, inputs, allowed):
      if padded:
        items, values, mask = inputs
        scores = score_fn(params, factors, items, values, mask).astype(jnp.float32)
        if exclude_seen:  # Scatter -inf on each row's own items; padding slots index past the end.
          rows = jnp.arange(items.shape[0])[:, None]
          cols = jnp.where(mask, items, scores.shape[1])
          scores = scores.at[rows, cols].set(-jnp.inf, mode="drop")
      else:
        scores = score_fn(params, factors, inputs).astype(jnp.float32)
        if exclude_seen:
          scores = jnp.where(inputs != 0, -jnp.inf, scores)
      if filtered:
        scores = jnp.where(allowed[None, :], scores, -jnp.inf)
      return scores

    step = _SCORE_STEPS[key] = jax.jit(step_fn)
  return step


def _select_step(k: int, item_chunk: int | None, mesh=None):
  """Jitted ``scores [B, I] -> (values [B, k], columns [B, k])``; -inf entries come last.

  On a `mesh` with a ``model`` axis each item shard selects its own top k and
  the shards' candidates are merged (`ranking_ops.top_k_over_shards`).
  """
  key = (k, item_chunk, mesh)
  step = _SELECT_STEPS.get(key)
  if step is None:
    if item_chunk is None:  # Excluded items are -inf already: a plain (exact) top k.
      select = ranking_ops.top_k_by_chunk_max
    else:
      select = lambda scores, kk: ranking_ops.top_k_excluding(scores, jnp.isneginf(scores), kk,
                                                              item_chunk)
    step = _SELECT_STEPS[key] = jax.jit(
        lambda scores: ranking_ops.top_k_over_shards(select, k, mesh, scores))
  return step


def default_workers() -> int:
  """Threads answering batches concurrently: twice the CPUs this process may use, at most 8."""
  try:
    cpus = len(os.sched_getaffinity(0))
  except AttributeError:
    cpus = os.cpu_count() or 1
  return max(1, min(8, 2 * cpus))


def _pow2(n: int, floor: int = 1) -> int:
  return max(floor, 1 << max(0, int(n) - 1).bit_length())


def _dense(rows: sp.csr_matrix, batch_size: int) -> np.ndarray:
  out = np.zeros((batch_size, rows.shape[1]), np.float32)
  rows.toarray(out=out[:rows.shape[0]])
  return out


def _padded(rows: sp.csr_matrix, batch_size: int, width: int):
  """(items int32, values float32, mask bool), each [batch_size, width], of csr rows."""
  items = np.zeros((batch_size, width), np.int32)
  values = np.zeros((batch_size, width), np.float32)
  lengths = np.diff(rows.indptr)
  mask = np.arange(width)[None, :] < lengths[:, None]
  mask = np.concatenate([mask, np.zeros((batch_size - rows.shape[0], width), bool)])
  items[mask] = rows.indices
  values[mask] = rows.data
  return items, values, mask


# Rows of one length-sorted group (at least one batch): batches inside it hold rows of
# similar length, so padded item lists waste little; answers return in request order.
GROUP_ROWS = 4096
# Item slots (rows x padded width) of one padded batch: rows of 1,000 items come 16 at a
# time, rows of 20 items `batch_size` at a time, so work follows the items, not the longest row.
PADDED_SLOTS = 256 * 64


def effective_batch_size(tm: TrainedModel, batch_size: int) -> int:
  """Rows per batch as the queries run them: a power of two, a multiple of the devices."""
  return shd.round_up_to_devices(_pow2(max(1, int(batch_size))), tm.mesh)


def rank_rows(tm: TrainedModel, rows: sp.csr_matrix, k: int, allowed: np.ndarray,
               exclude_seen: bool, batch_size: int, item_chunk: int | None,
               workers: int | None = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
  """(start, values [n, k], columns [n, k], fallback [n]) per `batch_size` rows of `rows`.

  Models with ``score_padded`` get their rows as padded item lists (width: a
  power of two of the batch's longest row), sorted by length within groups of
  `GROUP_ROWS` rows; others get dense rows.  A batch is padded to a power
  of two rows (at most `batch_size`, a multiple of the devices), so a single
  query does not pay for a full batch.
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  if not allowed.any():
    raise ValueError("no candidate item is left after the allow/deny lists")
  k_eff = min(k, tm.n_items)
  batch_sh = shd.batch_sharding(tm.mesh)
  rep = shd.replicated(tm.mesh)
  batch_size = effective_batch_size(tm, batch_size)
  padded = tm.model.score_padded is not None
  score_fn = tm.model.score_padded if padded else tm.model.score
  score_step = _score_step(score_fn, padded, bool(exclude_seen), bool(not allowed.all()))
  select_step = _select_step(k_eff, item_chunk, tm.mesh)
  filtered = not allowed.all()
  allowed_d = jax.device_put(allowed, rep) if filtered else None  # Unused unless filtered.
  # Every row without items gets the same answer: the most popular allowed items.
  rows = sp.csr_matrix(rows, dtype=np.float32)
  rows.sort_indices()
  pop = np.where(allowed, tm.popularity, -np.inf).astype(np.float32)
  if np.any(np.diff(rows.indptr) == 0):
    pop_cols = np.argsort(-pop, kind="stable")[:k_eff].astype(np.int32)
  else:  # No row needs it (the sort costs more than a one-user query's scoring).
    pop_cols = np.zeros(k_eff, np.int32)
  pop_values = pop[pop_cols]
  group = max(batch_size, GROUP_ROWS) if padded else batch_size
  workers = default_workers() if workers is None else max(1, int(workers))
  pool = ThreadPoolExecutor(workers) if workers > 1 and rows.shape[0] > batch_size else None
  factorize = threading.Lock()

  def answer(inputs):
    # Scoring (a fold-in's batched factorization) runs one batch at a time under the lock:
    # never two LAPACK batch maps at once (NOTES-jax-cpu.md's deadlock).  XLA:CPU's top k is
    # single-threaded, so the selections of other batches run meanwhile on `workers` threads.
    with factorize:
      scores = jax.block_until_ready(score_step(tm.params, tm.factors, inputs, allowed_d))
    return jax.device_get(select_step(scores))

  try:
    for g0 in range(0, rows.shape[0], group):
      part = rows[g0:g0 + group]
      n = part.shape[0]
      lengths = np.diff(part.indptr)
      order = np.argsort(lengths, kind="stable") if padded else np.arange(n)
      out_values = np.empty((n, k_eff), np.float32)
      out_cols = np.empty((n, k_eff), np.int32)
      pending: collections.deque = collections.deque()

      def collect(entry):
        idx, result = entry
        values, cols = result.result() if pool is not None else result
        out_values[idx] = values[:len(idx)]
        out_cols[idx] = cols[:len(idx)]

      empty = lengths == 0
      out_values[empty], out_cols[empty] = pop_values, pop_cols
      order = order[~empty[order]]
      b0 = 0
      while b0 < len(order):
        count = min(batch_size, len(order) - b0)
        if padded:  # Long rows go in fewer rows per batch: about PADDED_SLOTS item slots each.
          while count > 1 and count * _pow2(int(lengths[order[b0 + count - 1]]), 8) > PADDED_SLOTS:
            count //= 2
        idx = order[b0:b0 + count]
        b0 += count
        batch = part[idx]
        size = shd.round_up_to_devices(_pow2(len(idx)), tm.mesh)
        if padded:
          width = _pow2(int(lengths[idx].max()), floor=8)
          inputs = jax.device_put(_padded(batch, size, width), batch_sh)  # One transfer call.
        else:
          inputs = jax.device_put(_dense(batch, size), batch_sh)
        pending.append((idx, pool.submit(answer, inputs) if pool is not None else answer(inputs)))
        while len(pending) > 2 * workers:  # Bounded memory: a few [B, I] score blocks in flight.
          collect(pending.popleft())
      while pending:
        collect(pending.popleft())
      for s0 in range(0, n, batch_size):
        s1 = min(n, s0 + batch_size)
        yield g0 + s0, out_values[s0:s1], out_cols[s0:s1], empty[s0:s1]
  finally:
    if pool is not None:
      pool.shutdown(wait=True)
