"""The rating-prediction protocol: random held-out ratings, scored by RMSE/MAE.

AutoRec (Sedhain et al. 2015) and DeepRec (Kuchaiev & Ginsburg 2017) predict
explicit ratings.  Their protocol splits the *observed entries* of the rating
matrix at random: 90% train, 10% test (AutoRec: "a random 90/10 split of the
ratings", repeated 5 times); hyperparameters are picked on a part of the 90%.

Two data protocols are registered in `recjax.data.pipeline.PROTOCOLS`:

* ``"ratings"``       -- users as rows, items as columns (U-AutoRec, DeepRec);
* ``"ratings-items"`` -- items as rows, users as columns (I-AutoRec).

Both split the same entries for the same seed; only the orientation differs.

How the resolved `DataConfig` is used:

* ``heldout_users`` is the **test share of the ratings** (a fraction < 1, or a
  count >= 1 of ratings); its resolved default, 0.1, gives the 90/10 split.
  (Datasets whose registry spec sets a held-out *user count*, e.g. ML-20M's
  10,000, need ``--set heldout_users=0.1`` here.)
* ``split_seed`` seeds the split.
* ``min_user_count`` / ``min_item_count`` filter the event log first (one pass,
  `preprocess.filter_min_counts`).  The explicit-data default (users with >= 5
  ratings) keeps ML-100K/ML-1M whole: every user there has >= 20 ratings.
* ``binarize_threshold`` is **ignored**: ratings stay raw (the pipeline's
  explicit-data default binarizes at >= 4 for ranking, which would destroy the
  targets here).  ``fold_in_fraction`` is unused.
* The validation share, `VALIDATION_FRACTION` (5%) of the non-test ratings, has
  no DataConfig field; call `rating_split` directly for another value.

Every row keeps its index in the full id space (rows without training ratings
stay, as zero rows), so a held-out rating whose row or column has no training
data is still scored -- models predict a default rating there, as AutoRec does.
A rating of exactly 0 cannot be stored (0 means "unobserved" in the dense rows
models see) and is rejected.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from recjax.data import preprocess
from recjax.data.types import Dataset

VALIDATION_FRACTION = 0.05  # Share of the non-test ratings held out for model selection.


@dataclasses.dataclass(frozen=True)
class RatingEvalSet:
  """Rows scored by RMSE on their held-out ratings.

  Attributes:
    fold_in: csr [n_rows x n_columns], the training ratings of each scored row
      (what the model sees).
    held_out: csr [n_rows x n_columns], the held-out ratings to predict; its
      stored entries are the (row, column, rating) triples.
    rows: int64 [n_rows], the index of each scored row in the split's `train`.
    rating_range: (lowest, highest) rating of the training data; predictions
      are clipped to it before scoring.
  """

  fold_in: sp.csr_matrix
  held_out: sp.csr_matrix
  rows: np.ndarray
  rating_range: tuple[float, float]

  @property
  def n_users(self) -> int:
    """Scored rows (users or items, by orientation); the runner's name for it."""
    return self.held_out.shape[0]

  @property
  def n_ratings(self) -> int:
    return int(self.held_out.nnz)

  def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out (row in `train`, column, rating) triples, row-major."""
    coo = self.held_out.tocoo()
    return self.rows[coo.row], coo.col.astype(np.int64), coo.data


@dataclasses.dataclass(frozen=True)
class RatingSplit:
  """Training ratings plus validation and test ratings, in one orientation.

  Attributes:
    train: csr [n_rows x n_columns] of raw training ratings.
    validation: ratings for model selection.
    test: ratings for the reported metrics.
    orientation: "users" (rows are users) or "items" (rows are items).
    row_ids: int64 [n_rows], dense dataset index of each row's user/item.
    column_ids: int64 [n_columns], dense dataset index of each column.
    protocol: the protocol name.
  """

  train: sp.csr_matrix
  validation: RatingEvalSet
  test: RatingEvalSet
  orientation: str
  row_ids: np.ndarray
  column_ids: np.ndarray
  protocol: str

  @property
  def items(self) -> np.ndarray:
    """Dense dataset index of each item of the split (columns or rows, by orientation)."""
    return self.column_ids if self.orientation == "users" else self.row_ids


def _count(share: float, n: int, what: str) -> int:
  if share < 0:
    raise ValueError(f"ratings: {what} must be >= 0, got {share}")
  k = int(share) if share >= 1 else int(round(share * n))
  if k >= n:
    raise ValueError(f"ratings: {what}={share} holds out {k} of {n} ratings, leaving none to train")
  return k


def _eval_set(train: sp.csr_matrix, held: sp.csr_matrix, rating_range) -> RatingEvalSet:
  rows = np.flatnonzero(np.diff(held.indptr) > 0)
  return RatingEvalSet(fold_in=train[rows], held_out=held[rows], rows=rows.astype(np.int64),
                       rating_range=rating_range)


def rating_split(matrix: sp.spmatrix, test_fraction: float = 0.1,
                 validation_fraction: float = VALIDATION_FRACTION, seed: int = 98765,
                 orientation: str = "users", protocol: str = "ratings") -> RatingSplit:
  """Splits the observed entries of a rating matrix at random into train/validation/test.

  A permutation of the entries (from ``np.random.default_rng(seed)``) puts the
  first ``test_fraction`` of them in test, the next ``validation_fraction`` of
  the rest in validation and the remainder in train: the three parts are
  disjoint and together are every stored entry.

  Args:
    matrix: users x items ratings (duplicates summed; merge them before).
    test_fraction: share of the entries held out for test (< 1), or a count (>= 1).
    validation_fraction: share of the non-test entries for validation (< 1), or a count.
    seed: seeds the permutation.
    orientation: "users" (users as rows) or "items" (the transpose: items as rows).
    protocol: name recorded in the split.

  Returns:
    A `RatingSplit`; its eval sets hold the rows with at least one held-out
    rating, with their training ratings as fold-in.

  Raises:
    ValueError: an unknown orientation, a zero rating, or shares that leave no training data.
  """
  if orientation not in ("users", "items"):
    raise ValueError(f"ratings: orientation must be 'users' or 'items', got {orientation!r}")
  m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
  m.sum_duplicates()
  m.sort_indices()
  if m.nnz == 0:
    raise ValueError("ratings: the matrix has no ratings")
  if np.any(m.data == 0):
    raise ValueError("ratings: a rating of 0 is stored; 0 means 'unobserved' in the dense rows "
                     "models see, so shift the rating scale to exclude 0")
  coo = m.tocoo()
  n = m.nnz
  n_test = _count(test_fraction, n, "test share")
  n_val = _count(validation_fraction, n - n_test, "validation share")
  perm = np.random.default_rng(seed).permutation(n)
  part = np.empty(n, np.int8)  # 0 train, 1 validation, 2 test.
  part[perm[:n_test]] = 2
  part[perm[n_test:n_test + n_val]] = 1
  part[perm[n_test + n_val:]] = 0
  if orientation == "users":
    rows, cols, shape = coo.row, coo.col, m.shape
  else:
    rows, cols, shape = coo.col, coo.row, (m.shape[1], m.shape[0])

  def pick(p):
    sel = part == p
    out = sp.csr_matrix((coo.data[sel], (rows[sel], cols[sel])), shape=shape, dtype=np.float32)
    out.sort_indices()
    return out

  train, validation, test = pick(0), pick(1), pick(2)
  if train.nnz == 0:
    raise ValueError("ratings: no training ratings left")
  rating_range = (float(train.data.min()), float(train.data.max()))
  row_ids = np.arange(shape[0], dtype=np.int64)
  column_ids = np.arange(shape[1], dtype=np.int64)
  return RatingSplit(train=train, validation=_eval_set(train, validation, rating_range),
                     test=_eval_set(train, test, rating_range), orientation=orientation,
                     row_ids=row_ids, column_ids=column_ids, protocol=protocol)


def _from_dataset(dataset: Dataset, config, info: dict[str, Any], orientation: str,
                  protocol: str) -> RatingSplit:
  inter = dataset.interactions
  if dataset.kind != "explicit":
    raise ValueError(f"protocol {protocol!r} needs explicit ratings; dataset {dataset.name!r} "
                     f"is {dataset.kind!r}")
  if config.min_user_count or config.min_item_count:
    inter = preprocess.filter_min_counts(inter, min_user=config.min_user_count or 0,
                                         min_item=config.min_item_count or 0)
  matrix = inter.to_csr()
  split = rating_split(matrix, test_fraction=config.heldout_users,
                       validation_fraction=VALIDATION_FRACTION, seed=config.split_seed,
                       orientation=orientation, protocol=protocol)
  info["preprocessed"] = {"users": matrix.shape[0], "items": matrix.shape[1],
                          "ratings": int(matrix.nnz)}
  info["split"] = {"orientation": orientation, "rows": split.train.shape[0],
                   "columns": split.train.shape[1], "train_ratings": int(split.train.nnz),
                   "validation_ratings": split.validation.n_ratings,
                   "test_ratings": split.test.n_ratings,
                   "validation_fraction": VALIDATION_FRACTION,
                   "rating_range": list(split.validation.rating_range),
                   "binarize_threshold": "ignored (raw ratings)"}
  s = info["split"]
  info["summary"] = (f"{protocol}: {s['rows']} {orientation} x {s['columns']} columns, "
                     f"{s['train_ratings']} train / {s['validation_ratings']} validation / "
                     f"{s['test_ratings']} test ratings in [{s['rating_range'][0]:g}, "
                     f"{s['rating_range'][1]:g}]")
  return split


def user_rating_split(dataset: Dataset, config, info: dict[str, Any]) -> RatingSplit:
  """Protocol "ratings": users as rows (U-AutoRec, DeepRec); see the module docstring."""
  return _from_dataset(dataset, config, info, "users", "ratings")


def item_rating_split(dataset: Dataset, config, info: dict[str, Any]) -> RatingSplit:
  """Protocol "ratings-items": items as rows (I-AutoRec); see the module docstring."""
  return _from_dataset(dataset, config, info, "items", "ratings-items")
