"""What every query answers with, and the raw-id bookkeeping around it.

`Recommendations` holds one top-k answer per query row in raw ids;
`item_index`/`user_index` map raw ids (as text) to columns and training rows;
`candidates` turns allow/deny lists into the mask of recommendable items;
`answer_ids` turns a batch's top-k columns into raw ids, dropping excluded
(-inf) entries.  `QueryNotSupported` is the one-line refusal of a model that
cannot answer a kind of query.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from recjax.train.artifact import TrainedModel


class QueryNotSupported(ValueError):
  """The model cannot answer this kind of query (the message says why, in one line)."""


@dataclasses.dataclass(frozen=True)
class Recommendations:
  """Top-k answers, one row per query, with raw ids.

  Attributes:
    keys: the query of each row (a user id, a history key or an item id).
    items: [n][<= k] raw ids, best first (fewer than k when fewer candidates remain).
    scores: [n][<= k] float32 scores of the model (popularity counts on a fallback row).
    fallback: [n] bool, True where the answer is the popularity fallback.
    unknown: query key -> raw item ids of its history the model does not know.
    notes: one-line remarks (ignored entries, unknown filter ids).
  """

  keys: list
  items: list
  scores: list
  fallback: np.ndarray
  unknown: dict
  notes: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.keys)

  def to_records(self) -> list[dict[str, Any]]:
    """One JSON-able dict per query: key, items, scores, fallback."""
    return [{"key": py_value(k), "items": [py_value(i) for i in items],
             "scores": [float(s) for s in scores], "fallback": bool(f)}
            for k, items, scores, f in zip(self.keys, self.items, self.scores, self.fallback)]


def py_value(x):
  """A numpy scalar as the plain Python value (anything else unchanged)."""
  return x.item() if hasattr(x, "item") else x


def id_key(raw) -> str:
  """The text key a raw id is looked up by (1, np.int64(1) and "1" alike)."""
  return str(py_value(raw))


def item_index(tm: TrainedModel) -> dict[str, int]:
  """Raw item id (as text) -> item column (built once, at load)."""
  return tm.item_index or {id_key(i): c for c, i in enumerate(tm.item_ids)}


def user_index(tm: TrainedModel) -> dict[str, int]:
  """Raw user id (as text) -> training row (built once, at load)."""
  return tm.user_index or {id_key(u): r for r, u in enumerate(tm.user_ids)}


def candidates(tm: TrainedModel, allow: Iterable | None = None,
               deny: Iterable | None = None) -> tuple[np.ndarray, list[str]]:
  """[n_items] bool of the items that may be recommended, and notes on unknown ids."""
  notes = []
  mask = np.ones(tm.n_items, bool)
  if allow is None and deny is None:
    return mask, notes
  index = item_index(tm)
  for name, ids in (("allow", allow), ("deny", deny)):
    if ids is None:
      continue
    ids = list(ids)
    cols = [index[id_key(i)] for i in ids if id_key(i) in index]
    missing = [py_value(i) for i in ids if id_key(i) not in index]
    if missing:
      notes.append(f"{name}-list: {len(missing)} of {len(ids)} ids are not items of this model "
                   f"and are ignored: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if name == "allow":
      mask = np.zeros(tm.n_items, bool)
      mask[cols] = True
    else:
      mask[cols] = False
  return mask, notes


def answer_ids(tm: TrainedModel, values: np.ndarray, cols: np.ndarray):
  """Per row: the raw ids of the top-k columns and their float32 scores, -inf entries dropped."""
  items, scores = [], []
  for v, c in zip(values, cols):
    keep = np.isfinite(v)  # Excluded items come last with -inf, only when too few remain.
    items.append(tm.item_ids[c[keep]])
    scores.append(v[keep].astype(np.float32))
  return items, scores
