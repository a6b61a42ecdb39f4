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
