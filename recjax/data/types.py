"""Host-side containers shared by readers, splits and the rest of recjax.

Everything here is numpy/scipy: `recjax.data` never imports jax.

The interchange format is an *event log* (`Interactions`) that keeps every
parsed event in file order, plus `to_csr()` which turns it into the
``scipy.sparse.csr_matrix`` (users x items) that models consume.  Keeping the
log lets sequence models see repeat events and time order, while the matrix
view merges duplicate (user, item) pairs by the rule stored in
``duplicate_rule``:

* ``"last"`` -- explicit ratings: the value of the latest event wins (latest by
  timestamp when there are timestamps, ties and timestamp-less data by file
  order).
* ``"sum"``  -- implicit feedback and counts (plays, check-ins, clicks): values
  of duplicate events are added, so a matrix entry is an interaction count.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import scipy.sparse as sp

DuplicateRule = Literal["last", "sum"]
GIVEN_SPLIT = "given"  # Dataset.predefined_splits key of a user folder's train/[valid/]test files.


class DataFormatError(ValueError):
  """A data file does not have the expected format.

  The message always names the file, the 1-based line number (when the problem
  is on one line) and what was expected there.
  """

  def __init__(self, path, line: int | None, message: str):
    self.path = str(path)
    self.line = line
    self.message = message  # Without the "path:line: " prefix.
    where = f"{self.path}:{line}" if line is not None else self.path
    super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Interactions:
  """A log of (user, item, value[, timestamp]) events with dense 0-based ids.

  Attributes:
    users: int64 [n] dense user index of each event, in file order.
    items: int64 [n] dense item index of each event.
    values: float32 [n] rating, count or 1.0 for implicit events.
    timestamps: int64 [n] or None.
    user_ids: [n_users] raw id (as read from the file) of each dense user index.
    item_ids: [n_items] raw id of each dense item index.
    duplicate_rule: how `to_csr` merges repeated (user, item) pairs.
    name: where the data came from (dataset name or path), for messages.
  """

  users: np.ndarray
  items: np.ndarray
  values: np.ndarray
  timestamps: np.ndarray | None
  user_ids: np.ndarray
  item_ids: np.ndarray
  duplicate_rule: DuplicateRule = "sum"
  name: str = ""

  def __post_init__(self):
    n = len(self.users)
    if len(self.items) != n or len(self.values) != n:
      raise ValueError(
          f"{self.name}: users/items/values must have equal length, got "
          f"{len(self.users)}/{len(self.items)}/{len(self.values)}")
    if self.timestamps is not None and len(self.timestamps) != n:
      raise ValueError(f"{self.name}: timestamps length {len(self.timestamps)} != {n}")
    if self.duplicate_rule not in ("last", "sum"):
      raise ValueError(f"duplicate_rule must be 'last' or 'sum', got {self.duplicate_rule!r}")
    if n:
      if self.users.min() < 0 or self.users.max() >= len(self.user_ids):
        raise ValueError(f"{self.name}: user index out of range [0, {len(self.user_ids)})")
      if self.items.min() < 0 or self.items.max() >= len(self.item_ids):
        raise ValueError(f"{self.name}: item index out of range [0, {len(self.item_ids)})")

  @property
  def n_users(self) -> int:
    return len(self.user_ids)

  @property
  def n_items(self) -> int:
    return len(self.item_ids)

  @property
  def n_events(self) -> int:
    return len(self.users)

  @property
  def shape(self) -> tuple[int, int]:
    return (self.n_users, self.n_items)

  def event_order(self) -> np.ndarray:
    """Indices of the events sorted by (user, time), stable in file order."""
    if self.timestamps is None:
      return np.argsort(self.users, kind="stable")
    return np.lexsort((np.arange(self.n_events), self.timestamps, self.users))

  def to_csr(self, dtype=np.float32) -> sp.csr_matrix:
    """The users x items matrix, duplicates merged by `duplicate_rule`."""
    shape = self.shape
    if self.duplicate_rule == "sum":
      m = sp.coo_matrix((self.values.astype(dtype), (self.users, self.items)), shape=shape)
      m = m.tocsr()
      m.sum_duplicates()
      return m
    # "last": keep the value of the latest event of each (user, item) pair.
    order = self.event_order()
    u, i, v = self.users[order], self.items[order], self.values[order]
    key = u.astype(np.int64) * shape[1] + i
    # Within one user the order is by time, so the last occurrence of a key is the latest.
    _, last_from_end = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - last_from_end
    m = sp.csr_matrix((v[keep].astype(dtype), (u[keep], i[keep])), shape=shape)
    m.sort_indices()
    return m

  def sequences(self) -> list[np.ndarray]:
    """Each user's item indices in time order (file order for ties/no timestamps)."""
    order = self.event_order()
    items = self.items[order]
    counts = np.bincount(self.users, minlength=self.n_users)
    return np.split(items, np.cumsum(counts)[:-1])

  def select_events(self, mask: np.ndarray) -> "Interactions":
    """The same id space, only the events where `mask` is true."""
    ts = None if self.timestamps is None else self.timestamps[mask]
    return dataclasses.replace(
        self, users=self.users[mask], items=self.items[mask], values=self.values[mask],
        timestamps=ts)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A named dataset: its interactions plus whatever side information it carries.

  Attributes:
    name: registry name or the path it was read from.
    interactions: the event log (all of it; splits are made later).
    item_content: optional [n_items x vocab] csr of word counts (e.g. mult.dat).
    vocabulary: optional list of words indexing item_content's columns.
    item_text: optional list of raw item texts (e.g. titles), in item order.
    predefined_splits: named (train, test) or (train, test, validation)
      tuples shipped with the data, e.g. {"P1": (train, test), "P10": (...)}
      for the CDL/CVAE splits, or {"given": ...} for a user's folder of
      train/[valid/]test files; all share the id space of `interactions`.
    kind: "explicit" (ratings), "implicit" (clicks/counts) or "sequence"
      (time-ordered events, no ratings).
    notes: one line per thing the reader decided for the user (columns mapped
      by a header, columns ignored, ISO timestamps converted, a count column
      detected, a given split used), for the run's output.
  """

  name: str
  interactions: Interactions
  item_content: sp.csr_matrix | None = None
  vocabulary: list[str] | None = None
  item_text: list[str] | None = None
  predefined_splits: dict[str, tuple[Interactions, ...]] = dataclasses.field(
      default_factory=dict)
  kind: Literal["explicit", "implicit", "sequence"] = "implicit"
  notes: tuple[str, ...] = ()
