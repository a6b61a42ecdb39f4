"""Train/validation/test splits for ranking and sequence evaluation.

Every split is a pure function of its data and ``seed``: all randomness comes
from one ``np.random.default_rng(seed)`` created inside the call.

Random subsets of a user's items are drawn by giving each of the user's entries
an i.i.d. uniform key and taking the entries with the smallest keys: a uniform
random subset of the requested size, like ``np.random.choice(n, size,
replace=False)`` in the reference code, but vectorized over all users (so the
exact subsets differ from the reference's legacy-RNG draws).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from recjax.data.types import Interactions


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Users evaluated by ranking.

  Attributes:
    fold_in: csr [n_users x n_items], what the model sees of each user.
    held_out: csr [n_users x n_items], what is ranked and scored.  Rows may be
      empty (too few items to split); evaluation masks them.
    users: int64 [n_users], the original dense user index of each row.
  """

  fold_in: sp.csr_matrix
  held_out: sp.csr_matrix
  users: np.ndarray

  @property
  def n_users(self) -> int:
    return self.fold_in.shape[0]


@dataclasses.dataclass(frozen=True)
class RankingSplit:
  """Training matrix plus validation and test users, over one item space.

  Attributes:
    train: csr [n_train_users x n_items].
    validation: users for model selection.
    test: users for the reported metrics.
    items: int64 [n_items], original item index of each column.
    train_users: int64 [n_train_users], original user index of each train row.
    protocol: "strong" or "weak" (or a caller's name for it).
  """

  train: sp.csr_matrix
  validation: EvalSet
  test: EvalSet
  items: np.ndarray
  train_users: np.ndarray
  protocol: str

  @property
  def n_items(self) -> int:
    return self.train.shape[1]


def _row_ids(m: sp.csr_matrix) -> np.ndarray:
  return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def _canonical(m: sp.spmatrix) -> sp.csr_matrix:
  """A csr copy with sorted indices and no duplicates (so entries are pairs)."""
  m = sp.csr_matrix(m, copy=True)
  m.sum_duplicates()
  m.sort_indices()
  return m


def _random_rank_in_row(m: sp.csr_matrix, rng: np.random.Generator) -> np.ndarray:
  """A uniformly random rank 0..nnz_u-1 of each stored entry within its row."""
  rows = _row_ids(m)
  keys = rng.random(m.nnz)
  order = np.lexsort((keys, rows))
  rank = np.empty(m.nnz, np.int64)
  rank[order] = np.arange(m.nnz) - m.indptr[rows[order]]
  return rank


def _split_entries(m: sp.csr_matrix, to_second: np.ndarray) -> tuple[sp.csr_matrix,
                                                                     sp.csr_matrix]:
  """Two matrices of m's shape: entries where to_second is False / True."""
  rows = _row_ids(m)

  def build(mask):
    out = sp.csr_matrix((m.data[mask], (rows[mask], m.indices[mask])), shape=m.shape,
                        dtype=m.dtype)
    out.sort_indices()
    return out

  return build(~to_second), build(to_second)


MIN_ITEMS_TO_SPLIT = 5  # A held-out user with fewer items is folded in whole, not scored.


def _n_heldout(n_users: int, n_heldout_users: int | float) -> int:
  if isinstance(n_heldout_users, (float, np.floating)):
    if not 0.0 <= n_heldout_users < 0.5:
      raise ValueError(f"fraction of held-out users must be in [0, 0.5), got {n_heldout_users}")
    return int(n_heldout_users * n_users)
  return int(n_heldout_users)


def strong_generalization(matrix: sp.spmatrix, n_heldout_users: int | float = 0.1,
                          seed: int = 0, fold_in_fraction: float = 0.8,
                          min_items_to_split: int = MIN_ITEMS_TO_SPLIT) -> RankingSplit:
  """Strong-generalization split of Liang et al. 2018, section 4.3 (vae_cf code).

  Users are permuted with the seed; as in the reference notebook the last
  ``n_heldout`` users of the permutation are test users, the ``n_heldout``
  before them validation users and the rest training users (rows of each part
  follow the permutation order; `EvalSet.users`/`train_users` map back).  The
  item space is the items that occur in the training users' rows, in ascending
  original index; held-out users lose their other items.  A held-out user with
  ``n >= min_items_to_split`` remaining items gets ``int(p * n)`` random items
  held out, with ``p = 1 - fold_in_fraction`` rounded to 12 decimals (so 0.8
  gives exactly the reference's ``test_prop=0.2``; floor as the reference's
  ``int(test_prop * n_items_u)``), and the rest in fold_in.  Users with fewer
  items keep everything in fold_in and have an empty held_out row; users with
  no item left keep two empty rows (the reference drops them).  Values are kept
  as they are.

  Args:
    matrix: users x items csr (binary or not); every row is a user.
    n_heldout_users: users in each of validation and test; a float is a
      fraction of all users (floored), an int a count.  0 gives empty
      validation/test EvalSets of shape [0, n_items] (every user trains).
    seed: seed of the user permutation and of the fold-in/held-out draw.
    fold_in_fraction: share of a held-out user's items that are folded in.
    min_items_to_split: least number of items for a held-out user to be split.

  Returns:
    RankingSplit with protocol "strong".
  """
  m = _canonical(matrix)
  n_users = m.shape[0]
  n_h = _n_heldout(n_users, n_heldout_users)
  if n_h < 0 or 2 * n_h >= n_users:
    raise ValueError(f"{n_h} validation + {n_h} test users leave no training user "
                     f"out of {n_users}")
  heldout_prop = round(1.0 - fold_in_fraction, 12)
  if not 0.0 <= heldout_prop <= 1.0:
    raise ValueError(f"fold_in_fraction must be in [0, 1], got {fold_in_fraction}")
  rng = np.random.default_rng(seed)
  perm = rng.permutation(n_users)
  n_tr = n_users - 2 * n_h
  tr_users, vd_users, te_users = perm[:n_tr], perm[n_tr:n_tr + n_h], perm[n_tr + n_h:]

  train_full = m[tr_users]
  items = np.flatnonzero(np.bincount(train_full.indices, minlength=m.shape[1]) > 0)
  train = _canonical(train_full[:, items])

  def eval_set(users: np.ndarray) -> EvalSet:
    sub = _canonical(m[users][:, items])
    n_u = np.diff(sub.indptr)
    n_out = np.where(n_u >= min_items_to_split,
                     (heldout_prop * n_u).astype(np.int64), 0)
    rank = _random_rank_in_row(sub, rng)
    to_out = rank < np.repeat(n_out, n_u)
    fold_in, held_out = _split_entries(sub, to_out)
    return EvalSet(fold_in=fold_in, held_out=held_out, users=users.astype(np.int64))

  validation = eval_set(vd_users)
  test = eval_set(te_users)
  return RankingSplit(train=train, validation=validation, test=test,
                      items=items.astype(np.int64), train_users=tr_users.astype(np.int64),
                      protocol="strong")


def p_items_per_user(matrix: sp.spmatrix, p: int, seed: int = 0
                     ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
  """CDL/CVAE protocol: P random items of every user train, the rest test.

  A user with ``<= p`` items keeps all of them in train (empty test row).

  Args:
    matrix: users x items csr.
    p: number of training items per user.
    seed: seed of the draw.

  Returns:
    (train, test), both csr with the shape of `matrix`.
  """
  m = _canonical(matrix)
  rank = _random_rank_in_row(m, np.random.default_rng(seed))
  return _split_entries(m, rank >= p)


def row_fold(matrix: sp.spmatrix, folds: int, fold: int, rng: np.random.Generator
             ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
  """Fold `fold` (1-based) of `folds` of each row's entries, held out of `matrix`.

  A row's entries take folds (random rank in the row + a random row offset)
  mod `folds`, so they spread evenly over the folds; a row with a single
  entry keeps it (nothing is held out of it).

  Returns:
    (the rest, fold `fold`), both csr with the shape of `matrix`.
  """
  m = _canonical(matrix)
  rank = _random_rank_in_row(m, rng)
  rows = _row_ids(m)
  offset = rng.integers(0, folds, size=m.shape[0])
  held = ((rank + offset[rows]) % folds == fold - 1) & (np.diff(m.indptr)[rows] >= 2)
  return _split_entries(m, held)


def weak_generalization_split(train: sp.spmatrix, test: sp.spmatrix, *,
                              validation_fraction: float = 0.0, seed: int = 0,
                              protocol: str = "weak",
                              validation: sp.spmatrix | None = None) -> RankingSplit:
  """Wraps a (train, test) pair over the same users as a RankingSplit.

  Every user is a training user and an evaluation user: both EvalSets have
  ``fold_in = train``.  With ``validation`` given (a third matrix of the same
  shape, e.g. a dataset's own validation file) it is the validation held_out.
  Otherwise, with ``validation_fraction = 0`` validation is the test set itself
  (the same objects); with a fraction, ``int(validation_fraction * n)`` random
  items of each user's ``n`` test items (floor) move to the validation
  held_out and the rest stay in test, so validation and test never share an
  entry.

  Args:
    train: users x items csr.
    test: csr of the same shape.
    validation_fraction: share of each user's test items used for validation.
    seed: seed of the validation draw.
    protocol: name stored in the split.
    validation: optional csr of the same shape: the validation held-out items.

  Returns:
    RankingSplit over all users and items (identity `items`/`train_users`).
  """
  tr, te = _canonical(train), _canonical(test)
  if tr.shape != te.shape:
    raise ValueError(f"train shape {tr.shape} != test shape {te.shape}")
  users = np.arange(tr.shape[0], dtype=np.int64)
  if validation is not None:
    if validation_fraction > 0:
      raise ValueError("pass either validation or validation_fraction, not both")
    vd = _canonical(validation)
    if vd.shape != tr.shape:
      raise ValueError(f"train shape {tr.shape} != validation shape {vd.shape}")
    validation_set = EvalSet(fold_in=tr, held_out=vd, users=users)
    test_set = EvalSet(fold_in=tr, held_out=te, users=users)
  elif validation_fraction > 0:
    n_u = np.diff(te.indptr)
    n_val = (validation_fraction * n_u).astype(np.int64)
    rank = _random_rank_in_row(te, np.random.default_rng(seed))
    te, vd = _split_entries(te, rank < np.repeat(n_val, n_u))
    validation_set = EvalSet(fold_in=tr, held_out=vd, users=users)
    test_set = EvalSet(fold_in=tr, held_out=te, users=users)
  else:
    test_set = EvalSet(fold_in=tr, held_out=te, users=users)
    validation_set = test_set
  return RankingSplit(train=tr, validation=validation_set, test=test_set,
                      items=np.arange(tr.shape[1], dtype=np.int64), train_users=users,
                      protocol=protocol)


def tail_length(n: int, fraction: float = 0.025, min_tail: int = 3,
                max_tail: int = 500) -> int:
  """Test-tail length of a sequence of n events (see `temporal_tail`)."""
  t = int(np.floor(fraction * n + 0.5))
  t = min(max(t, min_tail), max_tail)
  return max(min(t, n - 1), 0)


def temporal_tail(sequences: list[np.ndarray], fraction: float = 0.025, min_tail: int = 3,
                  max_tail: int = 500) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Ko et al. 2016, section 3.1: the last events of each sequence are test.

  The tail holds ``round(fraction * n)`` events (round half up), clipped to
  ``[min_tail, max_tail]``, and then to ``n - 1`` so at least one event stays in
  train (a 1-event sequence has an empty tail; an empty one stays empty).
  E.g. 40 events -> 3, 1000 -> 25, 100000 -> 500, 3 -> 2.  The paper also takes
  the item set to be the union of the training sequences; restricting test
  items to it is left to the caller.

  Args:
    sequences: each user's items in time order.
    fraction: share of each sequence that is test.
    min_tail: least tail length (before keeping one training event).
    max_tail: largest tail length.

  Returns:
    (train_seqs, test_seqs): copies, ``train + test == sequence`` per user.
  """
  train, test = [], []
  for seq in sequences:
    seq = np.asarray(seq)
    cut = len(seq) - tail_length(len(seq), fraction, min_tail, max_tail)
    train.append(seq[:cut].copy())
    test.append(seq[cut:].copy())
  return train, test


def leave_k_out(inter: Interactions, k: int = 1, seed: int = 0, by_time: bool = True
                ) -> tuple[Interactions, Interactions]:
  """Holds out k events of every user; users with <= k events keep all in train.

  With ``by_time`` the held-out events are the user's last k in
  `Interactions.event_order` (timestamps, ties by file order); without
  timestamps the file order stands for time, as in `Interactions.sequences`
  (sequence files list events in time order).  With ``by_time=False`` they are
  k random events.  Events, not distinct items, are counted, so with repeat
  consumption a test item may also occur in train.

  Args:
    inter: event log.
    k: events held out per user.
    seed: seed of the random choice (unused when by_time).
    by_time: last k events (True) or random k (False).

  Returns:
    (train, test) event logs in the id space of `inter` (not compacted).
  """
  n = inter.n_events
  counts = np.bincount(inter.users, minlength=inter.n_users)
  if by_time:
    order = inter.event_order()
  else:
    keys = np.random.default_rng(seed).random(n)
    order = np.lexsort((keys, inter.users))
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  users_sorted = inter.users[order]
  pos = np.arange(n) - starts[users_sorted]  # position within the user's events
  from_end = counts[users_sorted] - pos  # 1 for the last event
  test_sorted = (from_end <= k) & (counts[users_sorted] > k)
  is_test = np.zeros(n, bool)
  is_test[order] = test_sorted
  return inter.select_events(~is_test), inter.select_events(is_test)
