"""Next-item NLL of a held-out tail (Ko et al. 2016, Eq. 3).

E = -(1/U) Σ_u (1/|tail_u|) Σ_{t in tail_u} log P(x_t | x_<t): the per-event
negative log-likelihood averaged within each user, then over users.  Every
model hands in log P(x_t | x_<t) of each tail event; users with an empty tail
are left out of the mean.  The uniform model's error is log I exactly.
"""

from __future__ import annotations

import numpy as np


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


def tails_from_pairs(logp: np.ndarray, tail_mask: np.ndarray) -> list[np.ndarray]:
  """Per-user tail log-probabilities from [U, T] scores of shifted pairs.

  Args:
    logp: [U, T] log P(target_t | inputs_<=t) (see `data.sequences.next_item_pairs`).
    tail_mask: [U, T] 1 where the target is a tail event.
  """
  logp, tail_mask = np.asarray(logp), np.asarray(tail_mask) > 0
  return [logp[u][tail_mask[u]] for u in range(logp.shape[0])]


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
