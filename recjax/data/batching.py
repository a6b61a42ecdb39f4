"""Fixed-shape host batches of sparse rows, so nothing ragged reaches jax.jit.

`dense_row_batches` turns csr rows into dense [B, n_items] blocks with one B
for the whole pass (the last batch is padded and masked).  `bucketed_rows`
packs rows by their number of non-zeros into a few padded shapes for
row-wise solvers such as ALS.  numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, NamedTuple, Protocol, Sequence

import numpy as np
import scipy.sparse as sp


class RowBatch(NamedTuple):
  """A dense block of matrix rows.

  Attributes:
    rows: [B, n_items] dense values (zeros on padding rows).
    mask: [B] bool, False on padding rows.
    index: [B] int64 matrix row of each batch row, -1 on padding rows.
  """

  rows: np.ndarray
  mask: np.ndarray
  index: np.ndarray


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def n_batches(n_rows: int, batch_size: int, pad_to_multiple_of: int = 1) -> int:
  """Number of batches `dense_row_batches` yields for n_rows rows."""
  return -(-n_rows // _round_up(batch_size, pad_to_multiple_of))


def shuffled_order(n_rows: int, seed: int, epoch: int) -> np.ndarray:
  """A permutation of range(n_rows) determined by (seed, epoch) alone."""
  return np.random.default_rng([seed, epoch]).permutation(n_rows)


def _canonical(matrix: sp.spmatrix) -> sp.csr_matrix:
  m = sp.csr_matrix(matrix)
  if not m.has_canonical_format:
    m = m.copy()
    m.sum_duplicates()
  return m


def dense_row_batches(matrix: sp.spmatrix, batch_size: int, *,
                      order: np.ndarray | None = None, pad_to_multiple_of: int = 1,
                      dtype=np.float32,
                      window: tuple[int, int] | None = None) -> Iterator[RowBatch]:
  """Yields the rows of `matrix` as dense batches of one fixed shape.

  The batch size is ``B = batch_size`` rounded up to a multiple of
  ``pad_to_multiple_of`` (e.g. the device count, so batches shard evenly).
  Every batch, the last one included, has B rows; the last is padded with
  zero rows that have ``mask=False`` and ``index=-1``.  Each call allocates
  fresh arrays, so yielded batches may be kept.

  Args:
    matrix: csr [n_rows, n_items]; duplicate entries are summed.
    batch_size: rows per batch before rounding.
    order: row indices in the order to yield them, e.g. `shuffled_order`
      (a subset is allowed); default all rows in order.
    pad_to_multiple_of: B is rounded up to a multiple of this.
    dtype: dtype of `rows`.
    window: ``(lo, hi)``: yield only rows lo..hi-1 of each batch (the rows one
      process of a multi-process run holds); only those are densified.

  Yields:
    RowBatch.
  """
  m = _canonical(matrix)
  b = _round_up(batch_size, pad_to_multiple_of)
  if b <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  order = np.arange(m.shape[0]) if order is None else np.asarray(order, np.int64)
  lo, hi = (0, b) if window is None else window
  if not 0 <= lo <= hi <= b:
    raise ValueError(f"window {window} is not inside a batch of {b} rows")
  for start in range(0, len(order), b):
    index = np.full(b, -1, np.int64)
    index[:len(order[start:start + b])] = order[start:start + b]
    index = index[lo:hi]
    idx = index[index >= 0]
    sub = m[idx]
    rows = np.zeros((hi - lo, m.shape[1]), dtype)
    r = np.repeat(np.arange(len(idx)), np.diff(sub.indptr))
    rows[r, sub.indices] = sub.data
    yield RowBatch(rows=rows, mask=index >= 0, index=index)


@dataclasses.dataclass(frozen=True)
class Bucket:
  """Rows of one padded length.

  Attributes:
    rows: int64 [R] matrix row ids, -1 on padding rows.
    cols: int32 [R, L] column ids of the row's entries, 0 on padding.
    vals: float32 [R, L] values, 0 on padding.
    mask: bool [R, L], True on real entries.
  """

  rows: np.ndarray
  cols: np.ndarray
  vals: np.ndarray
  mask: np.ndarray

  @property
  def length(self) -> int:
    return self.cols.shape[1]

  @property
  def n_rows(self) -> int:
    return self.cols.shape[0]


def default_bucket_edges(max_len: int, min_len: int = 8, growth: float = 2.0) -> list[int]:
  """Geometric padded lengths min_len, ceil(min_len * growth), ... up to >= max_len."""
  if growth <= 1.0:
    raise ValueError(f"growth must be > 1, got {growth}")
  edges = [max(int(min_len), 1)]
  while edges[-1] < max_len:
    edges.append(max(edges[-1] + 1, int(np.ceil(edges[-1] * growth))))
  return edges


def bucketed_rows(matrix: sp.spmatrix, bucket_edges: Sequence[int] | None = None,
                  rows_per_batch: int | None = None) -> list[Bucket]:
  """Groups rows by their number of non-zeros into padded buckets.

  A row with n entries goes to the smallest edge L >= n (empty rows to the
  smallest bucket, all masked).  Only buckets with rows are returned, in
  increasing L; rows keep increasing id order inside a bucket.  R is padded to
  a multiple of ``rows_per_batch`` (e.g. a solver's batch times the device
  count), so a caller that slices buckets into chunks of ``rows_per_batch``
  rows sees at most one shape per edge.  With the default power-of-2
  edges from 8, a row of length n > 8 costs < 2n slots; `padding_ratio` gives
  the overhead of a result.

  Args:
    matrix: csr [n_rows, n_cols]; duplicates are summed.
    bucket_edges: increasing padded lengths; the last must be >= the longest
      row.  Default `default_bucket_edges(longest row)`.
    rows_per_batch: pad each bucket's row count to a multiple of this.

  Returns:
    list of Bucket.
  """
  m = _canonical(matrix)
  m.sort_indices()
  lengths = np.diff(m.indptr)
  max_len = int(lengths.max()) if len(lengths) else 0
  edges = np.asarray(default_bucket_edges(max_len) if bucket_edges is None
                     else bucket_edges, np.int64)
  if len(edges) == 0 or np.any(np.diff(edges) <= 0) or edges[0] < 1:
    raise ValueError(f"bucket_edges must be positive and increasing, got {edges}")
  if max_len > edges[-1]:
    raise ValueError(f"longest row has {max_len} entries > last bucket edge {edges[-1]}")
  which = np.searchsorted(edges, lengths, side="left")
  buckets = []
  for b, length in enumerate(edges):
    ids = np.flatnonzero(which == b)
    if len(ids) == 0:
      continue
    n_real = len(ids)
    n_pad = n_real if rows_per_batch is None else _round_up(n_real, rows_per_batch)
    row_len = lengths[ids]
    r = np.repeat(np.arange(n_real), row_len)
    starts = m.indptr[ids]
    pos = np.arange(len(r)) - np.repeat(np.cumsum(row_len) - row_len, row_len)
    src = np.repeat(starts, row_len) + pos
    cols = np.zeros((n_pad, length), np.int32)
    vals = np.zeros((n_pad, length), np.float32)
    mask = np.zeros((n_pad, length), bool)
    cols[r, pos] = m.indices[src]
    vals[r, pos] = m.data[src]
    mask[r, pos] = True
    rows = np.full(n_pad, -1, np.int64)
    rows[:n_real] = ids
    buckets.append(Bucket(rows=rows, cols=cols, vals=vals, mask=mask))
  return buckets


def padding_ratio(buckets: Sequence[Bucket]) -> float:
  """Padding slots per real entry: (sum R * L - nnz) / nnz (0 = no overhead)."""
  slots = sum(b.mask.size for b in buckets)
  real = sum(int(b.mask.sum()) for b in buckets)
  return (slots - real) / max(real, 1)


class PaddedRowBatch(NamedTuple):
  """Matrix rows as padded item lists (for models that read sparse rows).

  Attributes:
    items: [B, L] int32 column ids, ascending within a row; 0 on padding slots.
    values: [B, L] values; 0 on padding slots (and on padding rows).
    mask: [B] bool, False on padding rows.
    index: [B] int64 matrix row of each batch row, -1 on padding rows.
  """

  items: np.ndarray
  values: np.ndarray
  mask: np.ndarray
  index: np.ndarray


def longest_row(matrix: sp.spmatrix) -> int:
  """The largest number of stored nonzeros in a row (after summing duplicates)."""
  m = _canonical(matrix)
  m.eliminate_zeros()
  return int(np.diff(m.indptr).max()) if m.shape[0] else 0


def length_grouped_order(lengths: sp.spmatrix | np.ndarray | Sequence[int], batch_size: int,
                         seed: int, epoch: int, *, group_batches: int = 16,
                         pad_to_multiple_of: int = 1) -> np.ndarray:
  """A random row order whose consecutive batches hold rows of similar length.

  `lengths` is the length of every row (of a padded list, a sequence, a
  content row), or a sparse matrix whose rows' non-zero counts are taken.

  The rows are shuffled by (seed, epoch) as in `shuffled_order`, cut into
  groups of ``group_batches`` batches, each group sorted by row length and cut
  into batches, and the batches of the whole epoch shuffled.  Every row
  appears once; which rows share a batch is still random apart from length.
  With ``padded_row_batches(..., bucket_lengths=True)`` a batch of short rows
  then pads to a short L instead of the matrix's longest row (on gowalla the
  longest row is ~25x the mean).

  Returns:
    int64 [n_rows], for `padded_row_batches`' ``order`` with the same
    ``batch_size`` and ``pad_to_multiple_of``.
  """
  if sp.issparse(lengths):
    lengths = np.diff(_canonical(lengths).indptr)
  lengths = np.asarray(lengths, np.int64)
  b = _round_up(batch_size, pad_to_multiple_of)
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(lengths))
  span = b * max(int(group_batches), 1)
  batches = []
  for start in range(0, len(order), span):
    group = order[start:start + span]
    group = group[np.argsort(lengths[group], kind="stable")]
    batches.extend(group[i:i + b] for i in range(0, len(group), b))
  # A short last batch only at the end, so that batch boundaries stay multiples of b.
  full = [x for x in batches if len(x) == b]
  short = [x for x in batches if len(x) < b]
  full = [full[i] for i in rng.permutation(len(full))]
  return np.concatenate(full + short) if batches else order


def _pow2_width(longest: int, cap: int) -> int:
  """The smallest power of two >= 8 that holds `longest` slots, at most `cap`."""
  return min(cap, max(8, 1 << max(longest - 1, 0).bit_length()))


def padded_row_batches(matrix: sp.spmatrix, batch_size: int, *,
                       order: np.ndarray | None = None, max_len: int | None = None,
                       pad_to_multiple_of: int = 1, dtype=np.float32,
                       bucket_lengths: bool = False) -> Iterator[PaddedRowBatch]:
  """Yields the rows of `matrix` as padded item lists [B, L].

  Batches follow `dense_row_batches` (same B, order, padding rows and index),
  but each row is its nonzero column ids and values, padded to ``L`` slots, so
  the batch holds B·L entries instead of B·n_items.  ``L`` defaults to the
  longest row of the whole matrix (so every batch of every epoch has one shape).
  With ``bucket_lengths``, each batch's L is instead the smallest power of two
  (at least 8, at most ``max_len`` or the longest row) that holds the batch's
  longest row: a handful of shapes, and with `length_grouped_order` far fewer
  padding slots.

  Args:
    matrix: csr [n_rows, n_items]; duplicates are summed, explicit zeros dropped.
    batch_size: rows per batch before rounding.
    order: row indices in the order to yield them; default all rows in order.
    max_len: L; must be >= the longest row.  Default `longest_row(matrix)` (at least 1).
    pad_to_multiple_of: B is rounded up to a multiple of this.
    dtype: dtype of `values`.
    bucket_lengths: pad each batch to a power of two of its own longest row.

  Yields:
    PaddedRowBatch.
  """
  m = _canonical(matrix)
  m.eliminate_zeros()
  m.sort_indices()
  longest = int(np.diff(m.indptr).max()) if m.shape[0] else 0
  length = max(longest, 1) if max_len is None else int(max_len)
  if length < longest:
    raise ValueError(f"max_len={length} is shorter than the longest row ({longest} entries)")
  b = _round_up(batch_size, pad_to_multiple_of)
  if b <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  order = np.arange(m.shape[0]) if order is None else np.asarray(order, np.int64)
  for start in range(0, len(order), b):
    idx = order[start:start + b]
    sub = m[idx]
    row_len = np.diff(sub.indptr)
    r = np.repeat(np.arange(len(idx)), row_len)
    pos = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], row_len)
    width = length
    if bucket_lengths:
      width = _pow2_width(int(row_len.max()) if len(row_len) else 1, length)
    items = np.zeros((b, width), np.int32)
    values = np.zeros((b, width), dtype)
    items[r, pos] = sub.indices
    values[r, pos] = sub.data
    mask = np.zeros(b, bool)
    mask[:len(idx)] = True
    index = np.full(b, -1, np.int64)
    index[:len(idx)] = idx
    yield PaddedRowBatch(items=items, values=values, mask=mask, index=index)


# ---------------------------------------------------------------------------
# Batch sources: what a model names as the stream its loss trains on.
# ---------------------------------------------------------------------------


class BatchSource(Protocol):
  """The training batches of one epoch, as a model names them (`Model.batch_source`).

  ``epoch(train, aux, batch_size, epoch, seed)`` returns ``(n_batches,
  iterator)``: the iterator yields ``n_batches`` dicts of host arrays of one
  leading size B = `batch_size` (split over the devices), each with ``mask``
  [B] bool (False on padding rows) plus whatever the model's loss reads.
  ``train`` is the training matrix, ``aux`` what the model's ``prepare``
  returned (None without one); the order is a function of (seed, epoch) alone,
  so a resumed run sees the batches an uninterrupted one saw.

  A source may also have ``local_epoch(train, aux, batch_size, epoch, seed,
  window)``: the same batches cut to their rows ``window[0]..window[1]-1``,
  built without the rest.  A multi-process run asks each process for the
  window of rows its devices hold (`DenseRows` has it: each process densifies
  only its share of each batch); from a source without it, each process builds
  whole batches and places only its rows.
  """

  def epoch(self, train: sp.csr_matrix, aux: Any, batch_size: int, epoch: int,
            seed: int) -> tuple[int, Iterator[dict]]:
    ...


@dataclasses.dataclass(frozen=True)
class DenseRows:
  """The training rows as dense [B, n_items] blocks, shuffled each epoch.

  Yields {"rows": float32 [B, I], "mask": bool [B], "index": int32 [B]} (index:
  the training row, -1 on padding).  The autoencoders' default.
  """

  def epoch(self, train, aux, batch_size, epoch, seed):
    return self.local_epoch(train, aux, batch_size, epoch, seed, (0, batch_size))

  def local_epoch(self, train, aux, batch_size, epoch, seed, window: tuple[int, int]):
    """`epoch`'s batches cut to their rows ``window[0]..window[1]-1`` (see `BatchSource`)."""
    del aux
    order = shuffled_order(train.shape[0], seed, epoch)
    return n_batches(train.shape[0], batch_size), (
        {**rb._asdict(), "index": rb.index.astype(np.int32)}
        for rb in dense_row_batches(train, batch_size, order=order, window=window))


@dataclasses.dataclass(frozen=True)
class PaddedRows:
  """The training rows as padded item lists [B, L], each batch as wide as a power of two of its longest row.

  Yields {"items": int32 [B, L], "values": float32 [B, L], "mask": bool [B],
  "index": int32 [B]}.  The same loss as dense rows at O(nnz) memory (Mult-VAE's
  gather-sum first layer).  With `group_by_length` a batch holds rows of
  similar length (`length_grouped_order`): less padding, but batches are no
  longer uniformly random.
  """

  group_by_length: bool = False

  def epoch(self, train, aux, batch_size, epoch, seed):
    del aux
    if self.group_by_length:
      order = length_grouped_order(train, batch_size, seed, epoch)
    else:
      order = shuffled_order(train.shape[0], seed, epoch)
    return n_batches(train.shape[0], batch_size), (
        {**rb._asdict(), "index": rb.index.astype(np.int32)}
        for rb in padded_row_batches(train, batch_size, order=order, bucket_lengths=True))


@dataclasses.dataclass(frozen=True)
class ContentRows:
  """Items' content rows (``aux[key]``, items x words csr) as padded word lists, shuffled each epoch.

  Yields {"words": int32 [B, L], "values": float32 [B, L], "index": int32 [B]
  (item id, -1 on padding), "mask": bool [B]}, L the longest content row, so
  every batch of the run has one shape.  The hybrids' networks train on these.
  """

  key: str = "content"

  def epoch(self, train, aux, batch_size, epoch, seed):
    del train
    content = aux[self.key]
    order = shuffled_order(content.shape[0], seed, epoch)
    return n_batches(content.shape[0], batch_size), content_batches(content, batch_size, order)


def content_batches(content: sp.spmatrix, batch_size: int,
                    order: np.ndarray | None = None) -> Iterator[dict]:
  """Content rows as `ContentRows` yields them, in `order` (default: item order)."""
  for rb in padded_row_batches(content, batch_size, order=order):
    yield {"words": rb.items, "values": rb.values, "index": rb.index.astype(np.int32),
           "mask": rb.mask}


@dataclasses.dataclass(frozen=True)
class TimeRankedSequences:
  """Each training user's items in time order, decoded from rows of time ranks.

  The encoding is data protocol ``"strong-temporal-ordered"``'s
  (`recjax.data.temporal`): every training-row entry, and every fold-in entry a
  model is scored on, holds its item's 1-based time rank within the row (1 =
  the earliest).  Binary rows carry no order; `sequences` refuses them.

  `sequences(train)` decodes the rows once (the model's ``prepare``):
  {"items": int32 [U', L] left-aligned, oldest first, "lengths": int32 [U'],
  "rows": int64 [U'] training rows} for the rows with at least `min_length`
  items, each keeping its LAST `max_length` items, L = the longest kept
  sequence.  `epoch` reads that dict as ``aux`` and yields {"items": int32
  [B, L_b], "lengths": int32 [B] (0 on padding rows), "mask": bool [B],
  "index": int32 [B]}, L_b the smallest power of two (>= 8, <= L) holding the
  batch's longest sequence; with `group_by_length` sequences of similar length
  share a batch (`length_grouped_order`), otherwise batches are uniformly random.
  """

  PROTOCOL = "strong-temporal-ordered"  # The data protocol whose rows carry the ranks.
  max_length: int = 200
  group_by_length: bool = True
  min_length: int = 2

  def sequences(self, train: sp.spmatrix) -> dict[str, np.ndarray]:
    m = _canonical(train)
    m.sort_indices()
    n_u = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), n_u)
    order = np.lexsort((m.data, rows))
    rank = np.arange(m.nnz) - m.indptr[rows[order]] + 1
    if m.nnz and not np.array_equal(m.data[order], rank):
      bad = int(rows[order][np.flatnonzero(m.data[order] != rank)[0]])
      raise ValueError(
          f"each training row's values must be its items' time ranks 1..n (protocol "
          f"{self.PROTOCOL!r}); row {bad} holds {np.sort(m[bad].data)[:8].tolist()}...  "
          "Binary rows (protocol 'strong' or 'strong-temporal') carry no order")
    keep = np.flatnonzero(n_u >= self.min_length)
    if not len(keep):
      raise ValueError(f"no training row has {self.min_length} or more items")
    lengths = np.minimum(n_u[keep], self.max_length).astype(np.int32)
    items = np.zeros((len(keep), int(lengths.max())), np.int32)
    in_time_order = m.indices[order]
    for j, u in enumerate(keep):  # Host-side, once per run.
      seq = in_time_order[m.indptr[u]:m.indptr[u + 1]][-self.max_length:]
      items[j, :len(seq)] = seq
    return {"items": items, "lengths": lengths, "rows": keep.astype(np.int64)}

  def epoch(self, train, aux, batch_size, epoch, seed):
    del train
    lengths, n = aux["lengths"], len(aux["rows"])
    order = (length_grouped_order(lengths, batch_size, seed, epoch) if self.group_by_length
             else shuffled_order(n, seed, epoch))

    def batches():
      for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        width = _pow2_width(int(lengths[idx].max()), aux["items"].shape[1])
        out = {"items": np.zeros((batch_size, width), np.int32),
               "lengths": np.zeros(batch_size, np.int32), "mask": np.zeros(batch_size, bool),
               "index": np.full(batch_size, -1, np.int32)}
        out["items"][:len(idx)] = aux["items"][idx, :width]
        out["lengths"][:len(idx)] = lengths[idx]
        out["mask"][:len(idx)] = True
        out["index"][:len(idx)] = aux["rows"][idx]
        yield out

    return n_batches(n, batch_size), batches()

