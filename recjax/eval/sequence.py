"""Next-item NLL of a held-out tail (Ko et al. 2016, Eq. 3).

E = -(1/U) Σ_u (1/|tail_u|) Σ_{t in tail_u} log P(x_t | x_<t): the per-event
negative log-likelihood averaged within each user, then over users.  Every
model hands in log P(x_t | x_<t) of each tail event; users with an empty tail
are left out of the mean.  The uniform model's error is log I exactly.

`evaluate_sequence` is the runner's protocol for a `data.sequences.SequenceEvalSet`
(`recjax.eval.EVALUATORS`): it reports ``error`` (E, lower is better) and
``neg_error`` (-E, what the runner maximizes to pick an epoch).
"""

from __future__ import annotations

import numpy as np

from recjax.data.sequences import bucket_width, empirical_entropy, next_item_pairs

METRICS = ("error", "neg_error")


def per_user_errors(tail_logprobs: list[np.ndarray]) -> np.ndarray:
  """[U] mean NLL per tail event of each user (NaN where the tail is empty).

  Args:
    tail_logprobs: per user, log P(x_t | x_<t) of each tail event (natural log).
  """
  out = np.full(len(tail_logprobs), np.nan)
  for u, lp in enumerate(tail_logprobs):
    lp = np.asarray(lp, dtype=np.float64)
    if lp.size:
      if not np.all(np.isfinite(lp)) or np.any(lp > 1e-6):
        raise ValueError(f"user {u}: log-probabilities must be finite and <= 0, got "
                         f"min {lp.min()}, max {lp.max()}")
      out[u] = -lp.mean()
  return out


def sequence_error(tail_logprobs: list[np.ndarray]) -> tuple[float, np.ndarray]:
  """Eq. 3: (E, per-user errors) from the per-event log-probabilities of each tail.

  Returns:
    (mean over users with a non-empty tail, [U] per-user errors with NaN for empty tails).
  """
  errors = per_user_errors(tail_logprobs)
  if np.all(np.isnan(errors)):
    raise ValueError("every tail is empty; nothing to evaluate")
  return float(np.nanmean(errors)), errors


def uniform_error(n_items: int) -> float:
  """The error of P = 1/I (Eq. 4): log I."""
  return float(np.log(n_items))


def entropy_terciles(entropy) -> np.ndarray:
  """Tercile 0, 1, 2 of each user by rank of entropy (ties broken by user order).

  Rank terciles stay three equal groups when many users share one entropy (with no
  repeat consumption a user's entropy is log of their length, so value quantiles
  can leave a tercile empty).
  """
  entropy = np.asarray(entropy, np.float64)
  rank = np.empty(len(entropy), np.int64)
  rank[np.argsort(entropy, kind="stable")] = np.arange(len(entropy))
  return (3 * rank) // max(len(entropy), 1)


def _batch(eval_set, rows: np.ndarray, batch_size: int) -> dict:
  """Next-item pairs of the users at `rows`, padded to `batch_size` rows and a power-of-two width."""
  hist = [eval_set.histories[r] for r in rows]
  tail = [eval_set.tails[r] for r in rows]
  pairs = next_item_pairs(hist, tail, multiple=1)
  longest = int(pairs["mask"].sum(axis=1).max()) if len(rows) else 0
  width = bucket_width(longest, 1 << 40)  # No cap: a power of two >= 8.
  pad_rows = batch_size - len(rows)

  def fit(a):
    return np.pad(a[:, :width], ((0, pad_rows), (0, width - min(a.shape[1], width))))

  users = np.concatenate([np.asarray(eval_set.users)[rows], np.zeros(pad_rows, np.int64)])
  return {"users": users.astype(np.int32), "inputs": fit(pairs["inputs"]),
          "targets": fit(pairs["targets"]), "events": fit(pairs["mask"]),
          "tail": fit(pairs["tail_mask"])}


def evaluate_sequence(score_fn, state, eval_set, metrics=METRICS, batch_size: int = 500,
                      item_chunk=None, sharding=None, exclude_fold_in: bool = True,
                      candidates=None, on_batch=None) -> dict:
  """E (Eq. 3) of the users of `eval_set` under a sequence model.

  Args:
    score_fn: ``(state, batch) -> [B, T] log P(targets_t | inputs_<=t)``, called
      outside ``jit`` on host batches (the model's ``score`` may loop over
      windows or look counts up).  ``batch`` holds ``users`` int32 [B] (the
      training row; 0 on padding rows), ``inputs``, ``targets`` int32 [B, T]
      (position t feeds x_t and is scored on x_{t+1} over history + tail) and
      ``events`` float32 [B, T] (1 on real pairs) and ``scored`` float32 [B, T]
      (1 on the tail's pairs: only those are read, so a model may leave the
      other positions at 0 and skip their output layer); T is a power of two >= 8.
    state: passed to `score_fn` unchanged.
    eval_set: a `data.sequences.SequenceEvalSet`.
    metrics: names among `METRICS` (both are always computed).
    batch_size: users per call, longest sequences first; the last batch is padded.
    item_chunk, sharding, exclude_fold_in: the ranking protocols' options; unused here.
    candidates: cold-start candidates; the sequence protocol has none (must be None).
    on_batch: optional ``callable(done_batches, total_batches)``.

  Returns:
    {"error", "neg_error", "users" (users with a non-empty tail)}; with
    ``eval_set.per_user`` also "per_user_error" ([n] with None for an empty
    tail) and "history_entropy" ([n] entropy of each history, for Figure 2).
  """
  del item_chunk, sharding, exclude_fold_in
  unknown = [m for m in metrics if m not in METRICS]
  if unknown:
    raise ValueError(f"sequence protocol: unknown metric {unknown[0]!r}; valid: {METRICS}")
  if candidates is not None:
    raise ValueError("sequence protocol: there is no cold-start item evaluation")
  lengths = np.array([len(h) + len(t) for h, t in zip(eval_set.histories, eval_set.tails)])
  scored = np.flatnonzero(np.array([len(t) for t in eval_set.tails]) > 0)
  order = scored[np.argsort(-lengths[scored], kind="stable")]
  tails = [np.zeros(0)] * eval_set.n_users
  starts = range(0, len(order), batch_size)
  for k, start in enumerate(starts):
    rows = order[start:start + batch_size]
    batch = _batch(eval_set, rows, batch_size)
    scored = batch.pop("tail")
    logp = np.asarray(score_fn(state, {**batch, "scored": scored}))
    for j, r in enumerate(rows):
      tails[r] = logp[j][scored[j] > 0]
    if on_batch is not None:
      on_batch(k + 1, len(starts))
  if not len(order):
    return {"error": float("nan"), "neg_error": float("nan"), "users": 0}
  error, per_user = sequence_error(tails)
  out = {"error": error, "neg_error": -error, "users": int(len(order))}
  if eval_set.per_user:
    out["per_user_error"] = [None if np.isnan(e) else float(e) for e in per_user]
    out["history_entropy"] = empirical_entropy(eval_set.histories).tolist()
  return out
