"""Filtering and binarization of `Interactions` event logs.

Every function returns a new `Interactions` whose dense ids are re-indexed to
``0..n-1`` over the users/items that still have events (`compact`), with
``user_ids``/``item_ids`` sliced the same way, so raw ids stay attached to the
right rows.  Relative order of the surviving ids is preserved.

Counts are *distinct partners*: a user's count is the number of distinct items
it has events with, an item's count the number of distinct users, so repeated
events (re-listens, re-ratings) do not help a user or item pass a threshold.

A filter that would leave no event raises a ValueError naming the data and the
DataConfig field that emptied it.  Inside `recording()` every function adds a
one-line description of what it changed (e.g. "users with < 5 items dropped:
13 users, 40 events") to the recorded list; `pipeline.ranking_split` puts that
list in `info["conversions"]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
from typing import Iterator

import numpy as np

from recjax.data.types import Interactions

logger = logging.getLogger(__name__)

_RECORD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "recjax_conversions", default=None)


@contextlib.contextmanager
def recording(enabled: bool = True) -> Iterator[list[str]]:
  """Collects the one-line descriptions of the conversions made inside the block.

  Args:
    enabled: False suspends an enclosing recording (e.g. while a step is redone).

  Yields:
    The list the lines are appended to (empty when disabled).
  """
  log: list[str] | None = [] if enabled else None
  token = _RECORD.set(log)
  try:
    yield log if log is not None else []
  finally:
    _RECORD.reset(token)


def record(line: str) -> None:
  """Adds a conversion line to the active `recording()`, if any."""
  log = _RECORD.get()
  if log is not None:
    log.append(line)


def compact(inter: Interactions) -> Interactions:
  """Drops user and item ids that have no events and re-indexes the rest.

  Args:
    inter: any event log.

  Returns:
    The same events with dense ids over the used users/items only; surviving
    ids keep their relative order and their raw ids.
  """
  used_u = np.bincount(inter.users, minlength=inter.n_users) > 0
  used_i = np.bincount(inter.items, minlength=inter.n_items) > 0
  if used_u.all() and used_i.all():
    return inter
  new_u = np.cumsum(used_u, dtype=np.int64) - 1
  new_i = np.cumsum(used_i, dtype=np.int64) - 1
  return dataclasses.replace(
      inter, users=new_u[inter.users], items=new_i[inter.items],
      user_ids=inter.user_ids[used_u], item_ids=inter.item_ids[used_i])


def _pairs(inter: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Distinct (user, item) pairs and, for each event, the index of its pair."""
  key = inter.users.astype(np.int64) * max(inter.n_items, 1) + inter.items
  uniq, inverse = np.unique(key, return_inverse=True)
  n_items = max(inter.n_items, 1)
  return uniq // n_items, uniq % n_items, inverse.reshape(-1)


def binarize(inter: Interactions, threshold: float) -> Interactions:
  """Keeps the positive feedback (value >= threshold) as implicit 1.0 events.

  For ``duplicate_rule="last"`` (explicit ratings) the decision is made per
  (user, item) pair on its latest value -- the value `to_csr` shows -- and
  every event of a kept pair is kept, so
  ``binarize(x, t).to_csr()`` has the pattern of ``x.to_csr() >= t``.  For
  ``"sum"`` logs each event is judged on its own value.  The result has
  ``duplicate_rule="last"`` so that its matrix is binary even with repeated
  events, and it is compacted.  The numbers of kept/dropped events are logged
  at INFO level.

  Args:
    inter: event log with ratings or counts.
    threshold: smallest value that counts as positive.

  Returns:
    The binarized, compacted event log (values all 1.0).
  """
  ratings = inter.duplicate_rule == "last"
  if ratings and inter.n_events:
    m = inter.to_csr(dtype=np.float64)
    # Look up the merged (latest) value of each event's pair.
    merged = np.asarray(m[inter.users, inter.items]).reshape(-1)
    keep = merged >= threshold
  else:
    merged = inter.values
    keep = inter.values >= threshold
  word = "rating" if ratings else "value"
  if inter.n_events and not keep.any():
    raise ValueError(
        f"{inter.name}: binarize_threshold={threshold:g} drops every event: none of the "
        f"{inter.n_events:,} events has {word} >= {threshold:g} (the largest is "
        f"{float(np.max(merged)):g}); lower binarize_threshold, or set it to None to keep "
        "every event")
  out = inter.select_events(keep)
  out = dataclasses.replace(
      out, values=np.ones(out.n_events, np.float32), duplicate_rule="last")
  out = compact(out)
  logger.info("binarize(%s, %s): kept %d of %d events; %d users, %d items remain",
              inter.name, threshold, out.n_events, inter.n_events, out.n_users,
              out.n_items)
  record(f"{'ratings' if ratings else 'values'} binarized: {out.n_events:,} of "
         f"{inter.n_events:,} events have {word} >= {threshold:g} and become 1.0; the rest are "
         "dropped")
  return out


def filter_min_counts(inter: Interactions, min_user: int = 0,
                      min_item: int = 0) -> Interactions:
  """One filtering pass: items first, then users, as vae_cf's filter_triplets.

  Items with fewer than ``min_item`` distinct users are dropped, then users
  with fewer than ``min_user`` distinct (remaining) items.  It is a single
  pass, so items may fall below ``min_item`` after the user step; use `k_core`
  for a fixed point.

  Args:
    inter: event log.
    min_user: least number of distinct items a kept user has.
    min_item: least number of distinct users a kept item has.

  Returns:
    The filtered, compacted event log.
  """
  pu, pi, inverse = _pairs(inter)
  keep_pair = np.ones(len(pu), bool)
  if min_item > 0:
    deg_i = np.bincount(pi, minlength=inter.n_items)
    drop = deg_i[pi] < min_item
    if len(pu) and drop.all():
      raise ValueError(
          f"{inter.name}: min_item_count={min_item} drops every item: no item has >= "
          f"{min_item} distinct users (the most is {int(deg_i.max())}); lower it or set it "
          "to None")
    _record_drop("items", "users", min_item, (deg_i > 0) & (deg_i < min_item),
                 int(drop[inverse].sum()))
    keep_pair &= ~drop
  if min_user > 0:
    deg_u = np.bincount(pu[keep_pair], minlength=inter.n_users)
    drop = keep_pair & (deg_u[pu] < min_user)
    if len(pu) and not (keep_pair & ~drop).any():
      after = " after the item filter" if min_item > 0 else ""
      raise ValueError(
          f"{inter.name}: min_user_count={min_user} drops every user: no user has >= "
          f"{min_user} distinct items{after} (the most is {int(deg_u.max())}); lower it or set "
          "it to None")
    _record_drop("users", "items", min_user, (deg_u > 0) & (deg_u < min_user),
                 int(drop[inverse].sum()))
    keep_pair &= ~drop
  out = compact(inter.select_events(keep_pair[inverse]))
  logger.info("filter_min_counts(%s, min_user=%d, min_item=%d): %d -> %d events",
              inter.name, min_user, min_item, inter.n_events, out.n_events)
  return out


def _record_drop(what: str, partners: str, least: int, dropped: np.ndarray, events: int):
  n = int(dropped.sum())
  if n:
    record(f"{what} with < {least} {partners} dropped: {n:,} {what[:-1] if n == 1 else what}, "
           f"{events:,} event{'' if events == 1 else 's'}")


def k_core(inter: Interactions, k_user: int, k_item: int) -> Interactions:
  """The maximal (k_user, k_item)-core of the user-item graph.

  Users with fewer than ``k_user`` distinct items and items with fewer than
  ``k_item`` distinct users are removed repeatedly until none is left.  Peeling
  only ever removes vertices that cannot belong to any core, so the result is
  the unique maximal core (possibly empty).

  Args:
    inter: event log.
    k_user: least number of distinct items of every kept user.
    k_item: least number of distinct users of every kept item.

  Returns:
    The events inside the core, compacted.
  """
  pu, pi, inverse = _pairs(inter)
  alive = np.ones(len(pu), bool)
  n_rounds = 0
  while True:
    n_rounds += 1
    deg_u = np.bincount(pu[alive], minlength=inter.n_users)
    deg_i = np.bincount(pi[alive], minlength=inter.n_items)
    new_alive = alive & (deg_u[pu] >= k_user) & (deg_i[pi] >= k_item)
    if np.array_equal(new_alive, alive):
      break
    alive = new_alive
  out = compact(inter.select_events(alive[inverse]))
  logger.info("k_core(%s, %d, %d): %d -> %d events in %d rounds", inter.name, k_user,
              k_item, inter.n_events, out.n_events, n_rounds)
  if out.n_events < inter.n_events:
    record(f"({k_user}, {k_item})-core kept: {inter.n_users - out.n_users:,} users, "
           f"{inter.n_items - out.n_items:,} items and {inter.n_events - out.n_events:,} events "
           "dropped")
  return out
