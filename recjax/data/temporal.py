"""Strong generalization with a time-sorted fold-in (Sachdeva et al. 2019, SVAE §4).

The users, items and preprocessing are exactly those of the "strong" protocol
(`pipeline.ranking_split`: binarize / min counts from the resolved
`DataConfig`, then `splits.strong_generalization`'s user permutation by
``split_seed``, held-out user counts and item restriction), so a model
evaluated here sees the same validation and test users as under "strong".
Only the fold-in/fold-out cut changes: each held-out user's items are sorted
by time and the FIRST ``n - n_out`` are the fold-in, the LAST ``n_out`` the
fold-out, with ``n_out = int((1 - fold_in_fraction) * n)`` for users with
``n >= 5`` items (the same count and floor as "strong"; fewer: everything
folded in, nothing scored).  ``n`` counts the user's items that remain in the
training item space.

Two protocol names:

* ``"strong-temporal"``: binary values everywhere (what Mult-VAE reads).
* ``"strong-temporal-ordered"``: the same split, but each training-row and
  fold-in entry holds its 1-based time rank within its row (1 = earliest), so
  a sequence model can rebuild the order from the csr rows.  Held-out rows
  stay binary.  (The ranking evaluator only uses ``fold_in != 0`` to exclude
  items, so the ranks change nothing there.)

Time order: a (user, item) pair's time is that of its LATEST event
(`Interactions.event_order`: by timestamp, ties broken by file order; this is
the pair `to_csr` keeps for ratings, and the convention of `recjax.data.loo`).
Datasets without timestamps qualify only when their file order is time order:
`Dataset.kind == "sequence"` (the S3-Rec one-line-per-user files, whose items
are listed in time order).  Anything else raises a ValueError naming the
dataset.  numpy/scipy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recjax.data import preprocess, splits
from recjax.data.splits import EvalSet, RankingSplit
from recjax.data.types import Dataset, Interactions

MIN_ITEMS_TO_SPLIT = splits.MIN_ITEMS_TO_SPLIT  # As "strong".


def require_time_order(dataset: Dataset, protocol: str) -> None:
  """Raises a ValueError naming the dataset when its events have no time order."""
  inter = dataset.interactions
  if inter.timestamps is None and dataset.kind != "sequence":
    raise ValueError(
        f"protocol {protocol!r} needs the time order of each user's events, but dataset "
        f"{dataset.name!r} has no timestamps and is not a time-ordered sequence file "
        f"(kind={dataset.kind!r}); use a dataset with timestamps (e.g. ml-100k) or one of "
        f"the S3-Rec sequence datasets")


def time_rank_matrix(inter: Interactions) -> sp.csr_matrix:
  """users x items csr whose entries are 1-based time ranks within their row.

  The pattern is that of ``inter.to_csr()``; a pair's time is the position of
  its latest event in `Interactions.event_order` (timestamps, ties by file
  order; file order alone without timestamps).

  Args:
    inter: event log.

  Returns:
    float32 csr with sorted indices; row u holds 1..n_u.
  """
  n = inter.n_events
  shape = inter.shape
  order = inter.event_order()
  position = np.empty(n, np.int64)
  position[order] = np.arange(n)
  key = inter.users.astype(np.int64) * max(shape[1], 1) + inter.items
  uniq, inverse = np.unique(key, return_inverse=True)
  latest = np.full(len(uniq), -1, np.int64)
  np.maximum.at(latest, inverse.reshape(-1), position)
  pu, pi = uniq // max(shape[1], 1), uniq % max(shape[1], 1)
  # event_order sorts by user first, so `latest` orders pairs by (user, time).
  by_time = np.lexsort((latest, pu))
  counts = np.bincount(pu, minlength=shape[0])
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(len(uniq), np.int64)
  rank[by_time] = np.arange(len(uniq)) - starts[pu[by_time]] + 1
  m = sp.csr_matrix((rank.astype(np.float32), (pu, pi)), shape=shape)
  m.sort_indices()
  return m


def _rerank_rows(m: sp.csr_matrix) -> sp.csr_matrix:
  """The same pattern with each row's values replaced by their dense 1-based ranks."""
  m = sp.csr_matrix(m, copy=True)
  rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
  order = np.lexsort((m.data, rows))
  rank = np.empty(m.nnz, np.int64)
  rank[order] = np.arange(m.nnz) - m.indptr[rows[order]] + 1
  m.data = rank.astype(np.float32)
  return m


def temporal_eval_set(ranked: sp.csr_matrix, users: np.ndarray, fold_in_fraction: float,
                      ordered: bool, min_items_to_split: int = MIN_ITEMS_TO_SPLIT) -> EvalSet:
  """Fold-in = the first items by time, fold-out = the last ``int(p n)`` (p = 1 - fold_in_fraction).

  Args:
    ranked: csr [n_users x n_items] of the evaluated users (rows in `users`
      order) over the split's item space, values = time ranks (any
      increasing-in-time positive values).
    users: original user index of each row.
    fold_in_fraction: share of each user's items folded in.
    ordered: fold-in values are 1-based time ranks (else 1.0).
    min_items_to_split: fewer items: all folded in, empty held-out row.
  """
  heldout_prop = round(1.0 - fold_in_fraction, 12)
  sub = _rerank_rows(ranked)
  n_u = np.diff(sub.indptr)
  n_out = np.where(n_u >= min_items_to_split, (heldout_prop * n_u).astype(np.int64), 0)
  rows = np.repeat(np.arange(sub.shape[0]), n_u)
  to_out = sub.data > (n_u - n_out)[rows]
  fold_in, held_out = splits._split_entries(sub, to_out)  # pylint: disable=protected-access
  held_out.data = np.ones_like(held_out.data)
  if not ordered:
    fold_in.data = np.ones_like(fold_in.data)
  return EvalSet(fold_in=fold_in, held_out=held_out, users=np.asarray(users, np.int64))


def _temporal_split(dataset: Dataset, config, info: dict[str, Any], ordered: bool
                    ) -> RankingSplit:
  protocol = "strong-temporal-ordered" if ordered else "strong-temporal"
  require_time_order(dataset, protocol)
  inter = dataset.interactions
  # The "strong" branch of pipeline.ranking_split, step for step.
  if config.binarize_threshold is not None:
    inter = preprocess.binarize(inter, config.binarize_threshold)
  if config.min_user_count or config.min_item_count:
    inter = preprocess.filter_min_counts(inter, min_user=config.min_user_count or 0,
                                         min_item=config.min_item_count or 0)
  ranked = time_rank_matrix(inter)
  info["preprocessed"] = {"users": ranked.shape[0], "items": ranked.shape[1],
                          "interactions": int(ranked.nnz)}
  heldout = config.heldout_users
  if heldout >= 1:
    heldout = int(heldout)
  # Same permutation, train rows and item space as "strong" (values are kept by the split);
  # its random fold-in draw is discarded and redone by time below.
  base = splits.strong_generalization(ranked, n_heldout_users=heldout, seed=config.split_seed,
                                      fold_in_fraction=config.fold_in_fraction,
                                      min_items_to_split=MIN_ITEMS_TO_SPLIT)
  items = base.items
  train = base.train.copy()  # Training users' items all lie in the item space: ranks unchanged.
  if not ordered:
    train.data = np.ones_like(train.data)

  def eval_set(users):
    return temporal_eval_set(ranked[users][:, items], users, config.fold_in_fraction, ordered)

  split = RankingSplit(train=train, validation=eval_set(base.validation.users),
                       test=eval_set(base.test.users), items=items,
                       train_users=base.train_users, protocol=protocol)
  info["split"] = {"train_users": split.train.shape[0], "items": split.train.shape[1],
                   "train_interactions": int(split.train.nnz),
                   "validation_users": split.validation.fold_in.shape[0],
                   "test_users": split.test.fold_in.shape[0]}
  s = info["split"]
  info["summary"] = (f"protocol {protocol}: {s['train_users']} train / {s['validation_users']} "
                     f"validation / {s['test_users']} test users, {s['items']} items, "
                     f"{s['train_interactions']} training interactions; fold-in = the first "
                     f"{config.fold_in_fraction:g} of each held-out user's items by time")
  return split


def strong_temporal_split(dataset: Dataset, config, info: dict[str, Any]) -> RankingSplit:
  """Protocol "strong-temporal": binary values, time-sorted fold-in/fold-out."""
  return _temporal_split(dataset, config, info, ordered=False)


def strong_temporal_ordered_split(dataset: Dataset, config, info: dict[str, Any]
                                  ) -> RankingSplit:
  """Protocol "strong-temporal-ordered": values are 1-based time ranks (train and fold-in rows)."""
  return _temporal_split(dataset, config, info, ordered=True)
