"""Queries on a trained model: recommendations and similar items, by raw id.

Every query runs the same way as evaluation: fixed-size batches of dense rows
(padded at the bottom, split over the mesh's data axis), one jitted function
that scores with the model's own ``score``, removes excluded items and reduces
to the top k on device; only [batch, k] ids and scores come back to the host.
No full score matrix is ever held: `recommend_all` streams batch by batch.

* Known users (training rows, by raw id) are scored by folding in their own
  training row, the path every unseen user takes, and their training items are
  excluded.
* New users are scored from raw item-id histories encoded as training rows
  were (clicks, counts, time ranks or ratings: ``TrainedModel.input_values``); ids the
  model does not know are reported in ``Recommendations.unknown``; an empty
  history (or one with no known item) is answered by item popularity among
  training users, flagged in ``Recommendations.fallback``.
* Similar items rank items by the cosine of the model's ``item_vectors``.
* Candidates can be restricted by an allow-list and/or a deny-list of raw ids.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.ops import memory
from recjax.ops import ranking as ranking_ops
from recjax.train import sharding as shd
from recjax.train.artifact import TrainedModel


class QueryNotSupported(ValueError):
  """The model cannot answer this kind of query (the message says why, in one line)."""


@dataclasses.dataclass(frozen=True)
class Recommendations:
  """Top-k answers, one row per query, with raw ids.

  Attributes:
    keys: the query of each row (a user id, a history key or an item id).
    items: [n][<= k] raw ids, best first (fewer than k when fewer candidates remain).
    scores: [n][<= k] float32 scores of the model (popularity counts on a fallback row).
    fallback: [n] bool, True where the answer is the popularity fallback.
    unknown: query key -> raw item ids of its history the model does not know.
    notes: one-line remarks (ignored entries, unknown filter ids).
  """

  keys: list
  items: list
  scores: list
  fallback: np.ndarray
  unknown: dict
  notes: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.keys)

  def to_records(self) -> list[dict[str, Any]]:
    """One JSON-able dict per query: key, items, scores, fallback."""
    return [{"key": _py(k), "items": [_py(i) for i in items],
             "scores": [float(s) for s in scores], "fallback": bool(f)}
            for k, items, scores, f in zip(self.keys, self.items, self.scores, self.fallback)]


def _py(x):
  return x.item() if hasattr(x, "item") else x


def _key(raw) -> str:
  return str(_py(raw))


def item_index(tm: TrainedModel) -> dict[str, int]:
  """Raw item id (as text) -> item column (built once, at load)."""
  return tm.item_index or {_key(i): c for c, i in enumerate(tm.item_ids)}


def user_index(tm: TrainedModel) -> dict[str, int]:
  """Raw user id (as text) -> training row (built once, at load)."""
  return tm.user_index or {_key(u): r for r, u in enumerate(tm.user_ids)}


def candidates(tm: TrainedModel, allow: Iterable | None = None,
               deny: Iterable | None = None) -> tuple[np.ndarray, list[str]]:
  """[n_items] bool of the items that may be recommended, and notes on unknown ids."""
  notes = []
  mask = np.ones(tm.n_items, bool)
  if allow is None and deny is None:
    return mask, notes
  index = item_index(tm)
  for name, ids in (("allow", allow), ("deny", deny)):
    if ids is None:
      continue
    ids = list(ids)
    cols = [index[_key(i)] for i in ids if _key(i) in index]
    missing = [_py(i) for i in ids if _key(i) not in index]
    if missing:
      notes.append(f"{name}-list: {len(missing)} of {len(ids)} ids are not items of this model "
                   f"and are ignored: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if name == "allow":
      mask = np.zeros(tm.n_items, bool)
      mask[cols] = True
    else:
      mask[cols] = False
  return mask, notes


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


def _select_step(k: int, item_chunk: int | None):
  """Jitted ``scores [B, I] -> (values [B, k], columns [B, k])``; -inf entries come last."""
  key = (k, item_chunk)
  step = _SELECT_STEPS.get(key)
  if step is None:
    if item_chunk is None:  # Excluded items are -inf already: a plain (exact) top k.
      select = lambda scores: ranking_ops.top_k_by_chunk_max(scores, k)
    else:
      select = lambda scores: ranking_ops.top_k_excluding(scores, jnp.isneginf(scores), k,
                                                          item_chunk)
    step = _SELECT_STEPS[key] = jax.jit(select)
  return step


def default_workers() -> int:
  """Threads answering batches concurrently: twice the CPUs this process may use, at most 8."""
  try:
    cpus = len(os.sched_getaffinity(0))
  except AttributeError:
    cpus = os.cpu_count() or 1
  return max(1, min(8, 2 * cpus))


def _check_user_rows(tm: TrainedModel) -> None:
  if tm.info.get("orientation", "users") != "users":
    raise QueryNotSupported(
        f"{tm.model.name} was trained with items as rows (protocol {tm.info.get('protocol')}): "
        f"it predicts ratings item by item and cannot recommend items to users")


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


def _rank_rows(tm: TrainedModel, rows: sp.csr_matrix, k: int, allowed: np.ndarray,
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
  _check_user_rows(tm)
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
  select_step = _select_step(k_eff, item_chunk)
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


def _answers(tm: TrainedModel, values: np.ndarray, cols: np.ndarray):
  items, scores = [], []
  for v, c in zip(values, cols):
    keep = np.isfinite(v)  # Excluded items come last with -inf, only when too few remain.
    items.append(tm.item_ids[c[keep]])
    scores.append(v[keep].astype(np.float32))
  return items, scores


def _rank_all(tm: TrainedModel, rows: sp.csr_matrix, k: int, allowed: np.ndarray,
              exclude_seen: bool, batch_size: int, item_chunk: int | None):
  """Every row's answer, gathered: (raw item ids per row, scores per row, fallback [n])."""
  items, scores, fallback = [], [], []
  for _, values, cols, empty in _rank_rows(tm, rows, k, allowed, exclude_seen, batch_size,
                                           item_chunk):
    i, s = _answers(tm, values, cols)
    items += i
    scores += s
    fallback.append(empty)
  return items, scores, np.concatenate(fallback) if fallback else np.zeros(0, bool)


def user_rows(tm: TrainedModel, users: Sequence) -> np.ndarray:
  """Training rows of raw user ids; an unknown id is a ValueError naming it."""
  index = user_index(tm)
  missing = [_py(u) for u in users if _key(u) not in index]
  if missing:
    raise ValueError(
        f"{len(missing)} user id(s) are not training users of this model: {missing[:10]}"
        f"{' ...' if len(missing) > 10 else ''} (validation/test users are held out of "
        f"training: recommend for them from their histories, or train with heldout_users=0)")
  return np.asarray([index[_key(u)] for u in users], np.int64)


def recommend(tm: TrainedModel, users: Sequence, k: int = 10, *, allow: Iterable | None = None,
              deny: Iterable | None = None, exclude_seen: bool = True, batch_size: int = 256,
              item_chunk: int | None = None) -> Recommendations:
  """Top-k items for known (training) users by raw id, their training items excluded.

  Each user is scored by folding in their training row through the model's
  ``score``: the same answer as `recommend_histories` on that row.
  """
  rows = tm.train[user_rows(tm, users)]
  allowed, notes = candidates(tm, allow, deny)
  items, scores, fallback = _rank_all(tm, rows, k, allowed, exclude_seen, batch_size, item_chunk)
  return Recommendations(keys=list(users), items=items, scores=scores, fallback=fallback,
                         unknown={}, notes=tuple(notes))


def recommend_all(tm: TrainedModel, k: int = 10, *, allow: Iterable | None = None,
                  deny: Iterable | None = None, exclude_seen: bool = True,
                  batch_size: int = 1024, item_chunk: int | None = None
                  ) -> Iterator[Recommendations]:
  """Every training user's top k, one `Recommendations` per batch (streamed)."""
  allowed, notes = candidates(tm, allow, deny)
  for start, values, cols, empty in _rank_rows(tm, tm.train, k, allowed, exclude_seen,
                                               batch_size, item_chunk):
    items, scores = _answers(tm, values, cols)
    yield Recommendations(keys=list(tm.user_ids[start:start + len(items)]), items=items,
                          scores=scores, fallback=empty, unknown={},
                          notes=tuple(notes) if start == 0 else ())


def history_rows(tm: TrainedModel, histories: Mapping[Any, Sequence]
                 ) -> tuple[list, sp.csr_matrix, dict, list[str]]:
  """Encodes raw histories as the model's input rows.

  Args:
    histories: key -> the user's items in time order, each a raw item id or an
      ``(item id, value)`` pair (a rating or count).

  Returns:
    (keys, csr [n, n_items], unknown ids per key, notes).
  """
  index = item_index(tm)
  mode = tm.input_values
  threshold = (tm.info.get("preprocessing") or {}).get("binarize_threshold")
  keys, indptr, indices, data = [], [0], [], []
  unknown: dict = {}
  below = 0
  for key, history in histories.items():
    cols: dict[int, float] = {}  # column -> value; a repeated item keeps its latest position.
    for entry in history:
      raw, value = (entry if isinstance(entry, tuple) else (entry, None))
      col = index.get(_key(raw))
      if col is None:
        unknown.setdefault(key, []).append(_py(raw))
        continue
      if mode == "rating":
        if value is None:
          raise ValueError(f"history {key!r}: {tm.model.name} predicts ratings, so each history "
                           f"item needs a rating (item {raw!r} has none)")
        cols[col] = float(value)
        continue
      if mode == "counts":  # Trained on summed counts: a repeated item adds up; no value is 1.
        cols[col] = cols.get(col, 0.0) + (1.0 if value is None else float(value))
        continue
      if value is not None and threshold is not None and float(value) < float(threshold):
        below += 1  # Training kept only ratings >= threshold as clicks.
        continue
      cols.pop(col, None)
      cols[col] = 1.0
    if mode == "time_rank":
      cols = {c: float(r) for r, c in enumerate(cols, start=1)}
    keys.append(key)
    order = sorted(cols)
    indices += order
    data += [cols[c] for c in order]
    indptr.append(len(indices))
  rows = sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int64),
                        np.asarray(indptr, np.int64)), shape=(len(keys), tm.n_items))
  notes = []
  if below:
    notes.append(f"{below} history entries rated below the training binarization threshold "
                 f"{threshold} were not counted as clicks (as in training)")
  if unknown:
    n = sum(len(v) for v in unknown.values())
    notes.append(f"{n} item id(s) in {len(unknown)} histories are not items of this model and "
                 f"were left out (listed in `unknown`)")
  return keys, rows, unknown, notes


def recommend_histories(tm: TrainedModel, histories: Mapping[Any, Sequence], k: int = 10, *,
                        allow: Iterable | None = None, deny: Iterable | None = None,
                        exclude_seen: bool = True, batch_size: int = 256,
                        item_chunk: int | None = None) -> Recommendations:
  """Top-k items for new users from their raw item-id histories (fold-in by ``score``).

  A history with no known item is answered by popularity (``fallback`` True).
  """
  keys, rows, unknown, notes = history_rows(tm, histories)
  allowed, filter_notes = candidates(tm, allow, deny)
  items, scores, fallback = _rank_all(tm, rows, k, allowed, exclude_seen, batch_size, item_chunk)
  if fallback.any():
    notes.append(f"{int(fallback.sum())} histories have no known item: answered by popularity "
                 f"among training users")
  return Recommendations(keys=keys, items=items, scores=scores, fallback=fallback,
                         unknown=unknown, notes=tuple(notes + filter_notes))


# (item_vectors fn, k) -> jitted (params, factors, query columns, allowed) -> top k.
_SIMILAR: dict[tuple, Any] = {}


def _normalized(vectors):
  norms = jnp.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors / jnp.maximum(norms, 1e-12)


def _similar_step(item_vectors_fn, k: int):
  key = (item_vectors_fn, k)
  step = _SIMILAR.get(key)
  if step is None:

    def step_fn(unit, query, allowed):
      sims = unit[query] @ unit.T  # Cosine: rows are unit vectors.
      exclude = (jnp.arange(unit.shape[0])[None, :] == query[:, None]) | ~allowed[None, :]
      return ranking_ops.top_k_excluding(sims, exclude, k)

    step = _SIMILAR[key] = jax.jit(step_fn)
  return step


# item_vectors fn -> jitted (params, factors) -> unit-length item vectors.
_UNIT_VECTORS: dict[Any, Any] = {}


def unit_item_vectors(tm: TrainedModel) -> jax.Array:
  """The model's item vectors scaled to unit length, [n_items, d] (replicated)."""
  if tm.model.item_vectors is None:
    raise QueryNotSupported(f"{tm.model.name} has no item representation, so it cannot answer "
                            f"similar-item queries")
  if tm.info.get("orientation", "users") != "users":
    raise QueryNotSupported(
        f"{tm.model.name} was trained with items as rows (protocol {tm.info.get('protocol')}): "
        f"its decoder has one vector per user, not per item, so it cannot answer similar-item "
        f"queries")
  fn = _UNIT_VECTORS.get(tm.model.item_vectors)
  if fn is None:  # One jitted function per model's item_vectors: no retrace per query.
    item_vectors = tm.model.item_vectors
    fn = _UNIT_VECTORS[item_vectors] = jax.jit(
        lambda p, f: _normalized(item_vectors(p, f).astype(jnp.float32)))
  shape = jax.eval_shape(fn, tm.params, tm.factors).shape
  # The vectors and their unit copy (EASE/SLIM: two more dense items x items arrays).
  memory.check_fits(2 * 4 * float(np.prod(shape)),
                    f"similar items of {tm.model.name} ({shape[0]:,} x {shape[1]:,} item vectors)",
                    "more memory, or a model with low-dimensional item vectors (e.g. wmf)")
  return fn(tm.params, tm.factors)


def similar_items(tm: TrainedModel, items: Sequence, k: int = 10, *,
                  allow: Iterable | None = None, deny: Iterable | None = None,
                  batch_size: int = 256, unit: jax.Array | None = None) -> Recommendations:
  """The k items most similar to each raw item id, by cosine of ``item_vectors``.

  Args:
    unit: `unit_item_vectors(tm)`, when already computed (several calls).
  """
  index = item_index(tm)
  missing = [_py(i) for i in items if _key(i) not in index]
  if missing:
    raise ValueError(f"{len(missing)} item id(s) are not items of this model: {missing[:10]}")
  unit = unit_item_vectors(tm) if unit is None else unit
  allowed, notes = candidates(tm, allow, deny)
  if not allowed.any():
    raise ValueError("no candidate item is left after the allow/deny lists")
  k_eff = min(k, tm.n_items)
  step = _similar_step(tm.model.item_vectors, k_eff)
  batch_sh = shd.batch_sharding(tm.mesh)
  batch_size = shd.round_up_to_devices(max(1, batch_size), tm.mesh)
  allowed_d = jax.device_put(allowed, shd.replicated(tm.mesh))
  cols_all = np.asarray([index[_key(i)] for i in items], np.int32)
  out_items, out_scores = [], []
  for start in range(0, len(cols_all), batch_size):
    part = cols_all[start:start + batch_size]
    query = np.zeros(batch_size, np.int32)
    query[:len(part)] = part
    values, cols = jax.device_get(step(unit, jax.device_put(query, batch_sh), allowed_d))
    i, s = _answers(tm, values[:len(part)], cols[:len(part)])
    out_items += i
    out_scores += s
  return Recommendations(keys=list(items), items=out_items, scores=out_scores,
                         fallback=np.zeros(len(items), bool), unknown={}, notes=tuple(notes))
