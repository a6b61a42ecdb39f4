"""Recommendation queries on a trained model, by raw id.

Every query runs the same way as evaluation (`recjax.serve.topk`): fixed-size
batches of rows (padded at the bottom, split over the mesh's data axis), one
jitted function that scores with the model's own ``score``, removes excluded
items and reduces to the top k on device; only [batch, k] ids and scores come
back to the host.  No full score matrix is ever held: `recommend_all` streams
batch by batch.

* Known users (training rows, by raw id) are scored by folding in their own
  training row, the path every unseen user takes, and their training items are
  excluded.
* New users are scored from raw item-id histories encoded as training rows
  were (clicks, counts, time ranks or ratings: ``TrainedModel.input_values``); ids the
  model does not know are reported in ``Recommendations.unknown``; an empty
  history (or one with no known item) is answered by item popularity among
  training users, flagged in ``Recommendations.fallback``.
* Similar items (`recjax.serve.similar`) rank items by the cosine of the
  model's ``item_vectors``.
* Candidates can be restricted by an allow-list and/or a deny-list of raw ids
  (`recjax.serve.answers.candidates`).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from recjax.serve.answers import (QueryNotSupported, Recommendations, answer_ids, candidates,
                                  id_key, item_index, py_value, user_index)
from recjax.serve.topk import rank_rows
from recjax.train.artifact import TrainedModel


def _check_user_rows(tm: TrainedModel) -> None:
  """QueryNotSupported unless the model's rows are users (not items, as rating protocols allow)."""
  if tm.info.get("orientation", "users") != "users":
    raise QueryNotSupported(
        f"{tm.model.name} was trained with items as rows (protocol {tm.info.get('protocol')}): "
        f"it predicts ratings item by item and cannot recommend items to users")


def _rank_all(tm: TrainedModel, rows: sp.csr_matrix, k: int, allowed: np.ndarray,
              exclude_seen: bool, batch_size: int, item_chunk: int | None):
  """Every row's answer, gathered: (raw item ids per row, scores per row, fallback [n])."""
  _check_user_rows(tm)
  items, scores, fallback = [], [], []
  for _, values, cols, empty in rank_rows(tm, rows, k, allowed, exclude_seen, batch_size,
                                          item_chunk):
    i, s = answer_ids(tm, values, cols)
    items += i
    scores += s
    fallback.append(empty)
  return items, scores, np.concatenate(fallback) if fallback else np.zeros(0, bool)


def user_rows(tm: TrainedModel, users: Sequence) -> np.ndarray:
  """Training rows of raw user ids; an unknown id is a ValueError naming it."""
  index = user_index(tm)
  missing = [py_value(u) for u in users if id_key(u) not in index]
  if missing:
    raise ValueError(
        f"{len(missing)} user id(s) are not training users of this model: {missing[:10]}"
        f"{' ...' if len(missing) > 10 else ''} (validation/test users are held out of "
        f"training: recommend for them from their histories, or train with heldout_users=0)")
  return np.asarray([index[id_key(u)] for u in users], np.int64)


def recommend(tm: TrainedModel, users: Sequence, k: int = 10, *, allow: Iterable | None = None,
              deny: Iterable | None = None, exclude_seen: bool = True, batch_size: int = 256,
              item_chunk: int | None = None) -> Recommendations:
  """Top-k items for known (training) users by raw id, their training items excluded.

  Each user is scored by folding in their training row through the model's
  ``score``: the same answer as `recommend_histories` on that row.
  """
  rows = tm.train[user_rows(tm, users)]
  allowed, notes = candidates(tm, allow, deny)
  items, scores, fallback = _rank_all(tm, rows, k, allowed, exclude_seen, batch_size, item_chunk)
  return Recommendations(keys=list(users), items=items, scores=scores, fallback=fallback,
                         unknown={}, notes=tuple(notes))


def recommend_all(tm: TrainedModel, k: int = 10, *, allow: Iterable | None = None,
                  deny: Iterable | None = None, exclude_seen: bool = True,
                  batch_size: int = 1024, item_chunk: int | None = None
                  ) -> Iterator[Recommendations]:
  """Every training user's top k, one `Recommendations` per batch (streamed)."""
  allowed, notes = candidates(tm, allow, deny)
  _check_user_rows(tm)
  for start, values, cols, empty in rank_rows(tm, tm.train, k, allowed, exclude_seen,
                                              batch_size, item_chunk):
    items, scores = answer_ids(tm, values, cols)
    yield Recommendations(keys=list(tm.user_ids[start:start + len(items)]), items=items,
                          scores=scores, fallback=empty, unknown={},
                          notes=tuple(notes) if start == 0 else ())


def history_rows(tm: TrainedModel, histories: Mapping[Any, Sequence]
                 ) -> tuple[list, sp.csr_matrix, dict, list[str]]:
  """Encodes raw histories as the model's input rows.

  Args:
    histories: key -> the user's items in time order, each a raw item id or an
      ``(item id, value)`` pair (a rating or count).

  Returns:
    (keys, csr [n, n_items], unknown ids per key, notes).
  """
  index = item_index(tm)
  mode = tm.input_values
  threshold = (tm.info.get("preprocessing") or {}).get("binarize_threshold")
  keys, indptr, indices, data = [], [0], [], []
  unknown: dict = {}
  below = 0
  for key, history in histories.items():
    cols: dict[int, float] = {}  # column -> value; a repeated item keeps its latest position.
    for entry in history:
      raw, value = (entry if isinstance(entry, tuple) else (entry, None))
      col = index.get(id_key(raw))
      if col is None:
        unknown.setdefault(key, []).append(py_value(raw))
        continue
      if mode == "rating":
        if value is None:
          raise ValueError(f"history {key!r}: {tm.model.name} predicts ratings, so each history "
                           f"item needs a rating (item {raw!r} has none)")
        cols[col] = float(value)
        continue
      if mode == "counts":  # Trained on summed counts: a repeated item adds up; no value is 1.
        cols[col] = cols.get(col, 0.0) + (1.0 if value is None else float(value))
        continue
      if value is not None and threshold is not None and float(value) < float(threshold):
        below += 1  # Training kept only ratings >= threshold as clicks.
        continue
      cols.pop(col, None)
      cols[col] = 1.0
    if mode == "time_rank":
      cols = {c: float(r) for r, c in enumerate(cols, start=1)}
    keys.append(key)
    order = sorted(cols)
    indices += order
    data += [cols[c] for c in order]
    indptr.append(len(indices))
  rows = sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int64),
                        np.asarray(indptr, np.int64)), shape=(len(keys), tm.n_items))
  notes = []
  if below:
    notes.append(f"{below} history entries rated below the training binarization threshold "
                 f"{threshold} were not counted as clicks (as in training)")
  if unknown:
    n = sum(len(v) for v in unknown.values())
    notes.append(f"{n} item id(s) in {len(unknown)} histories are not items of this model and "
                 f"were left out (listed in `unknown`)")
  return keys, rows, unknown, notes


def recommend_histories(tm: TrainedModel, histories: Mapping[Any, Sequence], k: int = 10, *,
                        allow: Iterable | None = None, deny: Iterable | None = None,
                        exclude_seen: bool = True, batch_size: int = 256,
                        item_chunk: int | None = None) -> Recommendations:
  """Top-k items for new users from their raw item-id histories (fold-in by ``score``).

  A history with no known item is answered by popularity (``fallback`` True).
  """
  keys, rows, unknown, notes = history_rows(tm, histories)
  allowed, filter_notes = candidates(tm, allow, deny)
  items, scores, fallback = _rank_all(tm, rows, k, allowed, exclude_seen, batch_size, item_chunk)
  if fallback.any():
    notes.append(f"{int(fallback.sum())} histories have no known item: answered by popularity "
                 f"among training users")
  return Recommendations(keys=keys, items=items, scores=scores, fallback=fallback,
                         unknown=unknown, notes=tuple(notes + filter_notes))
