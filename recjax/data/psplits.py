"""Freshly drawn "P items per user" splits: protocols "random-P1" ... "random-P10".

The protocol of CTR/CDL/CVAE/CRAE (Wang, Shi & Yeung 2016, §4.2: "P items
associated with each user are randomly selected to form the training set and
the rest is used as the test set"; P = 1..5 there, 1 and 10 in CDL/CVAE).  The
shipped "P1"/"P10" splits of citeulike are one such draw each; these
protocols draw a new one from ``DataConfig.split_seed``, so the paper's "repeat
the evaluation five times with different training sets" is five runs with
``split_seed`` = s1..s5.

What is split: the dataset's full users x items matrix, every user and every
item kept (no compaction, so columns stay the dataset's item ids and item side
information lines up with `split.items` = arange), binarized: explicit data
keeps entries with value >= ``binarize_threshold`` (if set) as 1, implicit
counts become 1.  ``min_user_count`` / ``min_item_count`` are *not* applied
(the protocol's eligibility rule below plays that role, and dropping items
would change the item space).

Users with <= P items: all their items go to training and their test row is
empty, so they are trained on but not evaluated (ranking evaluation skips
users with an empty held-out row).  This is what
`recjax.data.splits.p_items_per_user` does and what the published splits do
(a user needs at least one item to predict); it keeps the training matrix
the paper's "P items per user" for every evaluated user, and such users
still inform the item factors.  On citeulike-a every user has >= 10 items,
so for P <= 9 every user is evaluated (random-P1: 5,551 training entries, like
the shipped P1 split).

Validation is the test set itself (``weak_generalization_split`` with no
validation fraction), as for the shipped splits: configs should evaluate only
at the end (``eval_every = epochs``) and not select anything on it.

Cross-validation folds: "random-P<P>-cv<f>of<k>" (e.g. "random-P3-cv2of5")
draws the same training set as "random-P<P>" with the same ``split_seed``,
cuts each user's training clicks into k folds (a random rank within the user
plus a random per-user offset, mod k, so a user's clicks spread over
different folds and every fold gets about 1/k of them), and makes fold f the
held-out set: train = the other folds, validation = test = fold f.  The
random-P test clicks are left out entirely (never trained on, never scored),
so choosing a hyperparameter on these runs never reads the test set.  A user
with a single training click keeps it (no fold takes a user's last click:
fold f would leave them nothing to fold in), so at P = 1 there is no
validation click at all and the protocol refuses to run.  The CRAE paper
(§4.3) chose its hyperparameters by 5-fold cross-validation;
`experiments.cross_validate` runs such a grid and picks by fold mean.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from recjax.data import splits
from recjax.data.types import Dataset

MAX_P = 10
NAMES = tuple(f"random-P{p}" for p in range(1, MAX_P + 1))
_NAME_RE = re.compile(r"^random-P(\d+)$")
CV_RE = re.compile(r"^random-P(\d+)-cv(\d+)of(\d+)$")
CV_PATTERN = "random-P<P>-cv<f>of<k>"


def cv_name(p: int, fold: int, folds: int) -> str:
  """The protocol name of cross-validation fold `fold` (1-based) of `folds` at P = `p`."""
  return f"random-P{p}-cv{fold}of{folds}"


def cv_of(protocol: str) -> tuple[int, int, int] | None:
  """(P, fold, folds) of a "random-P<P>-cv<f>of<k>" name, None for any other name.

  Raises:
    ValueError: the name has that form but P, f or k is out of range.
  """
  m = CV_RE.match(str(protocol))
  if m is None:
    return None
  p, fold, folds = (int(g) for g in m.groups())
  if not 1 <= p <= MAX_P or not 2 <= folds <= 20 or not 1 <= fold <= folds:
    raise ValueError(f"protocol {protocol!r}: need 1 <= P <= {MAX_P}, 2 <= k <= 20 and "
                     f"1 <= f <= k in {CV_PATTERN}")
  return p, fold, folds


def p_of(protocol: str) -> int:
  """P of a protocol name "random-P<P>"; ValueError otherwise."""
  m = _NAME_RE.match(protocol)
  if m is None or not 1 <= int(m.group(1)) <= MAX_P:
    raise ValueError(f"not a random-P protocol: {protocol!r}; valid: {', '.join(NAMES)}")
  return int(m.group(1))


def binary_matrix(dataset: Dataset, binarize_threshold: float | None = None):
  """The dataset's users x items csr over all users and items, entries 1.0.

  With a threshold, only entries whose (merged) value is >= it are kept.
  """
  m = dataset.interactions.to_csr()
  if binarize_threshold is not None:
    m.data = (m.data >= binarize_threshold).astype(np.float32)
  else:
    m.data = (m.data != 0).astype(np.float32)
  m.eliminate_zeros()
  m.sort_indices()
  return m


def random_p_split(dataset: Dataset, config, info: dict[str, Any]) -> splits.RankingSplit:
  """The "random-P<P>" protocol (P from ``config.protocol``), seeded by ``config.split_seed``.

  Args:
    dataset: any dataset (all users and items are kept).
    config: a resolved `recjax.data.pipeline.DataConfig`.
    info: filled with the counts of the split.

  Returns:
    A RankingSplit whose train holds min(P, n_u) random items of each user u,
    test (= validation) the others.
  """
  p = p_of(config.protocol)
  matrix = binary_matrix(dataset, config.binarize_threshold)
  train, test = splits.p_items_per_user(matrix, p, seed=config.split_seed)
  split = splits.weak_generalization_split(train, test, protocol=config.protocol)
  n_u = np.diff(matrix.indptr)
  evaluated = int(np.sum(n_u > p))
  info["preprocessed"] = {"users": matrix.shape[0], "items": matrix.shape[1],
                          "interactions": int(matrix.nnz)}
  info["split"] = {"p": p, "seed": config.split_seed, "train_users": train.shape[0],
                   "items": train.shape[1], "train_interactions": int(train.nnz),
                   "test_interactions": int(test.nnz), "evaluated_users": evaluated,
                   "train_only_users": int(np.sum((n_u > 0) & (n_u <= p)))}
  info["summary"] = (f"protocol {config.protocol} (seed {config.split_seed}): {train.shape[0]} "
                     f"users ({evaluated} with > {p} items evaluated), {train.shape[1]} items, "
                     f"{train.nnz} training / {test.nnz} test interactions")
  return split


def random_p_cv_split(dataset: Dataset, config, info: dict[str, Any]) -> splits.RankingSplit:
  """The "random-P<P>-cv<f>of<k>" protocol: fold f of k of random-P<P>'s training clicks.

  Args:
    dataset: any dataset (all users and items are kept).
    config: a resolved `recjax.data.pipeline.DataConfig` (``split_seed`` draws the
      random-P training set, then, with a second stream, the folds).
    info: filled with the counts of the split.

  Returns:
    A RankingSplit whose train is random-P<P>'s training set without fold f, and
    whose validation = test is fold f.

  Raises:
    ValueError: no user has two training clicks (P = 1), so fold f is empty.
  """
  p, fold, folds = cv_of(config.protocol)
  matrix = binary_matrix(dataset, config.binarize_threshold)
  train, test = splits.p_items_per_user(matrix, p, seed=config.split_seed)
  rng = np.random.default_rng([config.split_seed, 2718])  # Independent of the P draw.
  fit, validation = splits.row_fold(train, folds, fold, rng)
  if not validation.nnz:
    raise ValueError(
        f"protocol {config.protocol}: no user has two training clicks, so fold {fold} holds "
        f"nothing (a user's only click is never held out: it would leave nothing to fold "
        f"in); cross-validation needs P >= 2")
  split = splits.weak_generalization_split(fit, validation, protocol=config.protocol)
  evaluated = int(np.sum(np.diff(validation.indptr) > 0))
  info["preprocessed"] = {"users": matrix.shape[0], "items": matrix.shape[1],
                          "interactions": int(matrix.nnz)}
  info["split"] = {"p": p, "seed": config.split_seed, "fold": fold, "folds": folds,
                   "train_users": fit.shape[0], "items": fit.shape[1],
                   "train_interactions": int(fit.nnz),
                   "validation_interactions": int(validation.nnz),
                   "evaluated_users": evaluated, "left_out_test_interactions": int(test.nnz)}
  info["summary"] = (f"protocol {config.protocol} (seed {config.split_seed}): fold {fold} of "
                     f"{folds} of random-P{p}'s {int(train.nnz)} training clicks held out "
                     f"({int(validation.nnz)} clicks of {evaluated} users: validation = test "
                     f"here), {int(fit.nnz)} trained on; random-P{p}'s {int(test.nnz)} test "
                     f"clicks left out")
  return split
