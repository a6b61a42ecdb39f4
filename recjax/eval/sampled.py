"""Ranking one held-out item among sampled negatives (He et al. 2017, NCF §4.1).

For each evaluated user the held-out item (candidate column 0) and its
negatives (the other columns) are scored; the held-out item's rank r is the
number of negatives that score at least as high (ties count against the
model, so a constant scorer gets r = C - 1, never a lucky 0; a NaN score of
the held-out item counts as last).  Then, with one relevant item:

* ``hr@k`` (= ``recall@k`` = ``recall_cdl@k``): 1[r < k];
* ``ndcg@k``: 1[r < k] / log2(r + 2);
* ``precision@k``: 1[r < k] / k;  ``map@k``: 1[r < k] / (r + 1).

How the model is called (the score function's `inputs`):

1. First a *query*: the dict ``{"rows": [B, I] float32 training rows,
   "index": [B] int32 training-row ids (-1 on padding), "items": [B, C] int32
   candidates}``.  A model that knows its training users (NCF's embeddings,
   CDAE's user vectors) reads ``index`` and returns [B, C] candidate scores.
2. If the score function cannot take a query (its abstract evaluation with
   `jax.eval_shape` raises) it gets the dense rows [B, I] alone, like the
   fold-in protocol, and the candidates' columns are gathered from its
   [B, I] scores (Mult-DAE, EASE, popularity).

The choice is made once per (score function, shapes) and cached with the
jitted batch step; everything per batch (scoring, ranks, metric sums) runs in
one jitted function and sums stay on device until one `device_get`.  At most
one batch (none on CPU) is dispatched ahead of the one computing (`recjax.eval.inflight`),
so memory is a few [batch_size, n_items] batches whatever the number of users.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import NamedSharding

from recjax.eval import batches, inflight
from recjax.ops import ranking as ranking_ops

# (score_fn, metrics, shapes) -> (uses_query, jitted batch step).
_BATCH_STEPS: dict[tuple, tuple[bool, Callable]] = {}


def clear_cache() -> None:
  """Forgets every cached batch step (and the score functions they hold)."""
  _BATCH_STEPS.clear()


def metric_sums(scores: jax.Array, row_mask: jax.Array, metrics: tuple[str, ...]) -> dict:
  """Sums over the rows of `row_mask` of each metric, plus ``"users"``.

  Args:
    scores: [B, C] candidate scores, column 0 the held-out item.
    row_mask: [B] bool, rows to count.
    metrics: lower-case names (see the module docstring).

  Returns:
    {metric: float32 sum, "users": int32 count}.
  """
  pos = scores[:, :1]
  beats = (scores[:, 1:] >= pos) | jnp.isnan(scores[:, 1:])
  rank = jnp.sum(beats, axis=1)
  rank = jnp.where(jnp.isnan(scores[:, 0]), scores.shape[1] - 1, rank).astype(jnp.float32)
  m = row_mask.astype(jnp.float32)
  out = {}
  for name in metrics:
    kind, k = ranking_ops.parse_metric(name)
    if kind in ranking_ops.TRAIN_TEST_KINDS:
      raise ValueError(f"sampled evaluation: {name!r} needs the whole catalog ranked with the "
                       f"training items (evaluate_ranking); use hr@K or ndcg@K")
    hit = (rank < k).astype(jnp.float32)
    if kind in ("hr", "recall", "recall_cdl"):
      value = hit
    elif kind == "ndcg":
      value = hit / jnp.log2(rank + 2.0)
    elif kind == "precision":
      value = hit / k
    else:  # map
      value = hit / (rank + 1.0)
    out[name] = jnp.sum(value * m)
  out["users"] = jnp.sum(row_mask.astype(jnp.int32))
  return out


def _takes_query(score_fn, state, query) -> bool:
  """Whether `score_fn` maps a query dict to [B, C] candidate scores."""
  b, c = query["items"].shape
  try:
    out = jax.eval_shape(score_fn, state, query)
  except Exception as query_error:  # pylint: disable=broad-except  # rows-only models reject it.
    try:
      jax.eval_shape(score_fn, state, query["rows"])
    except Exception as rows_error:  # pylint: disable=broad-except
      raise ValueError(f"the score function fails on a query dict ({query_error!r}) and on "
                       f"dense rows ({rows_error!r})") from rows_error
    return False
  if getattr(out, "shape", None) != (b, c):
    raise ValueError(f"a score function that takes a query must return [B, C] = {(b, c)} "
                     f"candidate scores, got {getattr(out, 'shape', out)}")
  return True


def _batch_step(score_fn, state, metrics, example_query):
  shapes = tuple(sorted((k, v.shape) for k, v in example_query.items()))
  key = (score_fn, metrics, shapes)
  cached = _BATCH_STEPS.get(key)
  if cached is None:
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in example_query.items()}
    uses_query = _takes_query(score_fn, state, abstract)

    def step_fn(state, query, row_mask, totals):
      if uses_query:
        scores = score_fn(state, query)
      else:
        scores = jnp.take_along_axis(score_fn(state, query["rows"]), query["items"], axis=1)
      sums = metric_sums(scores, row_mask, metrics)
      return jax.tree.map(jnp.add, totals, sums)

    cached = _BATCH_STEPS[key] = (uses_query, jax.jit(step_fn))
  return cached[1]


def evaluate_sampled(
    score_fn: Callable[[Any, Any], jax.Array],
    state: Any,
    eval_set,
    *,
    metrics: tuple[str, ...] = ("hr@10", "ndcg@10"),
    batch_size: int = 500,
    item_chunk: int | None = None,
    sharding: NamedSharding | None = None,
    on_batch=None,
) -> dict[str, float]:
  """Metrics of ranking each user's held-out item among its sampled negatives.

  Args:
    score_fn: pure ``(state, inputs) -> scores``; `inputs` is a query dict or
      dense rows (see the module docstring).  Pass the same function object
      every call: the jitted step is cached on its identity.
    state: pytree passed to `score_fn` unchanged.
    eval_set: a `recjax.data.loo.SampledEvalSet` (``fold_in`` csr, ``users``
      training-row ids, ``items`` [n, C] candidates, held-out item first).
    metrics: names ``<kind>@<k>``, kinds hr, recall, recall_cdl, ndcg,
      precision, map; k at most C.
    batch_size: users per batch (one compiled shape; the last batch is padded).
    item_chunk: unused (there are only C candidates); accepted for the
      protocol's common signature.
    sharding: optional `NamedSharding` splitting the batch rows over devices.
    on_batch: optional `(done, total)` progress callback (see `evaluate_ranking`).

  Returns:
    {metric (lower-case): mean over users, "users": their number}.
  """
  del item_chunk
  metrics = batches.metric_names(metrics)
  if not metrics:
    raise ValueError("evaluate_sampled: no metrics requested")
  n_candidates = eval_set.items.shape[1]
  for m in metrics:
    _, k = ranking_ops.parse_metric(m)
    if k > n_candidates:
      raise ValueError(f"evaluate_sampled: {m} needs k <= {n_candidates} candidates")
  fold_in = sp.csr_matrix(eval_set.fold_in).astype(np.float32, copy=False)
  users = np.asarray(eval_set.users)
  candidates = np.asarray(eval_set.items, np.int32)
  n = fold_in.shape[0]
  if candidates.min(initial=0) < 0 or candidates.max(initial=0) >= fold_in.shape[1]:
    raise ValueError(f"evaluate_sampled: candidate items outside [0, {fold_in.shape[1]})")

  put = batches.placement(sharding, batch_size)
  batch_size = put.batch_size

  totals = batches.zero_totals(metrics, put.replicated)
  # Rows (float32) on the host and the device and one batch's [B, I] scores of a rows-only model.
  inflight.check_batch_memory(batch_size, fold_in.shape[1], inflight.LIVE_BATCHES * 4 + 4,
                              "sampled")
  dispatch = inflight.BoundedDispatch(-(-n // batch_size), on_batch)
  step = None
  for start in range(0, n, batch_size):
    rows = np.arange(start, min(start + batch_size, n))
    dense = batches.dense_rows(fold_in, rows, batch_size)
    index = np.full((batch_size,), -1, np.int32)
    index[:len(rows)] = users[rows]
    items = np.zeros((batch_size, n_candidates), np.int32)
    items[:len(rows)] = candidates[rows]
    row_mask = np.zeros((batch_size,), bool)
    row_mask[:len(rows)] = True
    query = {"rows": dense, "index": index, "items": items}
    if step is None:
      step = _batch_step(score_fn, state, metrics, query)
    totals = step(state, jax.tree.map(put.rows, query), put.rows(row_mask), totals)
    dispatch.submitted(totals)  # At most one batch ahead: memory set by batch_size, not n.
  dispatch.drain()
  return batches.mean_metrics(totals, metrics)
