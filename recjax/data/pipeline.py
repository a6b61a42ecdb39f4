"""From a loaded `Dataset` to the split a model trains and is evaluated on.

file --reader--> Interactions --preprocess--> Interactions --to_csr--> csr
     --split--> RankingSplit (train rows; validation/test fold-in + held-out rows)

Defaults follow Liang et al. 2018 where the registry records the paper's
preprocessing (ML-20M, Netflix, MSD).  Other explicit-rating data (MovieLens
100K/1M, generic rating files) is binarized at rating >= 4 and keeps users with
>= 5 ratings, the paper's MovieLens rule; implicit data is used as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from recjax.data import preprocess, splits
from recjax.data.types import Dataset

DEFAULT_HELDOUT_FRACTION = 0.1
EXPLICIT_BINARIZE_THRESHOLD = 4.0
EXPLICIT_MIN_USER_COUNT = 5


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """How a dataset becomes a ranking split; None means the dataset's default."""

  protocol: str = "strong"  # "strong" (Liang et al. §4.3), a name in PROTOCOLS, or a predefined split, e.g. "P1".
  heldout_users: float | None = None  # Validation (= test) users: a count (>= 1) or a fraction (< 1).
  binarize_threshold: float | None = None  # Keep events with value >= this, as 1.0.
  min_user_count: int | None = None  # Drop users with fewer distinct items (one pass).
  min_item_count: int | None = None  # Drop items with fewer distinct users (after users).
  fold_in_fraction: float = 0.8  # Share of each held-out user's items given as input.
  split_seed: int = 98765  # Seeds the user permutation and the fold-in draw.


def _spec_value(dataset: Dataset, field: str):
  from recjax.data import registry  # Local: the registry imports readers, not pipelines.
  try:
    spec = registry.dataset_spec(dataset.name)
  except (KeyError, ValueError):
    return None
  return getattr(spec, field, None)


def resolve(config: DataConfig, dataset: Dataset) -> DataConfig:
  """Fills the None fields from the dataset's registry spec and kind."""
  explicit = dataset.kind == "explicit"
  values = {}
  for field, explicit_default in (("binarize_threshold", EXPLICIT_BINARIZE_THRESHOLD),
                                  ("min_user_count", EXPLICIT_MIN_USER_COUNT),
                                  ("min_item_count", None),
                                  ("heldout_users", None)):
    value = getattr(config, field)
    if value is None:
      value = _spec_value(dataset, field)
    if value is None and explicit:
      value = explicit_default
    values[field] = value
  if values["heldout_users"] is None:
    values["heldout_users"] = DEFAULT_HELDOUT_FRACTION
  return dataclasses.replace(config, **values)


# Further protocols, each in its own module: name -> "module:function" with
# function(dataset, config, info) -> split, where `config` is already resolved
# and `info` (a dict) is filled with the counts worth logging.  The split has
# `train` (csr), `validation` and `test` (eval sets with `n_users`, evaluated by
# the protocol `recjax.eval.EVALUATORS` names for their class), `items`.
PROTOCOLS: dict[str, str] = {
    "loo-sampled": "recjax.data.loo:loo_split",
    "ratings": "recjax.data.ratings:user_rating_split",
    "ratings-items": "recjax.data.ratings:item_rating_split",
    "strong-temporal": "recjax.data.temporal:strong_temporal_split",
    "strong-temporal-ordered": "recjax.data.temporal:strong_temporal_ordered_split",
    # P random training items per user, the rest test (CTR/CDL/CVAE/CRAE), seeded by split_seed.
    **{f"random-P{p}": "recjax.data.psplits:random_p_split" for p in range(1, 11)},
}


def _protocol_fn(name: str):
  import importlib  # pylint: disable=import-outside-toplevel
  module, fn = PROTOCOLS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def ranking_split(dataset: Dataset, config: DataConfig) -> tuple[splits.RankingSplit, dict[str, Any]]:
  """Preprocesses and splits `dataset` for a ranking experiment.

  Returns:
    (split, info) where info records the resolved config and the counts at
    each stage, for config.json and the progress log.
  """
  config = resolve(config, dataset)
  inter = dataset.interactions
  info: dict[str, Any] = {"resolved": dataclasses.asdict(config),
                          "raw": {"users": inter.n_users, "items": inter.n_items,
                                  "events": inter.n_events}}
  if config.protocol in PROTOCOLS:
    split = _protocol_fn(config.protocol)(dataset, config, info)
    info.setdefault("summary", f"protocol {config.protocol}: {split.train.shape[0]} train rows, "
                               f"{split.train.shape[1]} columns, {split.train.nnz} training entries")
    return split, info
  if config.protocol == "strong":
    if config.binarize_threshold is not None:
      inter = preprocess.binarize(inter, config.binarize_threshold)
    if config.min_user_count or config.min_item_count:
      inter = preprocess.filter_min_counts(inter, min_user=config.min_user_count or 0,
                                           min_item=config.min_item_count or 0)
    matrix = inter.to_csr()
    matrix.data = np.ones_like(matrix.data)  # Counts/ratings become clicks.
    info["preprocessed"] = {"users": matrix.shape[0], "items": matrix.shape[1],
                            "interactions": int(matrix.nnz)}
    heldout = config.heldout_users
    if heldout >= 1:
      heldout = int(heldout)
    split = splits.strong_generalization(matrix, n_heldout_users=heldout, seed=config.split_seed,
                                         fold_in_fraction=config.fold_in_fraction)
  elif config.protocol in dataset.predefined_splits:
    train_i, test_i = dataset.predefined_splits[config.protocol]
    train, test = train_i.to_csr(), test_i.to_csr()
    train.data = np.ones_like(train.data)
    test.data = np.ones_like(test.data)
    split = splits.weak_generalization_split(train, test)
  else:
    valid = ["strong", *sorted(PROTOCOLS), *sorted(dataset.predefined_splits)]
    raise ValueError(f"dataset {dataset.name!r} has no protocol {config.protocol!r}; "
                     f"valid: {valid}")
  info["split"] = {"train_users": split.train.shape[0], "items": split.train.shape[1],
                   "train_interactions": int(split.train.nnz),
                   "validation_users": split.validation.fold_in.shape[0],
                   "test_users": split.test.fold_in.shape[0]}
  s = info["split"]
  info["summary"] = (f"{s['train_users']} train / {s['validation_users']} validation / "
                     f"{s['test_users']} test users, {s['items']} items, "
                     f"{s['train_interactions']} training interactions")
  return split, info
