"""Batch sources over the items' side information, beside `recjax.data.batching.ContentRows`.

`SubsetContentRows`: the content rows (bags of words) of some of the items,
each batch padded only as wide as it needs (DeepMusic regresses the clicked
items' factors).  `TokenRows`: rows of token ids such as item titles, with
`token_batches` (fixed-size batches, width rounded to a multiple) and
`window_sorted_order` (batches of similar lengths; CRAE).  Each is a
`recjax.data.batching.BatchSource`: ``epoch(train, aux, batch_size, epoch,
seed) -> (n_batches, iterator of dicts)``, its order a function of (seed,
epoch) alone.  numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from recjax.data.batching import default_bucket_edges, n_batches, shuffled_order


@dataclasses.dataclass(frozen=True)
class SubsetContentRows:
  """Content rows of some items, shuffled each epoch, each batch only as wide as it needs.

  ``aux[key]`` is the items x words csr and ``aux[items]`` the int ids of the
  items to train on (e.g. those with a training click).  Yields {"words": int32
  [B, L_b], "values": float32 [B, L_b], "index": int32 [B] (item id, -1 on
  padding), "mask": bool [B]}, L_b the smallest of the widths
  ``default_bucket_edges(longest row, min(min_width, longest row), 2)`` that
  holds the batch's longest row: a handful of shapes for the whole run.
  """

  key: str = "content"
  items: str = "items"
  min_width: int = 32

  def epoch(self, train, aux, batch_size, epoch, seed):
    del train
    content, items = aux[self.key], np.asarray(aux[self.items])
    lengths = np.diff(content.indptr)
    longest = max(int(lengths.max(initial=0)), 1)
    edges = np.asarray(default_bucket_edges(longest, min(self.min_width, longest), 2.0))
    order = items[shuffled_order(len(items), seed, epoch)]

    def batches():
      for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        sub = content[sel]
        row_len = np.diff(sub.indptr)
        width = int(edges[np.searchsorted(edges, row_len.max(initial=1))])
        r = np.repeat(np.arange(len(sel)), row_len)
        pos = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], row_len)
        out = {"words": np.zeros((batch_size, width), np.int32),
               "values": np.zeros((batch_size, width), np.float32),
               "index": np.full(batch_size, -1, np.int32), "mask": np.zeros(batch_size, bool)}
        out["words"][r, pos] = sub.indices
        out["values"][r, pos] = sub.data
        out["index"][:len(sel)] = sel
        out["mask"][:len(sel)] = True
        yield out

    return n_batches(len(items), batch_size), batches()


@dataclasses.dataclass(frozen=True)
class TokenRows:
  """Rows of token ids (``aux[tokens]`` int [n, L], ``aux[lengths]`` [n]), shuffled each epoch.

  Trains on the rows ``aux[rows]`` (all rows when `rows` is None).  Yields
  `token_batches` of them: {"tokens": int32 [B, W], "lengths", "index",
  "mask"}, W the batch's longest row rounded up to `length_multiple`.  With
  `window` > 0 a batch holds rows of similar length (`window_sorted_order`).
  """

  tokens: str = "tokens"
  lengths: str = "lengths"
  rows: str | None = None
  length_multiple: int = 8
  window: int = 0

  def epoch(self, train, aux, batch_size, epoch, seed):
    del train
    tokens, lengths = aux[self.tokens], aux[self.lengths]
    rows = np.arange(len(tokens)) if self.rows is None else np.asarray(aux[self.rows])
    order = rows[shuffled_order(len(rows), seed, epoch)]
    if self.window > 0:
      order = window_sorted_order(order, lengths, batch_size, self.window, seed, epoch)
    return n_batches(len(rows), batch_size), token_batches(tokens, lengths, batch_size, order,
                                                           self.length_multiple)


def window_sorted_order(order: np.ndarray, lengths: np.ndarray, batch_size: int, window: int,
                        seed: int, epoch: int) -> np.ndarray:
  """A shuffled row order cut into batches of similar lengths (a bucket iterator).

  The shuffled `order` is cut into windows of `window` batches; each window is
  sorted by length (stably) and cut into batches; the full batches are
  shuffled (seeded by seed and epoch) and the one partial batch, if any, goes
  last, so consecutive chunks of `batch_size` are the batches.  Every row
  appears once; batches are no longer uniformly random, but their padding
  shrinks to about the longest row of each batch.  (`length_grouped_order`
  is the same idea with one generator for both shuffles; CRAE's runs were made
  with this one.)
  """
  span = batch_size * window
  parts = [chunk[np.argsort(lengths[chunk], kind="stable")]
           for chunk in (order[s:s + span] for s in range(0, len(order), span))]
  sorted_order = np.concatenate(parts) if parts else order
  n_full = len(sorted_order) // batch_size
  full = sorted_order[:n_full * batch_size].reshape(n_full, batch_size)
  rng = np.random.default_rng([seed, epoch, 0x5EED])
  return np.concatenate([full[rng.permutation(n_full)].ravel(),
                         sorted_order[n_full * batch_size:]])


def token_batches(tokens: np.ndarray, lengths: np.ndarray, batch_size: int, order: np.ndarray,
                  length_multiple: int = 1, width: int | None = None) -> Iterator[dict]:
  """Fixed-size batches of token rows in `order`, the last one padded with empty rows.

  Yields {"tokens": int32 [B, W] (W the batch's longest row rounded up to
  `length_multiple`, at least `length_multiple`; or `width`), "lengths": int32
  [B] (0 on padding rows), "index": int32 [B] (-1 on padding rows), "mask":
  bool [B]}.  Slots past a row's length hold what `tokens` holds there (0 past
  its width); the lengths mask them.
  """
  for start in range(0, len(order), batch_size):
    ids = order[start:start + batch_size]
    index = np.full(batch_size, -1, np.int32)
    index[:len(ids)] = ids
    lens = np.zeros(batch_size, np.int32)
    lens[:len(ids)] = lengths[ids]
    rounded = -(-int(lens.max(initial=0)) // length_multiple) * length_multiple
    w = width if width is not None else max(length_multiple, rounded)
    toks = np.zeros((batch_size, w), np.int32)
    cols = min(w, tokens.shape[1])
    toks[:len(ids), :cols] = tokens[ids, :cols]
    yield {"tokens": toks, "lengths": lens, "index": index, "mask": index >= 0}
