"""Seeded synthetic implicit-feedback matrices with planted taste clusters.

Generative model (`synthetic_implicit`):

* Item popularity is Zipf-like: item ``i`` has a random popularity rank
  ``r_i`` (a permutation of ``0..n_items-1``) and weight ``p_i ∝ (r_i +
  1) ** -item_alpha``.
* Taste clusters: item ``i`` belongs to cluster ``g_i`` (a random balanced
  assignment) and user ``u`` to cluster ``z_u`` (uniform).  User ``u`` draws
  items i.i.d. from the mixture
  ``p_u(i) = s * p(i | g_i = z_u) + (1 - s) * p(i)``, ``s = cluster_strength``,
  where ``p(i | g)`` is the popularity renormalized within cluster ``g``.  So
  there are only n_clusters distinct user distributions (a planted low-rank
  structure that models can learn; ``s = 0`` removes it).
* Activity: user ``u`` has exactly ``c_u`` distinct items,
  ``c_u = min_user_items + share of the rest ∝ exp(user_sigma * N(0, 1))``
  (log-normal, right-skewed), allocated by largest remainder with the cap
  ``c_u <= n_items``, so ``sum(c_u) == nnz`` exactly and no user is empty.
* Each user's ``c_u`` items are a weighted sample *without replacement* from
  ``p_u`` (successive sampling): the first ``c_u`` distinct items of an
  i.i.d. stream from ``p_u``.  Heavy users (``c_u > n_items / 10``) use the
  equivalent exponential-keys method (the ``c_u`` smallest ``E_i / p_u(i)``,
  ``E_i ~ Exp(1)``), which is exact and avoids long streams.

Items may end up with no interaction (unpopular tail items); users never do.
The result is a binary float csr with sorted indices and exactly ``nnz``
stored entries.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_HEAVY_FRACTION = 0.1  # users with more than this share of all items use exp-keys
_MAX_ROUNDS = 12


def _allocate(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
  """Integer shares of `total` proportional to `weights`, each <= cap (water-filling)."""
  out = np.zeros(len(weights), np.int64)
  free = np.ones(len(weights), bool)
  budget = total
  while budget > 0:
    w = weights[free]
    target = budget * (w / w.sum())
    over = target >= cap
    if over.any():
      idx = np.flatnonzero(free)[over]
      out[idx] = cap
      free[idx] = False
      budget -= cap * len(idx)
      continue
    base = np.floor(target).astype(np.int64)
    rem = budget - int(base.sum())
    if rem > 0:
      frac = target - base
      top = np.argpartition(-frac, rem - 1)[:rem]
      base[top] += 1
    out[free] = base
    break
  return out


class _Sampler:
  """Draws items from the per-cluster mixtures p_u."""

  def __init__(self, p, groups, n_clusters, strength):
    self.n_items = len(p)
    self.strength = strength
    self.cdf = np.cumsum(p)
    self.cdf /= self.cdf[-1]
    self.by_cluster = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups, minlength=n_clusters)
    self.start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    self.end = self.start + sizes
    pc = p[self.by_cluster]
    gc = groups[self.by_cluster]
    mass = np.bincount(gc, weights=pc, minlength=n_clusters)
    within = np.cumsum(pc) - np.repeat(np.cumsum(mass) - mass, sizes)
    self.cluster_cdf = gc + within / mass[gc]  # in (g, g + 1] for cluster g
    self.p = p
    self.mass = mass
    self.groups = groups

  def draw(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of `clusters` (the drawing user's cluster)."""
    n = len(clusters)
    u = rng.random(n)
    from_cluster = rng.random(n) < self.strength
    items = np.empty(n, np.int64)
    g = np.searchsorted(self.cdf, u[~from_cluster], side="right")
    items[~from_cluster] = np.minimum(g, self.n_items - 1)
    z = clusters[from_cluster]
    pos = np.searchsorted(self.cluster_cdf, z + u[from_cluster], side="right")
    pos = np.clip(pos, self.start[z], self.end[z] - 1)
    items[from_cluster] = self.by_cluster[pos]
    return items

  def weights(self, cluster: int) -> np.ndarray:
    """p_u for a user of `cluster`."""
    in_c = (self.groups == cluster) * (self.p / self.mass[cluster])
    return self.strength * in_c + (1.0 - self.strength) * self.p


def _group_cumsum(flags: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Cumulative sum of flags restarting at every group of the given lengths."""
  cs = np.cumsum(flags, dtype=np.int64)
  before = np.concatenate([[0], cs])[np.cumsum(lengths) - lengths]
  return cs - np.repeat(before, lengths)


def _sample_light(users, counts, user_cluster, sampler, n_items, rng):
  """Successive sampling by oversampled streams; returns keys and unfinished users."""
  accepted = np.empty(0, np.int64)
  need = counts.copy()
  todo = users
  for round_ in range(_MAX_ROUNDS):
    if len(todo) == 0:
      break
    n_draw = need + (need // 2 if round_ == 0 else need) + 4  # oversample
    stream_users = np.repeat(todo, n_draw)
    keys = stream_users * n_items + sampler.draw(user_cluster[stream_users], rng)
    # Entries already accepted for these users come first, so a repeated item is
    # recognized as such; new items count in draw order.
    mine = np.isin(accepted // n_items, todo) if len(accepted) else np.zeros(0, bool)
    prior = accepted[mine]
    stream = np.concatenate([prior, keys])
    _, first = np.unique(stream, return_index=True)
    novel = np.zeros(len(stream), bool)
    novel[first] = True
    novel = novel[len(prior):]
    rank = _group_cumsum(novel, n_draw)
    take = novel & (rank <= np.repeat(need, n_draw))
    accepted = np.concatenate([accepted, keys[take]])
    got = np.bincount(np.searchsorted(todo, stream_users[take]), minlength=len(todo))
    need = need - got
    left = need > 0
    todo, need = todo[left], need[left]
  return accepted, todo


def _sample_heavy(users, counts, user_cluster, sampler, n_items, rng, chunk_elems=1 << 22):
  """Exact weighted sampling without replacement by exponential keys."""
  out = []
  if len(users) == 0:
    return np.empty(0, np.int64)
  order = np.lexsort((counts, user_cluster[users]))
  users, counts = users[order], counts[order]
  clusters = user_cluster[users]
  rows = max(1, chunk_elems // n_items)
  start = 0
  while start < len(users):
    c = clusters[start]
    stop = start + 1
    while stop < len(users) and stop - start < rows and clusters[stop] == c:
      stop += 1
    w = sampler.weights(c)
    e = rng.standard_exponential((stop - start, n_items)) / w
    kmax = int(counts[start:stop].max())
    if kmax < n_items:
      part = np.argpartition(e, kmax - 1, axis=1)[:, :kmax]
    else:
      part = np.broadcast_to(np.arange(n_items), e.shape)
    vals = np.take_along_axis(e, part, axis=1)
    part = np.take_along_axis(part, np.argsort(vals, axis=1), axis=1)
    for j in range(stop - start):
      out.append(users[start + j] * n_items + part[j, :counts[start + j]])
    start = stop
  return np.concatenate(out)


def synthetic_implicit(n_users: int, n_items: int, nnz: int, seed: int = 0, *,
                       item_alpha: float = 1.0, user_sigma: float = 1.0,
                       min_user_items: int = 1, n_clusters: int = 20,
                       cluster_strength: float = 0.5,
                       dtype=np.float32) -> sp.csr_matrix:
  """A binary users x items csr with exactly `nnz` entries (model in module doc).

  Args:
    n_users: rows.
    n_items: columns.
    nnz: exact number of distinct non-zeros; needs
      ``n_users * min_user_items <= nnz <= n_users * n_items``.
    seed: everything is a function of the arguments and this seed.
    item_alpha: Zipf exponent of item popularity (0 = uniform).
    user_sigma: log-normal spread of user activity (0 = equal activity).
    min_user_items: least number of items of every user (>= 1).
    n_clusters: number of planted taste clusters (capped at n_items).
    cluster_strength: probability in [0, 1) that a draw comes from the user's
      cluster rather than global popularity.
    dtype: value dtype.

  Returns:
    csr_matrix [n_users, n_items] of ones, sorted indices, no empty row.
  """
  if min_user_items < 1 or min_user_items > n_items:
    raise ValueError(f"min_user_items must be in [1, n_items], got {min_user_items}")
  if not n_users * min_user_items <= nnz <= n_users * n_items:
    raise ValueError(f"nnz={nnz} must be in [{n_users * min_user_items}, "
                     f"{n_users * n_items}] for {n_users} x {n_items}")
  if not 0.0 <= cluster_strength < 1.0:
    raise ValueError(f"cluster_strength must be in [0, 1), got {cluster_strength}")
  rng = np.random.default_rng(seed)
  n_clusters = max(1, min(n_clusters, n_items))
  p = (rng.permutation(n_items) + 1.0) ** -item_alpha
  p /= p.sum()
  groups = rng.permutation(n_items) % n_clusters
  user_cluster = rng.integers(n_clusters, size=n_users)
  w_user = np.exp(user_sigma * rng.standard_normal(n_users))
  counts = min_user_items + _allocate(w_user, nnz - n_users * min_user_items,
                                      n_items - min_user_items)
  sampler = _Sampler(p, groups, n_clusters, cluster_strength)

  heavy = counts > _HEAVY_FRACTION * n_items
  light_users = np.flatnonzero(~heavy)
  light_keys, unfinished = _sample_light(light_users, counts[light_users], user_cluster,
                                         sampler, n_items, rng)
  if len(unfinished):  # rare: restart those users with the exact method
    light_keys = light_keys[~np.isin(light_keys // n_items, unfinished)]
  heavy_users = np.union1d(np.flatnonzero(heavy), unfinished)
  heavy_keys = _sample_heavy(heavy_users, counts[heavy_users], user_cluster, sampler,
                             n_items, rng)
  keys = np.concatenate([light_keys, heavy_keys])
  del light_keys, heavy_keys
  keys.sort()
  rows = keys // n_items
  if not np.array_equal(np.bincount(rows, minlength=n_users), counts):
    raise AssertionError("synthetic_implicit: per-user counts do not match (bug)")
  indices = (keys - rows * n_items).astype(np.int32)
  del rows
  indptr = np.zeros(n_users + 1, np.int64)
  np.cumsum(counts, out=indptr[1:])
  m = sp.csr_matrix((np.ones(len(keys), dtype), indices, indptr), shape=(n_users, n_items))
  m.has_sorted_indices = True
  return m


def ml20m_like(seed: int = 0, **kwargs) -> sp.csr_matrix:
  """A matrix of the size of binarized ML-20M (136,677 x 20,108, 10,000,000 nnz).

  Defaults: users have at least 5 items (as after vae_cf's filtering),
  ``item_alpha=0.8`` and ``user_sigma=1.2`` (median user ~38 items, top 1% of
  items ~20% of the entries; chosen by eye, not fitted to ML-20M).  Keyword
  arguments override them and go to `synthetic_implicit`.  About 5 s and 1 GB
  peak on a 2-core machine.
  """
  kwargs.setdefault("min_user_items", 5)
  kwargs.setdefault("item_alpha", 0.8)
  kwargs.setdefault("user_sigma", 1.2)
  return synthetic_implicit(136_677, 20_108, 10_000_000, seed, **kwargs)
