"""The leave-one-out protocol with sampled negatives (He et al. 2017, NCF §4.1).

Per user, the latest interaction is the test item and the second-latest the
validation item; everything else is training data.  "Latest" is by timestamp
when the data has them (ties by file order, `Interactions.event_order`), else
by a seeded random order.  Each evaluated user's held-out item is ranked among
99 items the user never interacted with (in train, validation or test), drawn
uniformly without replacement with a seeded generator, separately for the
validation and the test item.  Metrics are HR@10 and NDCG@10 of the held-out
item's rank among the 100 candidates (`recjax.eval.sampled`).

Evaluated users are *training* users (weak generalization): their other
interactions are rows of the training matrix, and `SampledEvalSet.users` holds
each row's training-row index, which `recjax.eval.sampled` hands to the model
(see there).  numpy/scipy only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from recjax.data import preprocess
from recjax.data.splits import RankingSplit
from recjax.data.types import Dataset, Interactions

N_NEGATIVES = 99  # He et al. 2017: the held-out item is ranked among 100 items.
MIN_USER_ITEMS = 3  # A user needs a test, a validation and >= 1 training item to be evaluated.


@dataclasses.dataclass(frozen=True)
class SampledEvalSet:
  """Users evaluated by ranking one held-out item among sampled negatives.

  Attributes:
    fold_in: csr [n_users x n_items], each evaluated user's training row (what
      a model that reads rows sees; equal to ``train[users]``).
    users: int64 [n_users], the training-row index of each evaluated user
      (a row of `RankingSplit.train`).
    items: int32 [n_users x (1 + n_negatives)], the candidates: column 0 is
      the held-out item, the others are negatives the user never interacted
      with (distinct within a row).
  """

  fold_in: sp.csr_matrix
  users: np.ndarray
  items: np.ndarray

  def __post_init__(self):
    n = self.fold_in.shape[0]
    if self.users.shape != (n,) or self.items.ndim != 2 or self.items.shape[0] != n:
      raise ValueError(f"SampledEvalSet: fold_in has {n} rows but users {self.users.shape} "
                       f"and items {self.items.shape}")

  @property
  def n_users(self) -> int:
    return self.fold_in.shape[0]

  @property
  def held_out(self) -> sp.csr_matrix:
    """csr [n_users x n_items] with the held-out item of each row."""
    n = self.n_users
    return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), self.items[:, 0])),
                         shape=self.fold_in.shape)


def latest_two(inter: Interactions, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray, np.ndarray]:
  """Distinct (user, item) pairs and which of them are each user's latest two.

  A pair's time is that of its latest event.  With timestamps, pairs are
  ordered by it (ties by file order); without, by a seeded random key.

  Args:
    inter: event log.
    seed: seeds the random order when there are no timestamps.

  Returns:
    (users, items, is_test, is_validation, evaluated): per distinct pair its
    user and item, whether it is its user's latest / second-latest pair, and
    per user whether it is evaluated (>= `MIN_USER_ITEMS` distinct items).
  """
  n_items = max(inter.n_items, 1)
  key = inter.users.astype(np.int64) * n_items + inter.items
  if inter.timestamps is not None:
    order = inter.event_order()  # by (user, time, file position)
    # The last occurrence of a pair in this order is its latest event.
    rev = key[order][::-1]
    uniq, first_from_end = np.unique(rev, return_index=True)
    rank = len(rev) - 1 - first_from_end  # position of the pair's latest event in `order`
  else:
    uniq = np.unique(key)
    rank = np.random.default_rng(seed).permutation(len(uniq))
  users, items = uniq // n_items, uniq % n_items
  by_user_time = np.lexsort((rank, users))
  users_s = users[by_user_time]
  counts = np.bincount(users, minlength=inter.n_users)
  ends = np.cumsum(counts)
  from_end = ends[users_s] - np.arange(len(users_s))  # 1 for the user's latest pair
  evaluated = counts >= MIN_USER_ITEMS
  is_test = np.zeros(len(uniq), bool)
  is_val = np.zeros(len(uniq), bool)
  is_test[by_user_time] = (from_end == 1) & evaluated[users_s]
  is_val[by_user_time] = (from_end == 2) & evaluated[users_s]
  return users, items, is_test, is_val, evaluated


def sample_negatives(interacted: sp.csr_matrix, users: np.ndarray, n_negatives: int,
                     rng: np.random.Generator) -> np.ndarray:
  """`n_negatives` distinct items per user that its row of `interacted` lacks.

  Rejection sampling per user (uniform over the user's non-interacted items,
  without replacement); deterministic given the generator's state.

  Args:
    interacted: csr [n_users x n_items] of everything each user interacted with.
    users: rows to sample for.
    n_negatives: draws per user.
    rng: the generator (advanced in place).

  Returns:
    int32 [len(users), n_negatives].

  Raises:
    ValueError: when a user has fewer than `n_negatives` non-interacted items.
  """
  n_items = interacted.shape[1]
  out = np.empty((len(users), n_negatives), np.int32)
  indptr, indices = interacted.indptr, interacted.indices
  for r, u in enumerate(users):
    seen = indices[indptr[u]:indptr[u + 1]]
    if n_items - len(np.unique(seen)) < n_negatives:
      raise ValueError(f"user row {u} interacted with {len(seen)} of {n_items} items: "
                       f"fewer than {n_negatives} items are left to sample as negatives")
    chosen: list[int] = []
    taken = set(seen.tolist())
    while len(chosen) < n_negatives:
      for j in rng.integers(0, n_items, size=2 * (n_negatives - len(chosen)) + 8).tolist():
        if j not in taken:
          taken.add(j)
          chosen.append(j)
          if len(chosen) == n_negatives:
            break
    out[r] = chosen
  return out


def _original_index(raw_ids: np.ndarray, original_raw_ids: np.ndarray) -> np.ndarray:
  where = {raw: i for i, raw in enumerate(original_raw_ids.tolist())}
  return np.array([where[raw] for raw in raw_ids.tolist()], np.int64)


def loo_split(dataset: Dataset, config, info: dict[str, Any],
              n_negatives: int = N_NEGATIVES) -> RankingSplit:
  """The leave-one-out split of He et al. 2017 (the "loo-sampled" protocol).

  Preprocessing follows the resolved `DataConfig` (`binarize_threshold`,
  `min_user_count`, `min_item_count`; NCF keeps every rating of users with
  >= 20 ratings: ``binarize_threshold=0, min_user_count=20``).  The item space
  is every item of the preprocessed data.  `config.split_seed` seeds the
  negatives (and the order when there are no timestamps).  `heldout_users` and
  `fold_in_fraction` do not apply.

  Args:
    dataset: the loaded dataset.
    config: resolved `recjax.data.pipeline.DataConfig`.
    info: filled with counts for config.json and the log.
    n_negatives: negatives per evaluated user.

  Returns:
    RankingSplit with ``protocol="loo-sampled"``: `train` has one row per
    preprocessed user (users with < 3 items, or with fewer than `n_negatives`
    items they never touched, keep all of them in train and are not
    evaluated); `validation` and `test` are `SampledEvalSet`s over the same
    evaluated users.
  """
  inter = dataset.interactions
  if config.binarize_threshold is not None:
    inter = preprocess.binarize(inter, config.binarize_threshold)
  if config.min_user_count or config.min_item_count:
    inter = preprocess.filter_min_counts(inter, min_user=config.min_user_count or 0,
                                         min_item=config.min_item_count or 0)
  if inter.n_events == 0:
    raise ValueError(f"{dataset.name}: no interactions left after preprocessing")
  users, items, is_test, is_val, evaluated = latest_two(inter, config.split_seed)
  shape = (inter.n_users, inter.n_items)

  def csr(mask):
    m = sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (users[mask], items[mask])),
                      shape=shape)
    m.sort_indices()
    return m

  # A user needs n_negatives items it never touched; one that lacks them stays in train only.
  too_full = np.bincount(users, minlength=inter.n_users) > inter.n_items - n_negatives
  n_too_full = int((evaluated & too_full).sum())
  evaluated = evaluated & ~too_full
  is_test &= evaluated[users]
  is_val &= evaluated[users]
  eval_users = np.flatnonzero(evaluated).astype(np.int64)
  if not len(eval_users):
    raise ValueError(f"{dataset.name}: no user has >= {MIN_USER_ITEMS} items and "
                     f">= {n_negatives} items it never interacted with")
  train = csr(~(is_test | is_val))
  everything = csr(np.ones(len(users), bool))
  item_of = {}
  for name, mask in (("validation", is_val), ("test", is_test)):
    col = np.full(inter.n_users, -1, np.int64)
    col[users[mask]] = items[mask]
    item_of[name] = col[eval_users]
  rng = np.random.default_rng(config.split_seed)
  fold_in = train[eval_users]

  def eval_set(name):
    negatives = sample_negatives(everything, eval_users, n_negatives, rng)
    candidates = np.concatenate([item_of[name][:, None].astype(np.int32), negatives], axis=1)
    return SampledEvalSet(fold_in=fold_in, users=eval_users, items=candidates)

  validation = eval_set("validation")
  test = eval_set("test")
  original_items = _original_index(inter.item_ids, dataset.interactions.item_ids)
  original_users = _original_index(inter.user_ids, dataset.interactions.user_ids)
  order = "timestamp" if inter.timestamps is not None else f"random (seed {config.split_seed})"
  info["preprocessed"] = {"users": shape[0], "items": shape[1], "interactions": len(users)}
  info["split"] = {"train_users": shape[0], "items": shape[1],
                   "train_interactions": int(train.nnz), "evaluated_users": len(eval_users),
                   "users_without_enough_negatives": n_too_full,
                   "negatives": n_negatives, "latest_by": order}
  info["summary"] = (f"leave-one-out ({order}): {shape[0]} users ({len(eval_users)} evaluated), "
                     f"{shape[1]} items, {train.nnz} training interactions, "
                     f"{n_negatives} sampled negatives per held-out item")
  return RankingSplit(train=train, validation=validation, test=test, items=original_items,
                      train_users=original_users, protocol="loo-sampled")
