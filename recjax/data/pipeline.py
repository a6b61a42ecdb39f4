"""From a loaded `Dataset` to the split a model trains and is evaluated on.

file --reader--> Interactions --preprocess--> Interactions --to_csr--> csr
     --split--> RankingSplit (train rows; validation/test fold-in + held-out rows)

Defaults ("auto") follow Liang et al. 2018 where the registry records the
paper's preprocessing (ML-20M, Netflix, MSD).  Other explicit-rating data
(MovieLens 100K/1M, generic rating files) is binarized at rating >= 4 and keeps
users with >= 5 ratings, the paper's MovieLens rule; implicit data (clicks,
counts) is used as it is.  None means "none": no binarization, no min-count
filter, no held-out users.

Every conversion the data undergoes on the way (binarization, filters,
duplicate pairs merged, counts or ratings becoming 1.0, items dropped from the
item space) is listed once, one line each, in `info["conversions"]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from recjax.data import preprocess, splits
from recjax.data.loo import loo_split
from recjax.data import psplits
from recjax.data.psplits import random_p_split
from recjax.data.ratings import item_rating_split, user_rating_split
from recjax.data.sequences import tail_split
from recjax.data.temporal import strong_temporal_ordered_split, strong_temporal_split
from recjax.data.types import GIVEN_SPLIT, Dataset, Interactions

AUTO = "auto"
DEFAULT_HELDOUT_FRACTION = 0.1
EXPLICIT_BINARIZE_THRESHOLD = 4.0
EXPLICIT_MIN_USER_COUNT = 5
IMPLICIT_VALUES = ("clicks", "counts")
# Protocols that can keep counts as matrix values (besides predefined splits).
COUNT_PROTOCOLS = ("strong", "strong-temporal")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """How a dataset becomes a ranking split.

  "auto" means the dataset's default (filled in by `resolve`); None means none
  (no binarization, no filter, no held-out users).
  """

  # "auto": a user folder's own train/[valid/]test split ("given") if it has one, else
  # "strong" (Liang et al. §4.3); or "strong", a name in PROTOCOLS, or a predefined split
  # (e.g. "P1", "given").
  protocol: str = AUTO
  # Validation (= test) users: a count (>= 1) or a fraction (< 1); "auto": the registry's
  # count, else 10%; 0 or None: no held-out users (every user trains).
  heldout_users: float | str | None = AUTO
  # Keep events with value >= this, as 1.0; "auto": the registry's value, else 4 for
  # ratings and none for implicit data; None: no binarization.
  binarize_threshold: float | str | None = AUTO
  # Drop users with fewer distinct items (one pass); "auto": the registry's value, else 5
  # for ratings, none for implicit data and for predefined splits; None or 0: no filter.
  min_user_count: int | str | None = AUTO
  # Drop items with fewer distinct users (before users); "auto" as above (no default
  # filter but the registry's); None or 0: no filter.
  min_item_count: int | str | None = AUTO
  fold_in_fraction: float = 0.8  # Share of each held-out user's items given as input.
  split_seed: int = 98765  # Seeds the user permutation and the fold-in draw.
  # Implicit data's matrix values: "clicks" (every entry 1.0) or "counts" (the summed
  # counts stay the values of train and fold-in rows: protocols strong, strong-temporal
  # and predefined splits; an error with ratings).
  implicit_values: str = "clicks"


_DEFAULTED = ("heldout_users", "binarize_threshold", "min_user_count", "min_item_count")


def _spec_value(dataset: Dataset, field: str):
  from recjax.data import registry  # Local: the registry imports readers, not pipelines.
  try:
    spec = registry.dataset_spec(dataset.name)
  except (KeyError, ValueError):
    return None
  return getattr(spec, field, None)


def resolve(config: DataConfig, dataset: Dataset) -> DataConfig:
  """Replaces every "auto" by the dataset's default and checks the fields.

  Raises:
    ValueError naming the field: a string other than "auto" in a numeric
    field, an unknown implicit_values, or implicit_values="counts" with ratings
    data, a protocol that cannot keep counts, or a binarize threshold.
  """
  for field in _DEFAULTED:
    value = getattr(config, field)
    if isinstance(value, str) and value != AUTO:
      raise ValueError(f"DataConfig.{field} must be a number, None or {AUTO!r}; got {value!r}")
  if config.implicit_values not in IMPLICIT_VALUES:
    raise ValueError(f"DataConfig.implicit_values must be one of {', '.join(IMPLICIT_VALUES)}; "
                     f"got {config.implicit_values!r}")
  protocol = config.protocol
  if protocol == AUTO:
    protocol = GIVEN_SPLIT if GIVEN_SPLIT in dataset.predefined_splits else "strong"
  predefined = (protocol != "strong" and protocol_function(protocol) is None
                and protocol in dataset.predefined_splits)
  explicit = dataset.kind == "explicit"
  values = {}
  for field, explicit_default in (("binarize_threshold", EXPLICIT_BINARIZE_THRESHOLD),
                                  ("min_user_count", EXPLICIT_MIN_USER_COUNT),
                                  ("min_item_count", None),
                                  ("heldout_users", None)):
    value = getattr(config, field)
    if value == AUTO:
      value = _spec_value(dataset, field)
      if value is None and explicit and not (predefined and field != "binarize_threshold"):
        value = explicit_default
      if value is None and field == "heldout_users":
        value = DEFAULT_HELDOUT_FRACTION
    elif value is None and field == "heldout_users":
      value = 0
    values[field] = value
  if config.implicit_values == "counts":
    if explicit:
      raise ValueError(
          f"DataConfig.implicit_values='counts' needs counts, but dataset {dataset.name!r} "
          "holds ratings (kind 'explicit'); keep implicit_values='clicks', or load the file "
          "with values='counts' if its value column counts plays or clicks")
    if protocol not in COUNT_PROTOCOLS and not predefined:
      raise ValueError(
          f"DataConfig.implicit_values='counts' works with the protocols "
          f"{', '.join(COUNT_PROTOCOLS)} and predefined splits; got protocol {protocol!r}")
    if values["binarize_threshold"] is not None:
      raise ValueError(
          f"DataConfig.implicit_values='counts' keeps counts, but binarize_threshold="
          f"{values['binarize_threshold']:g} turns them into 1.0; set binarize_threshold=None")
  return dataclasses.replace(config, protocol=protocol, **values)


# Further protocols, each in its own module: name -> function(dataset, config,
# info) -> split, where `config` is already resolved and `info` (a dict) is
# filled with the counts worth logging.  The split has `train` (csr),
# `validation` and `test` (eval sets with `n_users`, evaluated by the protocol
# `recjax.eval.EVALUATORS` maps their class to), `items`.  A new protocol is one
# line here (and its function imported above).
PROTOCOLS: dict[str, Callable[..., Any]] = {
    "loo-sampled": loo_split,
    "ratings": user_rating_split,
    "ratings-items": item_rating_split,
    "strong-temporal": strong_temporal_split,
    "strong-temporal-ordered": strong_temporal_ordered_split,
    # P random training items per user, the rest test (CTR/CDL/CVAE/CRAE), seeded by split_seed.
    **{f"random-P{p}": random_p_split for p in range(1, 11)},
    # Ko et al.'s held-out tails of time-ordered sequences (with / without a validation tail).
    **{name: tail_split for name in ("sequence-tail", "sequence-tail-novalid")},
}


# Protocols whose parameters are in the name: pattern -> (parse: name -> params or None,
# function as in PROTOCOLS).  Fold f of k of random-P<P>'s training clicks, e.g. random-P3-cv2of5.
PROTOCOL_FAMILIES = {psplits.CV_PATTERN: (psplits.cv_of, psplits.random_p_cv_split)}


def protocol_function(name: str) -> Callable[..., Any] | None:
  """The split function of a protocol in `PROTOCOLS` or `PROTOCOL_FAMILIES`; None otherwise."""
  families = (f for parse, f in PROTOCOL_FAMILIES.values() if parse(name) is not None)
  return PROTOCOLS.get(name) or next(families, None)


# ---------------------------------------------------------------------------
# Conversion lines.
# ---------------------------------------------------------------------------


def _merged(inter: Interactions) -> tuple[sp.csr_matrix, int]:
  """The csr of an event log and how many repeated events it merged."""
  m = inter.to_csr()
  return m, inter.n_events - int(m.nnz)


def _duplicates_line(inter: Interactions, repeated: int, binary: bool, where: str = "") -> str:
  """`repeated` = events beyond the first of their (user, item) pair."""
  events = "repeated event" + ("" if repeated == 1 else "s")
  if inter.duplicate_rule == "sum" and not binary:
    return f"duplicate (user, item) pairs summed: {repeated:,} {events}{where}"
  if binary:
    return (f"duplicate (user, item) pairs merged: {repeated:,} {events}{where} (a pair "
            "counts once)")
  ratings = "repeated rating" + ("" if repeated == 1 else "s")
  return (f"duplicate (user, item) pairs: {repeated:,} {ratings}{where}, the latest "
          "rating of each pair kept")


def _values_line(dataset: Dataset, config: DataConfig, has_values: bool, n_pairs: int,
                 counts_ok: bool) -> str | None:
  """What became of the matrix values (counts or unbinarized ratings -> 1.0), if anything."""
  if not has_values:
    return None
  if dataset.kind == "explicit":
    if config.binarize_threshold is not None:
      return None
    return (f"ratings became clicks (1.0): all {n_pairs:,} rated (user, item) pairs are "
            "positives, whatever the rating (binarize_threshold=None)")
  if config.binarize_threshold is not None:
    return None  # The binarization line says it.
  if config.implicit_values == "counts":
    return "counts kept as the values of train and fold-in rows (implicit_values=counts)"
  hint = ("; --set implicit_values=counts keeps them" if counts_ok else
          f" (protocol {config.protocol} uses 1.0 entries)")
  return f"counts became clicks (1.0){hint}"


def _emptied(name: str, what: str) -> ValueError:
  return ValueError(f"{name}: {what}")


# ---------------------------------------------------------------------------
# The split.
# ---------------------------------------------------------------------------


def ranking_split(dataset: Dataset, config: DataConfig) -> tuple[splits.RankingSplit, dict[str, Any]]:
  """Preprocesses and splits `dataset` for a ranking experiment.

  Returns:
    (split, info) where info records the resolved config, the counts at each
    stage, for config.json and the progress log, and `info["conversions"]`:
    one line per conversion the data underwent (binarization, filters,
    duplicates merged, values made 1.0, items dropped from the item space).

  Raises:
    ValueError naming the dataset and the filter when a step leaves no data.
  """
  inter = dataset.interactions
  if inter.n_events == 0:
    raise ValueError(f"dataset {dataset.name!r} has no events (an empty or header-only file?)")
  config = resolve(config, dataset)
  info: dict[str, Any] = {"resolved": dataclasses.asdict(config),
                          "raw": {"users": inter.n_users, "items": inter.n_items,
                                  "events": inter.n_events}}
  with preprocess.recording() as conversions:
    function = protocol_function(config.protocol)
    if function is not None:
      split = function(dataset, config, info)
      split = _after_protocol(dataset, config, split, conversions)
      _check_evaluable(dataset, config, split)
      info.setdefault("summary", f"protocol {config.protocol}: {split.train.shape[0]} train "
                                 f"rows, {split.train.shape[1]} columns, "
                                 f"{split.train.nnz} training entries")
      info["conversions"] = list(conversions)
      return split, info
    if config.protocol == "strong":
      split = _strong(dataset, config, info, conversions)
    elif config.protocol in dataset.predefined_splits:
      split = _predefined(dataset, config, conversions)
    else:
      valid = ["strong", *sorted(PROTOCOLS), *PROTOCOL_FAMILIES,
               *sorted(dataset.predefined_splits)]
      raise ValueError(f"dataset {dataset.name!r} has no protocol {config.protocol!r}; "
                       f"valid: {valid}")
  _check_evaluable(dataset, config, split)
  info["conversions"] = list(conversions)
  info["split"] = {"train_users": split.train.shape[0], "items": split.train.shape[1],
                   "train_interactions": int(split.train.nnz),
                   "validation_users": split.validation.fold_in.shape[0],
                   "test_users": split.test.fold_in.shape[0]}
  s = info["split"]
  info["summary"] = (f"{s['train_users']} train / {s['validation_users']} validation / "
                     f"{s['test_users']} test users, {s['items']} items, "
                     f"{s['train_interactions']} training interactions")
  return split, info


def _filters(inter: Interactions, config: DataConfig) -> Interactions:
  """The "strong" preprocessing: binarization, then the min-count filters (one pass)."""
  raw = inter
  if config.binarize_threshold is not None:
    inter = preprocess.binarize(inter, config.binarize_threshold)
  if config.min_user_count or config.min_item_count:
    try:
      inter = preprocess.filter_min_counts(inter, min_user=config.min_user_count or 0,
                                           min_item=config.min_item_count or 0)
    except ValueError as e:
      if inter.n_events == raw.n_events or "drops every" not in str(e):
        raise
      raise ValueError(
          f"{e} (counted after binarize_threshold={config.binarize_threshold:g}, which keeps "
          f"{inter.n_events:,} of {raw.n_events:,} events)") from None
  return inter


def _strong(dataset: Dataset, config: DataConfig, info: dict[str, Any],
            conversions: list[str]) -> splits.RankingSplit:
  inter = _filters(dataset.interactions, config)
  matrix, repeated = _merged(inter)
  binary = config.binarize_threshold is not None
  if repeated:
    conversions.append(_duplicates_line(inter, repeated, binary))
  line = _values_line(dataset, config, bool(np.any(matrix.data != 1)), int(matrix.nnz), True)
  if line:
    conversions.append(line)
  if config.implicit_values != "counts":
    matrix.data = np.ones_like(matrix.data)  # Counts/ratings become clicks.
  info["preprocessed"] = {"users": matrix.shape[0], "items": matrix.shape[1],
                          "interactions": int(matrix.nnz)}
  heldout = config.heldout_users
  if heldout >= 1:
    heldout = int(heldout)
  n_users = matrix.shape[0]
  n_h = splits._n_heldout(n_users, heldout)  # pylint: disable=protected-access
  if n_h > 0 and 2 * n_h >= n_users:
    kept = " left after preprocessing" if n_users < dataset.interactions.n_users else ""
    raise ValueError(
        f"{dataset.name}: heldout_users={config.heldout_users:g} asks for {n_h:,} validation + "
        f"{n_h:,} test users out of the {n_users:,} users{kept}, which leaves no training "
        "user; lower heldout_users, or set it to 0 to train on every user without evaluation")
  split = splits.strong_generalization(matrix, n_heldout_users=heldout, seed=config.split_seed,
                                       fold_in_fraction=config.fold_in_fraction)
  conversions.extend(_strong_lines(matrix, split))
  return _to_dataset_ids(split, inter, dataset.interactions)


def _dataset_index(sub_ids: np.ndarray, all_ids: np.ndarray) -> np.ndarray | None:
  """Dataset-dense index of each raw id in sub_ids (None: the same id space)."""
  if len(sub_ids) == len(all_ids):
    return None  # Preprocessing compacts, keeping order: equal length means identical.
  sorter = np.argsort(all_ids, kind="stable")
  return sorter[np.searchsorted(all_ids, sub_ids, sorter=sorter)].astype(np.int64)


def _to_dataset_ids(split: splits.RankingSplit, pre: Interactions,
                    full: Interactions) -> splits.RankingSplit:
  """`items`, `train_users` and eval `users` as indices of the dataset's id space.

  The split is made on the preprocessed (compacted) log; the runner and the
  model export map these indices through the dataset's `user_ids`/`item_ids`.
  """
  umap = _dataset_index(pre.user_ids, full.user_ids)
  imap = _dataset_index(pre.item_ids, full.item_ids)
  if umap is None and imap is None:
    return split
  u = (lambda a: a) if umap is None else (lambda a: umap[a])
  i = (lambda a: a) if imap is None else (lambda a: imap[a])
  return dataclasses.replace(
      split, items=i(split.items), train_users=u(split.train_users),
      validation=dataclasses.replace(split.validation, users=u(split.validation.users)),
      test=dataclasses.replace(split.test, users=u(split.test.users)))


def _check_evaluable(dataset: Dataset, config: DataConfig, split) -> None:
  """Raises when there are held-out users but not one held-out entry to score.

  A split without held-out users (heldout_users=0, or too few users for one)
  passes: the runner trains on every user and says there is no evaluation.  A
  split whose held-out users all lack held-out entries would train and report
  metrics of nobody (NaN); it stops here with the reason instead.
  """
  sets = [e for e in (getattr(split, "validation", None), getattr(split, "test", None))
          if e is not None]
  if not sets or not sum(e.n_users for e in sets) or any(e.held_out.nnz for e in sets):
    return
  nv, nt = (e.n_users for e in sets) if len(sets) == 2 else (sets[0].n_users, 0)
  users = f"its {nv:,} validation and {nt:,} test users"
  if config.protocol.startswith("strong"):
    most = max(int(np.diff(e.fold_in.indptr).max()) if e.n_users else 0 for e in sets)
    floor = splits.MIN_ITEMS_TO_SPLIT
    raise ValueError(
        f"{dataset.name}: nothing to evaluate: none of {users} has a held-out item (a held-out "
        f"user needs >= {floor} items to hold some out; the most any of them has is {most}); "
        f"keep only users with enough items (--set min_user_count={floor}), or set "
        "heldout_users=0 to train on every user without evaluation")
  raise ValueError(
      f"{dataset.name}: nothing to evaluate: protocol {config.protocol} holds out nothing of "
      f"{users} (each has too few items to hold one out); use data with more items per user, "
      "a min_user_count filter, or another protocol")


def _strong_lines(matrix: sp.csr_matrix, split) -> list[str]:
  """Items dropped from the item space and held-out users not scored, by strong generalization."""
  out = []
  parts = (split.train, split.validation.fold_in, split.validation.held_out,
           split.test.fold_in, split.test.held_out)
  n_gone = matrix.shape[1] - split.train.shape[1]
  if n_gone:
    lost = int(matrix.nnz) - sum(int(m.nnz) for m in parts)
    out.append(f"items no training user has are dropped from the item space: {n_gone:,} items "
               f"({lost:,} entries of validation/test users)")
  unscored = [int(np.sum(np.diff(e.held_out.indptr) == 0)) for e in (split.validation, split.test)]
  if any(unscored):
    out.append(f"held-out users with too few items to split are folded in whole and not "
               f"scored: {unscored[0]:,} of {split.validation.n_users:,} validation, "
               f"{unscored[1]:,} of {split.test.n_users:,} test users")
  return out


def _predefined(dataset: Dataset, config: DataConfig,
                conversions: list[str]) -> splits.RankingSplit:
  """A split shipped with the data: (train, test[, validation]) event logs, used as given."""
  parts = dataset.predefined_splits[config.protocol]
  train_i, test_i = parts[0], parts[1]
  valid_i = parts[2] if len(parts) > 2 else None
  logs = [("train", train_i), ("test", test_i)] + ([("validation", valid_i)] if valid_i else [])
  for field in ("min_user_count", "min_item_count"):
    if getattr(config, field):
      conversions.append(f"{field}={getattr(config, field)} not applied: the predefined split "
                         f"{config.protocol!r} is used as it is")
  t = config.binarize_threshold
  mats, repeated, kept = {}, {}, {}
  for role, log in logs:
    m, repeated[role] = _merged(log)
    if t is not None:
      kept[role] = (int(np.sum(m.data >= t)), int(m.nnz))
      m.data = (m.data >= t).astype(np.float32)
      m.eliminate_zeros()
      if kept[role][1] and not m.nnz:
        raise _emptied(log.name or dataset.name,
                       f"binarize_threshold={t:g} drops every pair of the {role} data: none of "
                       f"its {kept[role][1]:,} (user, item) pairs has a value >= {t:g}; lower "
                       "binarize_threshold, or set it to None")
    mats[role] = m
  what = "ratings" if dataset.kind == "explicit" else "values"
  if t is not None:
    a = sum(k for k, _ in kept.values())
    b = sum(n for _, n in kept.values())
    detail = ", ".join(f"{role} {k:,} of {n:,}" for role, (k, n) in kept.items())
    conversions.append(f"{what} binarized: {a:,} of {b:,} (user, item) pairs have "
                       f"{what[:-1]} >= {t:g} and become 1.0; the rest are dropped ({detail})")
  if any(repeated.values()):
    where = " (" + ", ".join(f"{role} {n:,}" for role, n in repeated.items() if n) + ")"
    conversions.append(_duplicates_line(train_i, sum(repeated.values()), t is not None, where))
  has_values = any(bool(np.any(m.data != 1)) for m in mats.values())
  line = _values_line(dataset, config, has_values, sum(int(m.nnz) for m in mats.values()), True)
  if line:
    conversions.append(line)
  if config.implicit_values != "counts":
    for m in mats.values():
      m.data = np.ones_like(m.data)
  train, test = mats["train"], mats["test"]
  overlap = int(train.multiply(test).nnz)
  if overlap:
    conversions.append(f"test (user, item) pairs that are also in train: {overlap:,}; ranking "
                       "excludes each user's train items, so they cannot be hit")
  protocol = "given" if config.protocol == GIVEN_SPLIT else "weak"
  return splits.weak_generalization_split(train, test, validation=mats.get("validation"),
                                          protocol=protocol)


def _after_protocol(dataset: Dataset, config: DataConfig, split, conversions: list[str]):
  """Conversion lines a registered protocol does not record itself; counts for strong-temporal."""
  protocol = config.protocol
  if protocol in ("ratings", "ratings-items"):
    return split  # Raw ratings are the targets.
  if protocol.startswith("sequence-tail"):
    return split  # Events stay events (repeats included); tail_split records its own notes.
  inter = dataset.interactions
  raw, repeated = _merged(inter)
  if repeated and protocol != "loo-sampled":  # Leave-one-out works on events, not pairs.
    conversions.append(_duplicates_line(inter, repeated, False))
  has_values = bool(np.any(raw.data != 1))
  t = config.binarize_threshold
  if protocol.startswith("random-P") and t is not None:  # psplits thresholds the matrix.
    kept = int(np.sum(raw.data >= t))
    what = "ratings" if dataset.kind == "explicit" else "values"
    conversions.append(f"{what} binarized: {kept:,} of {raw.nnz:,} (user, item) pairs have "
                       f"{what[:-1]} >= {t:g} and become 1.0; the rest are dropped")
  if protocol == "strong-temporal-ordered" and has_values and t is None:
    conversions.append(f"{'ratings' if dataset.kind == 'explicit' else 'counts'} replaced by "
                       "1-based time ranks (protocol strong-temporal-ordered)")
  else:
    line = _values_line(dataset, config, has_values, int(raw.nnz), protocol in COUNT_PROTOCOLS)
    if line:
      conversions.append(line)
  if protocol.startswith("strong-temporal"):
    # The temporal split indexes rows and columns in its own preprocessed log: its
    # preprocessing ("strong"'s, step for step) is redone, unrecorded, for that id space.
    with preprocess.recording(enabled=False):
      pre = _filters(inter, config)
    if protocol == "strong-temporal" and config.implicit_values == "counts":
      split = _with_counts(pre.to_csr(), split)
    split = _to_dataset_ids(split, pre, inter)
  return split


def _with_counts(counts: sp.csr_matrix, split) -> splits.RankingSplit:
  """The split with `counts` (same id space) as the values of train and fold-in rows."""

  def valued(pattern: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    sub = counts[rows][:, split.items]
    out = sp.csr_matrix(sub.multiply(pattern.astype(bool)), dtype=np.float32)
    out.sort_indices()
    return out

  def eval_set(e):
    return dataclasses.replace(e, fold_in=valued(e.fold_in, e.users))

  return dataclasses.replace(split, train=valued(split.train, split.train_users),
                             validation=eval_set(split.validation), test=eval_set(split.test))
