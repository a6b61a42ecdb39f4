"""The rating-prediction protocol: RMSE and MAE on held-out ratings.

Each scored row's training ratings go into the model (``score_fn``), the
predictions are clipped to the training rating range (AutoRec clips its
predictions to [1, 5]) and compared with the row's held-out ratings.  One
jitted function per batch does the scoring and the masked error sums; sums stay
on device across batches and are fetched once.  At most one batch (none on
CPU) is dispatched ahead of the one computing (`recjax.eval.inflight`), so
memory is a few dense batches whatever the number of rows.

Metric names (lower-case):

* ``rmse``, ``mae`` -- over all held-out ratings (not averaged per row);
* ``neg_rmse``, ``neg_mae`` -- their negatives, for the runner, which keeps the
  epoch that *maximizes* ``select_metric`` (rating configs select on ``neg_rmse``);
* ``users`` is always returned: the rows scored (users or items, by orientation).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import NamedSharding

from recjax.eval import batches, inflight

ScoreFn = Callable[[Any, jax.Array], jax.Array]
METRICS = ("rmse", "mae", "neg_rmse", "neg_mae")

# score_fn -> jitted batch step.
_BATCH_STEPS: dict[Any, Callable] = {}


def clear_cache() -> None:
  """Forgets every cached batch step (and the score functions they hold)."""
  _BATCH_STEPS.clear()


def rating_error_sums(predictions, targets, observed, rating_range):
  """Sums of squared and absolute errors of clipped predictions on observed entries.

  Args:
    predictions: [B, I] predicted ratings.
    targets: [B, I] true ratings (anything where not observed).
    observed: [B, I] bool, which entries are held-out ratings.
    rating_range: (lowest, highest) rating; predictions are clipped to it.

  Returns:
    {"sse": sum of squared errors, "sae": sum of absolute errors, "count": entries}.
  """
  lo, hi = rating_range
  err = jnp.where(observed, jnp.clip(predictions, lo, hi) - targets, 0.0)
  return {"sse": jnp.sum(err * err), "sae": jnp.sum(jnp.abs(err)),
          "count": jnp.sum(observed.astype(jnp.float32))}


def _batch_step(score_fn: ScoreFn):
  """The jitted `(state, inputs, targets, observed, rating_range, totals) -> totals`."""
  step = _BATCH_STEPS.get(score_fn)
  if step is None:

    def step_fn(state, inputs, targets, observed, rating_range, totals):
      predictions = score_fn(state, inputs)
      sums = rating_error_sums(predictions, targets, observed, rating_range)
      return jax.tree.map(jnp.add, totals, sums)

    step = _BATCH_STEPS[score_fn] = jax.jit(step_fn)
  return step


def evaluate_rating(
    score_fn: ScoreFn,
    state: Any,
    eval_set,
    *,
    metrics: tuple[str, ...] = ("rmse", "mae"),
    batch_size: int = 500,
    item_chunk: int | None = None,
    sharding: NamedSharding | None = None,
    on_batch=None,
) -> dict[str, float]:
  """RMSE/MAE of a model's clipped rating predictions on held-out ratings.

  Rows are processed in fixed-size dense batches (the last one padded with
  rows that have no held-out ratings), so one shape is compiled per
  (batch_size, n_columns).

  Args:
    score_fn: pure `(state, inputs [B, I] float32) -> predicted ratings [B, I]`,
      where `inputs` are the rows' dense training ratings.  The jitted batch step
      is cached on the identity of `score_fn`: pass the same object every epoch.
    state: pytree passed to `score_fn` unchanged.
    eval_set: a `recjax.data.ratings.RatingEvalSet` (or any object with csr
      `fold_in` and `held_out` of one shape and `rating_range`).
    metrics: names from `METRICS`.
    batch_size: rows per batch.
    item_chunk: unused (predictions are needed for every held-out column);
      accepted so that every protocol takes the same arguments.
    sharding: optional `NamedSharding` splitting the batch rows; the batch size
      is rounded up to a multiple of the row shards.
    on_batch: optional `(done, total)` progress callback (see `evaluate_ranking`).

  Returns:
    {metric: value, "users": rows scored}.  Values are NaN without held-out ratings.

  Raises:
    ValueError: an unknown metric name or mismatched shapes.
  """
  del item_chunk
  metrics = batches.metric_names(metrics)
  unknown = [m for m in metrics if m not in METRICS]
  if unknown or not metrics:
    raise ValueError(f"evaluate_rating: metrics {unknown or 'none'} are not rating metrics; "
                     f"valid: {METRICS} (set train metrics, e.g. --set metrics=rmse,mae,neg_rmse "
                     f"--set select_metric=neg_rmse)")
  fold_in = sp.csr_matrix(eval_set.fold_in).astype(np.float32, copy=False)
  held_out = sp.csr_matrix(eval_set.held_out).astype(np.float32, copy=False)
  held_out.sum_duplicates()
  if fold_in.shape != held_out.shape:
    raise ValueError(f"fold_in {fold_in.shape} and held_out {held_out.shape} differ in shape")
  # The stored pattern, not the values, says what is held out.
  pattern = sp.csr_matrix((np.ones_like(held_out.data, dtype=bool), held_out.indices,
                           held_out.indptr), shape=held_out.shape)
  lo, hi = (float(v) for v in eval_set.rating_range)
  if not lo <= hi:
    raise ValueError(f"evaluate_rating: rating_range {eval_set.rating_range} is empty")
  rows = np.flatnonzero(np.diff(held_out.indptr) > 0)

  put = batches.placement(sharding, batch_size)
  batch_size = put.batch_size

  step = _batch_step(score_fn)
  totals = jax.tree.map(put.replicated,
                        {k: np.zeros((), np.float32) for k in ("sse", "sae", "count")})
  rating_range = put.replicated((np.float32(lo), np.float32(hi)))
  # Host inputs (float32 rows and targets, bool pattern) of the live batches, and one
  # batch's predictions and errors (float32) on the device.
  inflight.check_batch_memory(batch_size, fold_in.shape[1], inflight.LIVE_BATCHES * 9 + 8,
                              "rating")
  dispatch = inflight.BoundedDispatch(-(-len(rows) // batch_size), on_batch)
  for start in range(0, len(rows), batch_size):
    batch_rows = rows[start:start + batch_size]
    totals = step(state,
                  put.full(batches.LazyRows(fold_in, batch_rows, batch_size, np.float32)),
                  put.full(batches.LazyRows(held_out, batch_rows, batch_size, np.float32)),
                  put.full(batches.LazyRows(pattern, batch_rows, batch_size, bool)),
                  rating_range, totals)
    dispatch.submitted(totals)  # At most one batch ahead: memory set by batch_size.
  dispatch.drain()

  totals = jax.device_get(totals)
  count = float(totals["count"])
  rmse = math.sqrt(float(totals["sse"]) / count) if count else float("nan")
  mae = float(totals["sae"]) / count if count else float("nan")
  values = {"rmse": rmse, "mae": mae, "neg_rmse": -rmse, "neg_mae": -mae}
  result = {m: values[m] for m in metrics}
  result["users"] = int(len(rows))
  return result
