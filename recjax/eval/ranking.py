"""The fold-in ranking protocol (Liang et al. 2018, §4.1–4.2).

Each evaluated user's fold-in items go into the model, the fold-in items are
removed from the ranking, and the top-K remaining items are scored against the
user's held-out items.

All the work on a batch (scoring, exclusion, top-K, metric sums) runs in one
jitted function, cached at module level, so an evaluation every epoch compiles
once.  Sums stay on device across batches; one `jax.device_get` at the end.

Memory is bounded by the batch size, not by the number of users: each batch's
dense [batch_size, n_items] inputs are built from the sparse rows only when it
is due, and at most one batch (none on CPU) runs ahead of the one computing
(`recjax.eval.inflight`), so async dispatch cannot queue the whole evaluation.
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
from recjax.ops.mesh import MODEL_AXIS

ScoreFn = Callable[[Any, jax.Array], jax.Array]

# (score_fn, metrics, k, item_chunk, exclude_fold_in) -> jitted batch step.
_BATCH_STEPS: dict[tuple, Callable] = {}


def clear_cache() -> None:
  """Forgets every cached batch step (and the score functions they hold)."""
  _BATCH_STEPS.clear()


def _batch_step(score_fn: ScoreFn, metrics: tuple[str, ...], item_chunk: int | None,
                exclude_fold_in: bool = True, mesh=None):
  """The jitted `(state, inputs, held_out, n_held_out, n_fold_in, row_mask, candidates, totals)
  -> totals`.

  `candidates` ([n_items] bool) are the items that may be ranked at all.
  Metrics of `ranking_ops.TRAIN_TEST_KINDS` get a second top k, over every
  candidate (fold-in items included), and their own user count.  On a
  `mesh` with a ``model`` axis the top k runs per item shard and merges the
  shards' candidates (`ranking_ops.top_k_over_shards`), so no device gathers a
  whole [B, I] score block.
  """
  k = max(ranking_ops.parse_metric(m)[1] for m in metrics)
  if mesh is not None and MODEL_AXIS not in mesh.axis_names:
    mesh = None  # No item shards to merge: the same step as without a mesh.
  key = (score_fn, metrics, k, item_chunk, exclude_fold_in, mesh)
  step = _BATCH_STEPS.get(key)
  if step is None:
    select = lambda s, e, kk: ranking_ops.top_k_excluding(s, e, kk, item_chunk)
    kinds = {m: ranking_ops.parse_metric(m)[0] for m in metrics}
    standard = tuple(m for m in metrics if kinds[m] not in ranking_ops.TRAIN_TEST_KINDS)
    train_test = tuple(m for m in metrics if kinds[m] in ranking_ops.TRAIN_TEST_KINDS)
    k_standard = max((ranking_ops.parse_metric(m)[1] for m in standard), default=0)
    k_train_test = max((ranking_ops.parse_metric(m)[1] for m in train_test), default=0)

    def step_fn(state, inputs, held_out, n_held_out, n_fold_in, row_mask, candidates, totals):
      scores = score_fn(state, inputs)
      outside = jnp.broadcast_to(~candidates[None, :], inputs.shape)
      sums = {}
      if standard:
        exclude = inputs != 0 if exclude_fold_in else jnp.zeros(inputs.shape, bool)
        _, top = ranking_ops.top_k_over_shards(select, k_standard, mesh, scores,
                                               exclude | outside)
        sums.update(ranking_ops.ranking_metric_sums(top, held_out, row_mask, standard,
                                                    n_held_out))
      if train_test:  # evaluatePaper.m: rank every item; training and held-out items count.
        _, top = ranking_ops.top_k_over_shards(select, k_train_test, mesh, scores, outside)
        relevant = ((inputs != 0) & ~outside) | (held_out != 0)
        sums.update(ranking_ops.train_test_recall_sums(top, relevant, n_fold_in + n_held_out,
                                                       row_mask, train_test))
      return {name: total + sums.get(name, 0) for name, total in totals.items()}

    step = _BATCH_STEPS[key] = jax.jit(step_fn)
  return step


def _rows_to_evaluate(eval_set) -> np.ndarray:
  """Row indices of `eval_set.fold_in` to evaluate.

  When the matrices have one row per entry of `eval_set.users`, every row is
  evaluated (`users` then only names them); otherwise `users` are the row
  indices of the evaluated users in full-size matrices.
  """
  n_rows = eval_set.fold_in.shape[0]
  users = np.asarray(eval_set.users)
  if len(users) == n_rows:
    return np.arange(n_rows)
  if len(users) and (users.min() < 0 or users.max() >= n_rows):
    raise ValueError(
        f"EvalSet.users has {len(users)} entries for {n_rows} matrix rows, so they must be "
        f"row indices, but they span [{users.min()}, {users.max()}]")
  return users.astype(np.int64)


def evaluate_ranking(
    score_fn: ScoreFn,
    state: Any,
    eval_set,
    metrics: tuple[str, ...] = ("recall@20", "recall@50", "ndcg@100"),
    batch_size: int = 500,
    item_chunk: int | None = None,
    sharding: NamedSharding | None = None,
    exclude_fold_in: bool = True,
    candidates: np.ndarray | None = None,
    on_batch=None,
) -> dict[str, float]:
  """Ranking metrics of a model under the fold-in protocol.

  Users are processed in fixed-size dense batches; the last one is padded with
  masked rows, so one shape is compiled per (batch_size, n_items).  Items with a
  nonzero fold-in value are excluded from the ranking.  Users without held-out
  items are skipped.

  Args:
    score_fn: pure `(state, inputs [B, I] float32) -> scores [B, I]`, where
      `inputs` are the users' dense fold-in rows.  The jitted batch step is
      cached on the identity of `score_fn` (with `metrics` and `item_chunk`):
      pass the same function object every epoch (a module-level function, or a
      `functools.partial` built once), not a fresh lambda, or it recompiles.
    state: pytree of arrays passed to `score_fn` unchanged (e.g. params);
      it is not resharded.
    eval_set: an object with `fold_in` and `held_out` (scipy sparse
      [n_rows, n_items]) and `users` (np.ndarray).  If `len(users)` equals the
      number of rows, all rows are evaluated; otherwise `users` are the row
      indices to evaluate.
    metrics: metric names (see `recjax.ops.ranking`); top-K uses their largest k.
    batch_size: users per batch.
    item_chunk: optional chunk size for the chunked top-K over the items.
    sharding: optional `NamedSharding` whose spec splits the batch rows, e.g.
      `NamedSharding(jax.make_mesh((n,), ("data",)), PartitionSpec("data"))`.
      The batch size is rounded up to a multiple of the row shards and each
      batch is `device_put` with it; `state` should already be placed on the
      same mesh (replicated, or item-sharded over a ``model`` axis: the top k
      then reduces across the item shards).
    exclude_fold_in: remove the fold-in items from the ranking (the default);
      False ranks every item, fold-in items included.  (``recall_train_test@k``
      always ranks every item and counts the fold-in items as relevant, the
      CVAE authors' evaluatePaper.m; see `recjax.ops.ranking`.)
    candidates: optional [n_items] bool, the only items ranked (e.g. the cold
      items for cold-start recall); held-out items outside it are dropped
      before the metrics, so recall counts over the user's held-out
      candidates, and users left without any are skipped.  None ranks all.
    on_batch: optional `(done, total) -> None` progress callback, called after
      each batch has finished computing.  With or without it, at most one
      batch (none on CPU) is dispatched ahead of the one computing, so peak
      memory is a few
      [batch_size, n_items] batches plus the sparse inputs.

  Returns:
    {metric name (lower-case): mean over evaluated users, "users": their
    number (and "users_train_test", the users with a fold-in or held-out
    item, when a ``recall_train_test`` metric is asked for)}.  Means are NaN
    when no user counts.
  """
  metrics = batches.metric_names(metrics)
  if not metrics:
    raise ValueError("evaluate_ranking: no metrics requested")
  k = max(ranking_ops.parse_metric(m)[1] for m in metrics)
  fold_in = sp.csr_matrix(eval_set.fold_in).astype(np.float32, copy=False)
  held_out = sp.csr_matrix(eval_set.held_out).astype(bool)
  held_out.eliminate_zeros()
  held_out.sum_duplicates()
  if fold_in.shape != held_out.shape:
    raise ValueError(f"fold_in {fold_in.shape} and held_out {held_out.shape} differ in shape")
  n_items = fold_in.shape[1]
  if k > n_items:
    raise ValueError(f"evaluate_ranking: top-{k} needs at least {k} items, got {n_items}")
  if candidates is None:
    candidates = np.ones((n_items,), bool)
  else:
    candidates = np.asarray(candidates)
    if candidates.shape != (n_items,) or candidates.dtype != bool:
      raise ValueError(f"evaluate_ranking: candidates must be a bool array of shape ({n_items},), "
                       f"got {candidates.dtype} {candidates.shape}")
    if candidates.sum() < k:
      raise ValueError(f"evaluate_ranking: top-{k} needs at least {k} candidate items, "
                       f"got {int(candidates.sum())}")
    if not candidates.all():
      held_out = sp.csr_matrix(held_out.multiply(candidates[None, :]))
      held_out.eliminate_zeros()
  rows = _rows_to_evaluate(eval_set)
  # Counted on the host: a row sum over a dense bool batch is slow on XLA:CPU.
  n_held_out_all = np.diff(held_out.indptr).astype(np.int32)
  # recall_train_test's fold-in items: those among the candidates, counted the same way.
  fold_in_ranked = sp.csr_matrix(fold_in != 0)  # A new matrix: the caller's is not touched.
  if not candidates.all():
    fold_in_ranked = sp.csr_matrix(fold_in_ranked.multiply(candidates[None, :]))
    fold_in_ranked.eliminate_zeros()
  n_fold_in_all = np.diff(fold_in_ranked.indptr).astype(np.int32)

  put = batches.placement(sharding, batch_size)
  batch_size = put.batch_size

  step = _batch_step(score_fn, metrics, None if item_chunk is None else int(item_chunk),
                     bool(exclude_fold_in), None if sharding is None else sharding.mesh)
  candidates = put.replicated(candidates)
  totals = batches.zero_totals(metrics, put.replicated)
  # Inputs (float32 fold-in + bool held-out) on the host and the device, and one batch's
  # scores and masked scores (float32 each) on the device.
  inflight.check_batch_memory(batch_size, n_items, inflight.LIVE_BATCHES * 5 + 8, "ranking")
  n_batches = -(-len(rows) // batch_size)
  dispatch = inflight.BoundedDispatch(n_batches, on_batch)
  for start in range(0, len(rows), batch_size):
    batch_rows = rows[start:start + batch_size]
    row_mask = np.zeros((batch_size,), bool)
    row_mask[:len(batch_rows)] = True
    n_held_out = np.zeros((batch_size,), np.int32)
    n_held_out[:len(batch_rows)] = n_held_out_all[batch_rows]
    n_fold_in = np.zeros((batch_size,), np.int32)
    n_fold_in[:len(batch_rows)] = n_fold_in_all[batch_rows]
    totals = step(
        state,
        put.items(batches.LazyRows(fold_in, batch_rows, batch_size)),
        put.full(batches.LazyRows(held_out, batch_rows, batch_size)),
        put.rows(n_held_out),
        put.rows(n_fold_in),
        put.rows(row_mask),
        candidates,
        totals,
    )
    # Waits (for the previous batch; on CPU for this one): without it async dispatch queues
    # every batch's dense inputs and memory grows with the number of users.
    dispatch.submitted(totals)
  dispatch.drain()
  return batches.mean_metrics(totals, metrics)
