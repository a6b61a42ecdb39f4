"""Static sequence baselines of Ko et al. 2016 (Eq. 4–7): uniform, unigram, bigram.

Counts are taken over the training sequences of all users (pooled); Laplace
smoothing ε is added to every count.  The bigram matrix is kept sparse
(previous item x next item, csr), so I² never materializes.  `fit` counts on
the host in one pass; as a runner model the counts are the ``factors``
(one closed-form epoch) and ``score`` looks them up under ``jit``, a binary
search in the previous item's csr row for the bigram.  The models answer the
sequence protocol (`recjax.eval.sequence`) only.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model, check_config


@dataclasses.dataclass(frozen=True)
class Config:
  order: int = 2  # 0 = uniform (Eq. 4), 1 = unigram (Eq. 6), 2 = bigram (Eq. 7).
  eps: float = 0.1  # Laplace smoothing ε added to each count.

  def __post_init__(self):
    check_config(self, "ngram", above={"eps": 0.0}, choices={"order": (0, 1, 2)})


@dataclasses.dataclass(frozen=True)
class UniformConfig(Config):
  order: int = 0


@dataclasses.dataclass(frozen=True)
class UnigramConfig(Config):
  order: int = 1


NAMES = ("uniform", "unigram", "bigram")  # The registry name of each order.


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


def count_arrays(model: NGram) -> dict:
  """The fitted counts as the runner's factors: {"unigram" [I]} and, for the bigram,
  its csr {"indptr" [I + 1], "next" [nnz], "count" [nnz]} and "row_total" [I]."""
  out = {"unigram": jnp.asarray(model.unigram_counts, jnp.float32)}
  b = model.bigram_counts
  if b is not None:
    b = sp.csr_matrix(b)
    b.sort_indices()
    out.update(indptr=jnp.asarray(b.indptr, jnp.int32), next=jnp.asarray(b.indices, jnp.int32),
               count=jnp.asarray(b.data, jnp.float32),
               row_total=jnp.asarray(np.asarray(b.sum(axis=1)).ravel(), jnp.float32))
  return out


def _csr_lookup(indptr, indices, data, rows, cols):
  """``m[rows, cols]`` of a csr with sorted rows, elementwise, by binary search (jittable)."""
  if indices.shape[0] == 0:
    return jnp.zeros(rows.shape, data.dtype)
  lo, end = indptr[rows], indptr[rows + 1]
  last = indices.shape[0] - 1

  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    right = (lo < hi) & (indices[jnp.minimum(mid, last)] < cols)
    return jnp.where(right, mid + 1, lo), jnp.where((lo < hi) & ~right, mid, hi)

  steps = max(1, math.ceil(math.log2(indptr.shape[0])) + 1)  # a row holds at most I entries.
  lo, _ = jax.lax.fori_loop(0, steps, halve, (lo, end))
  at = jnp.minimum(lo, last)
  return jnp.where((lo < end) & (indices[at] == cols), data[at], 0.0)


def log_probs(counts: dict, previous, items, n_items: int, config: Config):
  """log P(x_t = items | x_{t-1} = previous), elementwise, from `count_arrays` (Eq. 4–7)."""
  eps = config.eps
  if config.order == 0:
    return jnp.full(items.shape, -math.log(n_items))
  if config.order == 1:
    c = counts["unigram"]
    return jnp.log(c[items] + eps) - jnp.log(c.sum() + n_items * eps)
  pair = _csr_lookup(counts["indptr"], counts["next"], counts["count"], previous, items)
  return jnp.log(pair + eps) - jnp.log(counts["row_total"][previous] + n_items * eps)


def make(config: Config) -> Model:
  """The n-gram of `config.order` as a runner model over ``train_sequences``."""

  def fitted(train, train_sequences):
    return fit(list(train_sequences), train.shape[1], config)

  def init(key, train, train_sequences):
    del key  # No randomness: the factors' shapes, then one block step counts.
    return {}, jax.tree.map(jnp.zeros_like, count_arrays(fitted(train, train_sequences)))

  def prepare(train, train_sequences):
    return count_arrays(fitted(train, train_sequences))

  def block_step(params, factors, counts, key):
    del params, factors, key
    return counts

  @jax.jit
  def pair_log_probs(factors, inputs, targets):
    return log_probs(factors, inputs, targets, factors["unigram"].shape[0], config)

  def score(params, factors, batch):
    """Log-probabilities of the sequence protocol's next-item pairs."""
    del params
    if not isinstance(batch, dict):
      raise ValueError(f"{NAMES[config.order]} scores item sequences (the sequence-tail "
                       f"protocol); it cannot rank items for an unordered row of items")
    return pair_log_probs(factors, batch["inputs"], batch["targets"])

  return Model(name=NAMES[config.order], config=config, init=init, prepare=prepare,
               block_step=block_step, score=score, side_keys=("train_sequences",),
               train_defaults={"epochs": 1})
