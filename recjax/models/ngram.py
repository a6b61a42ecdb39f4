"""Static sequence baselines of Ko et al. 2016 (Eq. 4–7): uniform, unigram, bigram.

Counts are taken over the training sequences of all users (pooled); Laplace
smoothing ε is added to every count.  The bigram matrix is kept sparse (scipy,
previous item x next item), so I² never materializes.  Host-side numpy: these
fit in one pass and score by table look-up.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from recjax.models.base import check_config


@dataclasses.dataclass(frozen=True)
class Config:
  order: int = 2  # 0 = uniform (Eq. 4), 1 = unigram (Eq. 6), 2 = bigram (Eq. 7).
  eps: float = 0.1  # Laplace smoothing ε added to each count.

  def __post_init__(self):
    check_config(self, "ngram", above={"eps": 0.0}, choices={"order": (0, 1, 2)})


@dataclasses.dataclass(frozen=True)
class NGram:
  """A fitted n-gram model.

  Attributes:
    config: its Config.
    n_items: I.
    unigram_counts: [I] c_i (Eq. 5).
    bigram_counts: csr [I (previous j), I (next i)] b_ij (Eq. 5), or None below order 2.
  """

  config: Config
  n_items: int
  unigram_counts: np.ndarray
  bigram_counts: sp.csr_matrix | None


def fit(seqs: list[np.ndarray], n_items: int, config: Config = Config()) -> NGram:
  """Counts c_i and b_ij over the training sequences (Eq. 5).

  Args:
    seqs: per-user item sequences with items in [0, n_items).
    n_items: I.
    config: order and ε.
  """
  if config.order not in (0, 1, 2):
    raise ValueError(f"order must be 0, 1 or 2, got {config.order}")
  if config.eps <= 0 and config.order > 0:
    raise ValueError(f"eps must be > 0 (unseen items would get probability 0), got {config.eps}")
  flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
  if flat.size and (flat.min() < 0 or flat.max() >= n_items):
    raise ValueError(f"items must lie in [0, {n_items})")
  uni = np.bincount(flat, minlength=n_items).astype(np.float64)
  big = None
  if config.order == 2:
    prev = np.concatenate([s[:-1] for s in seqs])
    nxt = np.concatenate([s[1:] for s in seqs])
    big = sp.csr_matrix((np.ones(len(prev)), (prev, nxt)), shape=(n_items, n_items))
    big.sum_duplicates()
  return NGram(config=config, n_items=n_items, unigram_counts=uni, bigram_counts=big)


def log_prob(model: NGram, previous: np.ndarray, items: np.ndarray) -> np.ndarray:
  """log P(x_t = items | x_{t-1} = previous), elementwise.

  Args:
    model: from `fit`.
    previous: [n] previous items (ignored below order 2).
    items: [n] next items.
  """
  eps, n = model.config.eps, model.n_items
  items = np.asarray(items, dtype=np.int64)
  if model.config.order == 0:
    return np.full(items.shape, -np.log(n))
  if model.config.order == 1:
    c = model.unigram_counts
    return np.log(c[items] + eps) - np.log(c.sum() + n * eps)
  previous = np.asarray(previous, dtype=np.int64)
  b = model.bigram_counts
  pair = np.asarray(b[previous, items]).ravel() if items.size else np.zeros(0)
  row_total = np.asarray(b.sum(axis=1)).ravel()[previous]
  return np.log(pair + eps) - np.log(row_total + n * eps)


def tail_log_probs(model: NGram, history: list[np.ndarray], tail: list[np.ndarray]
                   ) -> list[np.ndarray]:
  """Per user, log P(x_t | x_<t) of each tail event given the history before it."""
  out = []
  for h, t in zip(history, tail):
    if not len(t):
      out.append(np.zeros(0))
      continue
    if not len(h):
      raise ValueError("a tail needs at least one history event (r_u > 1)")
    full = np.concatenate([h, t])
    prev = full[len(h) - 1:-1]
    out.append(log_prob(model, prev, t))
  return out
