"""Bytes to validated columns: what every reader in this package builds on.

A file is read in chunks of whole lines (`chunks`: CRLF, a byte-order mark and
trailing blank lines handled once, here), split into fields (`fixed_fields`,
`ws_tokens`) and converted column by column with bulk numpy operations
(`convert`, `check`), which raise `DataFormatError` at the first bad element
with its file and 1-based line.  Raw ids become dense indices (`index_ids`),
and ids that are used as indices directly are bounded before anything is
allocated by them (`check_raw_ids`, `check_raw_size`).
"""

from __future__ import annotations

import gzip
from typing import Callable, Iterator

import numpy as np

from recjax.data.types import DataFormatError

CHUNK_BYTES = 64 << 20  # bytes parsed at once; bounds the memory of Python token lists
_US = 0x1F  # ASCII unit separator: stands in for multi-byte delimiters such as '::'
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # exactly the bytes that bytes.split() splits on


def open_file(path):
  """`path` opened for binary reading, decompressed when it ends in .gz."""
  return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def chunks(path, chunk_bytes: int | None = None) -> Iterator[tuple[bytes, int]]:
  """Yields (body, first_line_index) of whole lines, without the final newline.

  CRLF becomes LF, a leading BOM is removed and blank lines at the very end of
  the file are dropped; blank lines elsewhere stay (and fail validation).
  """
  size = chunk_bytes or CHUNK_BYTES
  line0 = 0
  carry = b""
  first = True
  with open_file(path) as f:
    while True:
      block = f.read(size)
      if not block:
        return
      if not block.endswith(b"\n"):
        block += f.readline()
      if first:
        first = False
        if block.startswith(b"\xef\xbb\xbf"):
          block = block[3:]
      block = carry + block
      if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
      body = block.rstrip(b"\n")
      if not body:  # only blank lines so far: they count only if data follows
        carry = block
        continue
      ntrail = len(block) - len(body)
      carry = b"\n" * max(ntrail - 1, 0)
      yield body, line0
      line0 += body.count(b"\n") + 1


def read_body(path) -> bytes:
  """The whole file as one body (see `chunks`); b"" when it has no data."""
  return next((body for body, _ in chunks(path, -1)), b"")


def line_bounds(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Newline positions, line starts and line ends (exclusive) of a body."""
  nl = np.flatnonzero(arr == 10)
  starts = np.concatenate([[0], nl + 1])
  ends = np.concatenate([nl, [len(arr)]])
  return nl, starts, ends


def line_text(body: bytes, i: int, limit: int = 100) -> str:
  """Line i of body, quoted and shortened, for error messages."""
  arr = np.frombuffer(body, np.uint8)
  nl = np.flatnonzero(arr == 10)
  start = 0 if i == 0 else int(nl[i - 1]) + 1
  end = int(nl[i]) if i < len(nl) else len(body)
  text = body[start:end].decode("utf-8", "replace")
  if not text:
    return "an empty line"
  if len(text) > limit:
    text = text[:limit] + "..."
  return repr(text)


def token_text(x) -> str:
  """A token (bytes or number) for an error message."""
  if isinstance(x, (bytes, np.bytes_)):
    return repr(bytes(x).decode("utf-8", "replace"))
  return repr(x.item() if hasattr(x, "item") else x)


def first_failure(col: np.ndarray, dtype) -> int:
  """Index of the first element of `col` that does not convert to dtype."""
  lo, hi = 0, len(col)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    try:
      col[lo:mid].astype(dtype)
      lo = mid
    except (ValueError, OverflowError):
      hi = mid
  return lo


def convert(col: np.ndarray, dtype, path, where: Callable[[int], int], what: str) -> np.ndarray:
  """`col.astype(dtype)`, raising DataFormatError at the first bad element."""
  try:
    out = col.astype(dtype)
  except (ValueError, OverflowError):
    i = first_failure(col, dtype)
    raise DataFormatError(path, where(i), f"expected {what}; got {token_text(col[i])}") from None
  if np.issubdtype(out.dtype, np.floating):
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
      i = int(bad[0])
      raise DataFormatError(path, where(i), f"expected {what} (finite); got {token_text(col[i])}")
  return out


def check(mask_bad: np.ndarray, path, where: Callable[[int], int], message: Callable[[int], str]):
  """Raises DataFormatError at the first True of mask_bad."""
  bad = np.flatnonzero(mask_bad)
  if bad.size:
    i = int(bad[0])
    raise DataFormatError(path, where(i), message(i))


def fixed_fields(path, body: bytes, line0: int, delim: bytes | None, ncols: int,
                  expected: str) -> np.ndarray:
  """The fields of a body whose every line has exactly ncols fields: [n_lines, ncols] bytes."""
  if delim is None:
    counts, toks, _ = ws_tokens(body)
  else:
    if len(delim) > 1:
      if bytes([_US]) in body:
        raise DataFormatError(path, None, "expected no ASCII 0x1F bytes in the file")
      body_d = body.replace(delim, bytes([_US]))
      d = _US
    else:
      body_d, d = body, delim[0]
    arr = np.frombuffer(body_d, np.uint8)
    nl = np.flatnonzero(arr == 10)
    dpos = np.flatnonzero(arr == d)
    counts = np.bincount(np.searchsorted(nl, dpos), minlength=len(nl) + 1) + 1
    toks = None
  bad = np.flatnonzero(counts != ncols)
  if bad.size:
    i = int(bad[0])
    got = line_text(body, i)
    got = got if got == "an empty line" else f"{counts[i]} field(s): {got}"
    raise DataFormatError(path, line0 + i + 1, f"expected {expected}; got {got}")
  if toks is None:
    sep = bytes([d])
    toks = body_d.replace(b"\n", sep).split(sep)
  return np.array(toks, dtype=bytes).reshape(len(counts), ncols)


def ws_tokens(body: bytes) -> tuple[np.ndarray, list[bytes], np.ndarray]:
  """Whitespace tokens of a body: (tokens per line, tokens, line of each token)."""
  arr = np.frombuffer(body, np.uint8)
  sep = _WS[arr]
  nl = np.flatnonzero(arr == 10)
  starts = np.flatnonzero(~sep[1:] & sep[:-1]) + 1
  if len(arr) and not sep[0]:
    starts = np.concatenate([[0], starts])
  line_of = np.searchsorted(nl, starts)
  counts = np.bincount(line_of, minlength=len(nl) + 1)
  toks = body.split()
  assert len(toks) == len(starts), "token count mismatch"
  return counts, toks, line_of


def index_ids(raw: np.ndarray, *, strings: bool) -> tuple[np.ndarray, np.ndarray]:
  """Dense indices and raw ids: ints in numeric order, strings by first appearance."""
  if not strings:
    uniq, inv = np.unique(raw, return_inverse=True)
    return inv.astype(np.int64).reshape(-1), uniq.astype(np.int64)
  uniq, first, inv = np.unique(raw, return_index=True, return_inverse=True)
  order = np.argsort(first, kind="stable")
  rank = np.empty(len(order), dtype=np.int64)
  rank[order] = np.arange(len(order))
  return rank[inv.reshape(-1)], _decode(uniq[order])


def _decode(a: np.ndarray) -> np.ndarray:
  if a.dtype.kind != "S":
    return a
  if not len(a):
    return np.array([], dtype=str)
  return np.char.decode(a, "utf-8", "replace")


def check_raw_ids(raw: np.ndarray, n: int | None, path, where: Callable[[int], int],
               what: str) -> None:
  """Checks ids used as dense indices (0-based): non-negative and, when n is given, < n.

  Without n the id space is sized by the largest id: callers bound that with
  `check_raw_size` over all the ids of the file(s) before allocating.
  """
  check(raw < 0, path, where, lambda i: f"expected a non-negative {what} id; got {raw[i]}")
  if n is not None:
    check(raw >= n, path, where,
           lambda i: f"expected {'an' if what[0] in 'aeiou' else 'a'} {what} id in [0, {n}); "
           f"got {raw[i]}")


# Formats whose dense index is the raw id size their id space by the largest id when
# no count is given; that id may leave at most this many slots per distinct id (and
# any id below RAW_ID_FREE is fine), so a stray 10^18 is an error, not an allocation.
RAW_ID_FREE = 1 << 20
RAW_ID_SLOTS_PER_ID = 64


def _raw_size_ok(raw: np.ndarray) -> bool:
  if not raw.size:
    return True
  top = int(raw.max())
  return top < RAW_ID_FREE or top < RAW_ID_SLOTS_PER_ID * len(np.unique(raw))


def check_raw_size(raw: np.ndarray, locate: Callable[[int], tuple[object, int]], what: str,
                    hint: str = "") -> None:
  """DataFormatError at the largest id when 0-based raw ids would need a huge id space.

  locate(i) is the (file, 1-based line) of raw[i].
  """
  if _raw_size_ok(raw):
    return
  i = int(np.argmax(raw))
  k = len(np.unique(raw))
  raise DataFormatError(
      *locate(i), f"expected 0-based {what} ids (this format's dense index is the raw "
      f"id); got {what} id {int(raw[i])} while {k:,} distinct {what} id"
      f"{'' if k == 1 else 's'} occur: the id space would need {int(raw[i]) + 1:,} slots"
      + (f"; {hint}" if hint else ""))
