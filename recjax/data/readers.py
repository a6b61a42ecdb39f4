"""Readers for the raw recommender-data formats, validating every line.

Each reader parses a whole file (or 64 MiB chunks of it) with bulk numpy
operations and checks every line as it goes: a malformed line raises
`DataFormatError` naming the file, the 1-based line number and what was
expected there.  No line is skipped or dropped (a generic table's header line
names its columns; columns it does not name as user, item, rating, count or
timestamp are ignored, and the `notes` list says so).  Blank lines are allowed
only at the end of a file; CRLF line ends and a UTF-8 byte-order mark are
accepted.

Raw ids and dense indices:

* integer raw ids are numbered in increasing numeric order (dense index ``k`` is
  the k-th smallest raw id), so ``user_ids``/``item_ids`` are sorted;
* string raw ids are numbered in order of first appearance in the file(s);
* formats whose ids are already dense and 0-based (citeulike ``n i1 ... in``
  files, LDA-C, LightGCN lists read with ``ids="raw"``) keep dense index == raw
  id, and ids that never occur still get their slot up to the known count.

This module imports only numpy, scipy and the standard library.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from recjax.data.types import DataFormatError, DuplicateRule, Interactions

__all__ = [
    "read_movielens", "read_ml100k", "read_ml_dat", "read_ml_csv", "read_netflix",
    "read_msd_triplets", "read_counted_lists", "read_lda_c", "read_text_lines",
    "read_vocabulary", "read_citeulike_splits", "read_interactions", "read_user_lines",
    "merge_interactions", "sniff_format", "ML_CSV_HEADER",
]

CHUNK_BYTES = 64 << 20  # bytes parsed at once; bounds the memory of Python token lists
ML_CSV_HEADER = b"userId,movieId,rating,timestamp"
_US = 0x1F  # ASCII unit separator: stands in for multi-byte delimiters such as '::'
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # exactly the bytes that bytes.split() splits on
_DELIM_NAMES = {b"\t": "tab", b",": "comma", b"::": "'::'", b";": "';'", None: "whitespace"}


# ---------------------------------------------------------------------------
# Low-level helpers: chunks, lines, tokens, conversion with exact error lines.
# ---------------------------------------------------------------------------


def _open(path):
  return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def _chunks(path, chunk_bytes: int | None = None) -> Iterator[tuple[bytes, int]]:
  """Yields (body, first_line_index) of whole lines, without the final newline.

  CRLF becomes LF, a leading BOM is removed and blank lines at the very end of
  the file are dropped; blank lines elsewhere stay (and fail validation).
  """
  size = chunk_bytes or CHUNK_BYTES
  line0 = 0
  carry = b""
  first = True
  with _open(path) as f:
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


def _read_body(path) -> bytes:
  """The whole file as one body (see `_chunks`); b"" when it has no data."""
  return next((body for body, _ in _chunks(path, -1)), b"")


def _line_bounds(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Newline positions, line starts and line ends (exclusive) of a body."""
  nl = np.flatnonzero(arr == 10)
  starts = np.concatenate([[0], nl + 1])
  ends = np.concatenate([nl, [len(arr)]])
  return nl, starts, ends


def _line_text(body: bytes, i: int, limit: int = 100) -> str:
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


def _tok(x) -> str:
  """A token (bytes or number) for an error message."""
  if isinstance(x, (bytes, np.bytes_)):
    return repr(bytes(x).decode("utf-8", "replace"))
  return repr(x.item() if hasattr(x, "item") else x)


def _first_failure(col: np.ndarray, dtype) -> int:
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


def _convert(col: np.ndarray, dtype, path, where: Callable[[int], int], what: str) -> np.ndarray:
  """`col.astype(dtype)`, raising DataFormatError at the first bad element."""
  try:
    out = col.astype(dtype)
  except (ValueError, OverflowError):
    i = _first_failure(col, dtype)
    raise DataFormatError(path, where(i), f"expected {what}; got {_tok(col[i])}") from None
  if np.issubdtype(out.dtype, np.floating):
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
      i = int(bad[0])
      raise DataFormatError(path, where(i), f"expected {what} (finite); got {_tok(col[i])}")
  return out


def _check(mask_bad: np.ndarray, path, where: Callable[[int], int], message: Callable[[int], str]):
  """Raises DataFormatError at the first True of mask_bad."""
  bad = np.flatnonzero(mask_bad)
  if bad.size:
    i = int(bad[0])
    raise DataFormatError(path, where(i), message(i))


def _fixed_fields(path, body: bytes, line0: int, delim: bytes | None, ncols: int,
                  expected: str) -> np.ndarray:
  """The fields of a body whose every line has exactly ncols fields: [n_lines, ncols] bytes."""
  if delim is None:
    counts, toks, _ = _ws_tokens(body)
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
    got = _line_text(body, i)
    got = got if got == "an empty line" else f"{counts[i]} field(s): {got}"
    raise DataFormatError(path, line0 + i + 1, f"expected {expected}; got {got}")
  if toks is None:
    sep = bytes([d])
    toks = body_d.replace(b"\n", sep).split(sep)
  return np.array(toks, dtype=bytes).reshape(len(counts), ncols)


def _ws_tokens(body: bytes) -> tuple[np.ndarray, list[bytes], np.ndarray]:
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


def _index_ids(raw: np.ndarray, *, strings: bool) -> tuple[np.ndarray, np.ndarray]:
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


def _raw_index(raw: np.ndarray, n: int | None, path, where: Callable[[int], int],
               what: str) -> None:
  """Checks ids used as dense indices (0-based): non-negative and, when n is given, < n.

  Without n the id space is sized by the largest id: callers bound that with
  `_check_raw_size` over all the ids of the file(s) before allocating.
  """
  _check(raw < 0, path, where, lambda i: f"expected a non-negative {what} id; got {raw[i]}")
  if n is not None:
    _check(raw >= n, path, where,
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


def _check_raw_size(raw: np.ndarray, locate: Callable[[int], tuple[object, int]], what: str,
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


# ---------------------------------------------------------------------------
# Rating tables: MovieLens, MSD triplets, generic "user item [rating] [time]".
# ---------------------------------------------------------------------------

# Column names a generic table's header may use, compared in lower case with
# everything but letters and digits removed ("user_id", "userID", "User Id" ->
# "userid").  `_SHOWN` is what error messages list.
_COLUMN_NAMES: dict[str, frozenset[str]] = {
    "user": frozenset({
        "user", "users", "userid", "useridx", "userindex", "uid", "u", "customer",
        "customerid", "custid", "client", "clientid", "member", "memberid", "visitor",
        "visitorid", "reviewer", "reviewerid", "person", "personid", "account", "accountid",
        "viewer", "viewerid", "listener", "listenerid", "reader", "readerid", "buyer",
        "buyerid", "subscriber", "subscriberid", "session", "sessionid"}),
    "item": frozenset({
        "item", "items", "itemid", "itemidx", "itemindex", "iid", "i", "movie", "movieid",
        "film", "filmid", "artist", "artistid", "song", "songid", "track", "trackid", "product",
        "productid", "asin", "sku", "book", "bookid", "isbn", "business", "businessid", "venue",
        "venueid", "location", "locationid", "poi", "poiid", "place", "placeid", "article",
        "articleid", "news", "newsid", "doc", "docid", "document", "documentid", "paper",
        "paperid", "video", "videoid", "anime", "animeid", "game", "gameid", "recipe",
        "recipeid", "restaurant", "restaurantid", "hotel", "hotelid", "course", "courseid",
        "app", "appid", "page", "pageid", "post", "postid", "content", "contentid", "object",
        "objectid", "show", "showid", "episode", "episodeid", "album", "albumid", "beer",
        "beerid", "joke", "jokeid"}),
    "rating": frozenset({"rating", "ratings", "score", "scores", "stars", "star", "rate",
                         "grade"}),
    "count": frozenset({
        "count", "counts", "cnt", "plays", "playcount", "playcounts", "play", "listens",
        "listencount", "weight", "weights", "clicks", "click", "clickcount", "frequency",
        "freq", "n", "views", "viewcount", "visits", "visitcount", "quantity", "qty",
        "purchases"}),
    "timestamp": frozenset({"timestamp", "timestamps", "time", "ts", "date", "datetime",
                            "unixtime", "unixtimestamp", "epoch", "createdat", "eventtime"}),
}
_SHOWN = {
    "user": "user, userId, user_id, uid, userID, customer, customer_id, member, visitor, "
            "reviewerID, session...",
    "item": "item, itemId, item_id, iid, movieId, artistID, song, track, product, asin, "
            "book, business, venue, article, video...",
    "rating": "rating, score, stars",
    "count": "count, plays, playcount, play_count, weight, clicks, frequency, n",
    "timestamp": "timestamp, time, ts, date, datetime",
}
VALUES = ("auto", "counts", "ratings")
_ISO_RE = re.compile(rb"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
                     rb"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?$")
_ISO_WHAT = ("an integer timestamp or an ISO-8601 date/time (2024-05-01, 2024-05-01T12:30:00, "
             "optionally with Z or an offset such as +02:00)")


def _column_name(tok: bytes) -> str:
  return tok.strip().strip(b"\"'").decode("utf-8", "replace").strip()


def _role_of(name: str) -> str | None:
  key = re.sub(r"[^0-9a-z]", "", name.lower())
  for role, names in _COLUMN_NAMES.items():
    if key in names:
      return role
  return None


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Where a table's fields are: delimiter, fields per line, header lines, columns.

  value_kind: "float" (a rating), "count" (a positive integer: MSD play counts)
  or "weight" (a positive number: a generic count column).
  """

  delim: bytes | None
  ncols: int
  skip: int
  user: int = 0
  item: int = 1
  value: int | None = None
  value_kind: str = "float"
  time: int | None = None
  iso_time: bool = False  # Timestamps may be ISO-8601 dates/times (generic tables).
  names: tuple[str, ...] | None = None  # Header names; None: columns by position.

  def column(self, k: int) -> str:
    return repr(self.names[k]) if self.names else f"column {k + 1}"


def _read_table(path, *, delim: bytes | None, ncols: int | None, header, ids: str,
                value_kind: str, rule: DuplicateRule | None, name: str | None,
                chunk_bytes: int | None = None, values: str = "auto",
                notes: list[str] | None = None) -> Interactions:
  """Shared table reader.

  Args:
    delim: field separator, None for runs of whitespace, "auto" to detect.
    ncols: fields per line (2, 3 or 4), None for a generic table: columns by
      header names when the first line is a header, else by position (2-4).
    header: bytes (the exact first line required), True/False, or None to detect.
    ids: "int" (ids must be integers), "str" (kept as strings) or "auto".
    value_kind: "float" (a rating) or "count" (a positive integer), for ncols given.
    rule: duplicate rule; None means "last" with a rating column, else "sum".
    values: generic tables: "auto" (by header name; a positional third column
      is a rating), "counts" or "ratings" (the value column read as such).
    notes: generic tables: what the reader decided is appended here.
  """
  users, items, vals, times = [], [], [], []
  first_data_line = None
  lay = None
  own_notes: list[str] = []
  n_iso = 0
  for body, line0 in _chunks(path, chunk_bytes):
    if lay is None:
      lay = _table_format(path, body, delim, ncols, header, values, value_kind, own_notes)
      if lay.skip:  # skip the header line
        nl = body.find(b"\n")
        body = body[nl + 1:] if nl >= 0 else b""
        line0 += 1
        if not body:
          continue
    if first_data_line is None:
      first_data_line = line0 + 1
    if lay.names is not None:
      shown = " ".join(lay.names)
    else:
      roles = ["user", "item"] + (["count" if lay.value_kind == "weight" else "rating"]
                                  if lay.value is not None else []) + (
                                      ["timestamp"] if lay.time is not None else [])
      shown = " ".join(roles)
    sep_name = _DELIM_NAMES.get(lay.delim) or repr(lay.delim.decode("utf-8", "replace"))
    expected = f"{lay.ncols} {sep_name}-separated fields ({shown})"
    f = _fixed_fields(path, body, line0, lay.delim, lay.ncols, expected)
    where = lambda i, l0=line0: l0 + i + 1
    users.append(f[:, lay.user])
    items.append(f[:, lay.item])
    if lay.value is not None:
      col, what = f[:, lay.value], lay.column(lay.value)
      if lay.value_kind == "count":
        v = _convert(col, np.int64, path, where, "a positive integer count")
        _check(v < 1, path, where, lambda i: f"expected a positive integer count; got {v[i]}")
      elif lay.value_kind == "weight":
        v = _convert(col, np.float64, path, where, f"a positive count ({what})")
        _check(~(v > 0), path, where,
               lambda i: f"expected a positive count ({what}); got {_tok(col[i])}")
      else:
        v = _convert(col, np.float64, path, where, "a numeric rating")
      vals.append(v.astype(np.float32))
    if lay.time is not None:
      if lay.iso_time:
        t, k = _timestamps(f[:, lay.time], path, where)
        n_iso += k
      else:
        t = _convert(f[:, lay.time], np.int64, path, where, "an integer timestamp")
      times.append(t)
  if first_data_line is None:  # no data lines
    u = np.zeros(0, dtype=bytes)
    users, items = [u], [u]
    first_data_line = 1
  where = lambda i: first_data_line + i
  u_raw = np.concatenate(users)
  i_raw = np.concatenate(items)
  n = len(u_raw)
  cols = []
  for raw, what in ((u_raw, "user"), (i_raw, "item")):
    if ids == "str":
      cols.append(_index_ids(raw, strings=True))
    elif ids == "int":
      cols.append(_index_ids(_convert(raw, np.int64, path, where, f"an integer {what} id"),
                             strings=False))
    else:
      try:
        as_int = raw.astype(np.int64)
      except (ValueError, OverflowError):
        cols.append(_index_ids(raw, strings=True))
      else:
        cols.append(_index_ids(as_int, strings=False))
  (uu, user_ids), (ii, item_ids) = cols
  has_value = bool(vals)
  v = np.concatenate(vals) if has_value else np.ones(n, dtype=np.float32)
  ts = np.concatenate(times) if times else None
  if rule is None:
    rule = "last" if has_value and lay.value_kind == "float" else "sum"
  if lay is not None and lay.time is not None and n_iso:
    own_notes.append(f"timestamp column {lay.column(lay.time)}: {n_iso:,} ISO-8601 dates/times "
                     "converted to int64 epoch seconds (UTC where no offset is given)")
  if (ncols is None and lay is not None and lay.names is None and values == "auto"
      and has_value and n and (v.max() > 10 or v.min() < 0)):
    own_notes.append(
        f"column {lay.value + 1} read as ratings (no header names it); its values span "
        f"{v.min():g}..{v.max():g}, unusual for ratings: if they are counts (plays, clicks), "
        "load with values='counts'")
  if notes is not None:
    label = Path(path).name
    notes.extend(f"{label}: {s}" for s in own_notes)
  return Interactions(users=uu, items=ii, values=v, timestamps=ts, user_ids=user_ids,
                      item_ids=item_ids, duplicate_rule=rule, name=name or str(path))


def _timestamps(col: np.ndarray, path, where: Callable[[int], int]) -> tuple[np.ndarray, int]:
  """Integer or ISO-8601 timestamps -> int64 epoch seconds, and how many were ISO."""
  try:
    return col.astype(np.int64), 0
  except (ValueError, OverflowError):
    pass
  uniq, inv = np.unique(col, return_inverse=True)
  out = np.empty(len(uniq), np.int64)
  ok = np.ones(len(uniq), bool)
  iso = np.zeros(len(uniq), bool)
  for k, tok in enumerate(uniq.tolist()):
    try:
      out[k] = int(tok)
      continue
    except (ValueError, OverflowError):
      pass
    tok = tok.strip()
    if not _ISO_RE.match(tok):
      ok[k] = False
      continue
    text = tok.decode("ascii")
    if text[-1] in "Zz":
      text = text[:-1] + "+00:00"
    try:
      dt = datetime.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:  # e.g. month 13
      ok[k] = False
      continue
    if dt.tzinfo is None:
      dt = dt.replace(tzinfo=datetime.timezone.utc)
    out[k] = math.floor(dt.timestamp())
    iso[k] = True
  inv = inv.reshape(-1)
  _check(~ok[inv], path, where, lambda i: f"expected {_ISO_WHAT}; got {_tok(col[i])}")
  return out[inv], int(iso[inv].sum())


def _is_number(tok: bytes) -> bool:
  try:
    float(tok)
    return True
  except ValueError:
    return False


def _is_value(tok: bytes) -> bool:
  """A number or an ISO-8601 date: a data field, not a column name."""
  return _is_number(tok) or bool(_ISO_RE.match(tok.strip()))


def _split(line: bytes, delim: bytes | None) -> list[bytes]:
  return line.split() if delim is None else line.split(delim)


def _detect_delimiter(lines: list[bytes]) -> bytes | None:
  """The first of tab, '::', comma, ';', whitespace that splits every sample line alike."""
  for d in (b"\t", b"::", b",", b";", None):
    if d is not None and d not in lines[0]:
      continue
    counts = {len(_split(l, d)) for l in lines}
    if len(counts) == 1 and counts.pop() >= 2:
      return d
  return b""  # nothing fits


def _looks_like_header(first: list[bytes], second: list[bytes]) -> bool:
  """Whether a generic table's first line (split into fields) is a header."""
  if any(_role_of(_column_name(t)) for t in first) and not any(_is_value(t) for t in first):
    return True  # Names a known column and holds no number or date.
  if len(first) >= 3 and not all(_is_value(t) for t in first[2:]):
    return True  # Rating/timestamp fields that are not values.
  return (not any(_is_number(t) for t in first[:2]) and len(second) == len(first)
          and any(_is_number(t) for t in second[:2]))


class _HeaderError(DataFormatError):
  """A header whose user or item column is not identified; `short` says why in a few words."""

  def __init__(self, path, message: str, short: str):
    super().__init__(path, 1, message)
    self.short = short


def _header_layout(path, fields: list[bytes], values: str, forced: bool,
                   notes: list[str]) -> dict | None:
  """Column indices from a header line; None when forced and not recognised (by position)."""
  names = [_column_name(t) for t in fields]
  roles = [_role_of(n) for n in names]
  where: dict[str, list[int]] = {r: [k for k, x in enumerate(roles) if x == r]
                                 for r in _COLUMN_NAMES}
  shown_cols = ", ".join(repr(n) for n in names)
  missing = [r for r in ("user", "item") if not where[r]]
  if missing:
    if forced:
      notes.append(f"header line ({shown_cols}) skipped; it names no "
                   f"{' and no '.join(missing)} column, so columns are taken by position "
                   "(user item [rating] [timestamp])")
      return None
    what = " and no ".join(missing)
    raise _HeaderError(
        path, f"expected a header naming a user column ({_SHOWN['user']}) and an item column "
        f"({_SHOWN['item']}), in any order and case, and optionally rating "
        f"({_SHOWN['rating']}), count ({_SHOWN['count']}) and timestamp "
        f"({_SHOWN['timestamp']}) columns; got columns {shown_cols}: no {what} column",
        f"its header ({shown_cols}) names no {what} column")
  for r in ("user", "item"):
    if len(where[r]) > 1:
      a, b = (names[k] for k in where[r][:2])
      raise DataFormatError(path, 1, f"expected one {r} column; columns {a!r} and {b!r} both "
                            f"name the {r}")
  rating, count, time = where["rating"], where["count"], where["timestamp"]
  value, kind = None, "float"
  if values == "counts":
    if count or rating:
      value, kind = (count or rating)[0], "weight"
  elif values == "ratings":
    if not (rating or count):
      raise DataFormatError(path, 1, f"expected a rating column ({_SHOWN['rating']}) with "
                            f"values='ratings'; got columns {shown_cols}")
    value = (rating or count)[0]
  elif rating:
    value = rating[0]
  elif count:
    value, kind = count[0], "weight"
  t = time[0] if time else None
  used = {where["user"][0]: "user", where["item"][0]: "item"}
  if value is not None:
    used[value] = "rating" if kind == "float" else "count"
  if t is not None:
    used[t] = "timestamp"
  notes.append("header maps columns: " + ", ".join(f"{names[k]} -> {used[k]}"
                                                   for k in sorted(used)))
  ignored = [k for k in range(len(names)) if k not in used]
  if ignored:
    why = []
    for k in ignored:
      if roles[k] in ("rating", "count") and value is not None:
        why.append(f"{names[k]} (a second value column; values='counts' or 'ratings' "
                   "chooses which one is read)")
      elif roles[k] is not None:
        why.append(f"{names[k]} (a second {roles[k]} column)")
      else:
        why.append(names[k])
    notes.append(f"columns ignored: {', '.join(why)}")
  if value is not None:
    role_name = roles[value]
    if kind == "weight":
      forced = " (values='counts')" if role_name != "count" else ""
      notes.append(f"count column {names[value]!r}{forced}: implicit feedback; duplicate "
                   "(user, item) pairs are summed and no rating threshold applies")
    elif role_name != "rating":
      notes.append(f"column {names[value]!r} read as ratings (values='ratings'): explicit "
                   "feedback, the latest rating of a repeated (user, item) pair is kept")
  return dict(user=where["user"][0], item=where["item"][0], value=value, value_kind=kind,
              time=t, names=tuple(names))


def _table_format(path, body: bytes, delim, ncols, header, values: str = "auto",
                  value_kind: str = "float", notes: list[str] | None = None) -> _Layout:
  """The layout of a table from the first lines of a file (see `_read_table`)."""
  notes = [] if notes is None else notes
  generic = ncols is None
  lines = body.split(b"\n", 21)[:21]
  if isinstance(header, bytes):
    if lines[0] != header:
      raise DataFormatError(
          path, 1, f"expected the header {_tok(header)}; got {_line_text(body, 0)}")
    sample, skip = lines[1:], 1
  else:
    sample, skip = lines, 0
  if delim == "auto":
    probe = sample[1:] if (header in (None, True) and len(sample) > 1) else sample
    probe = [l for l in probe if l.strip()] or sample[:1]
    delim = _detect_delimiter(probe)
    if delim == b"":
      raise DataFormatError(
          path, skip + 1, "expected 2-4 fields separated by tab, '::', comma, ';' or whitespace, "
          f"the same number on every line; got {_line_text(body, skip)}")
  first = _split(lines[0], delim)
  if header is None:
    second = _split(lines[1], delim) if len(lines) > 1 else []
    if _looks_like_header(first, second):
      skip = 1
  elif header is True:
    skip = 1
  cols = None
  if generic and skip == 1 and not isinstance(header, bytes):
    cols = _header_layout(path, first, values, header is True, notes)
  if cols is not None:
    if len(first) < 2:
      raise DataFormatError(path, 1, "expected at least 2 columns (user, item); got "
                            f"{_line_text(body, 0)}")
    return _Layout(delim, len(first), skip, iso_time=True, **cols)
  if ncols is None:
    if skip >= len(lines) or not lines[skip]:
      ncols = 2
    else:
      ncols = len(_split(lines[skip], delim))
      if not 2 <= ncols <= 4:
        raise DataFormatError(
            path, skip + 1, "expected 2-4 fields (user item [rating] [timestamp]); "
            f"got {ncols} field(s): {_line_text(body, skip)}")
  value = 2 if ncols >= 3 else None
  if generic:
    value_kind = "weight" if values == "counts" else "float"
    if values == "counts":
      notes.append("column 3 read as counts (values='counts'): implicit feedback; duplicate "
                   "(user, item) pairs are summed and no rating threshold applies"
                   if value is not None else
                   "no value column: every line counts 1 (values='counts'); duplicate "
                   "(user, item) pairs are summed")
    elif values == "ratings" and value is None:
      raise DataFormatError(path, skip + 1, "expected a third (rating) column with "
                            f"values='ratings'; got {_line_text(body, skip)}")
  return _Layout(delim, ncols, skip, value=value, value_kind=value_kind,
                 time=3 if ncols == 4 else None, iso_time=generic)


def read_ml100k(path) -> Interactions:
  """MovieLens 100K `u.data`: tab-separated `user item rating timestamp`, no header."""
  return _read_table(path, delim=b"\t", ncols=4, header=False, ids="int", value_kind="float",
                     rule="last", name=None)


def read_ml_dat(path) -> Interactions:
  """MovieLens 1M/10M `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, no header."""
  return _read_table(path, delim=b"::", ncols=4, header=False, ids="int", value_kind="float",
                     rule="last", name=None)


def read_ml_csv(path) -> Interactions:
  """MovieLens 20M/25M/latest `ratings.csv`, header `userId,movieId,rating,timestamp`."""
  return _read_table(path, delim=b",", ncols=4, header=ML_CSV_HEADER, ids="int",
                     value_kind="float", rule="last", name=None)


def read_movielens(path) -> Interactions:
  """Any MovieLens ratings file, or a release folder holding one (chosen by file name)."""
  p = Path(path)
  if p.is_dir():
    for fname in ("u.data", "ratings.dat", "ratings.csv"):
      if (p / fname).is_file():
        p = p / fname
        break
    else:
      raise FileNotFoundError(f"{p}: no u.data, ratings.dat or ratings.csv in this folder")
  name = p.name.removesuffix(".gz")
  if name.endswith(".data"):
    return read_ml100k(p)
  if name.endswith(".dat"):
    return read_ml_dat(p)
  if name.endswith(".csv"):
    return read_ml_csv(p)
  raise ValueError(f"{p}: not a MovieLens ratings file (u.data, ratings.dat or ratings.csv)")


def read_msd_triplets(path) -> Interactions:
  """MSD Echo Nest taste profile `train_triplets.txt`: `user<TAB>song<TAB>playcount`.

  String ids, numbered by first appearance; values are play counts ("sum").
  """
  return _read_table(path, delim=b"\t", ncols=3, header=False, ids="str", value_kind="count",
                     rule="sum", name=None)


def read_interactions(path, delimiter: str | None = "auto", header: bool | None = None,
                      ids: str = "auto", duplicate_rule: DuplicateRule | None = None, *,
                      values: str = "auto", notes: list[str] | None = None) -> Interactions:
  """A generic table of interactions: columns named by a header, or `user item [rating] [timestamp]`.

  A first line that is a header maps the columns by name, in any order and
  case (`_COLUMN_NAMES`): user (user, userId, user_id, uid, customer...), item
  (item, itemId, movieId, artistID, song, track, product...), rating (rating,
  score, stars), count (count, plays, playcount, weight, clicks, frequency, n)
  and timestamp (timestamp, time, ts, date, datetime).  Other columns are
  ignored (with a note); a header without a user or an item column is a
  DataFormatError at line 1 that lists the accepted names.  Without a header
  the columns are positional: `user item [rating] [timestamp]`.

  A count column makes the data implicit feedback: values are the counts
  (positive numbers), duplicate (user, item) pairs are summed ("sum" rule).
  A rating column is explicit feedback ("last" rule).  Timestamps are integers
  or ISO-8601 dates/times (2024-05-01, 2024-05-01T12:30:00, with Z or an
  offset; UTC without one), converted to int64 epoch seconds.

  Args:
    path: the file (may be .gz).
    delimiter: "auto" detects tab, "::", ",", ";" or whitespace (tried in that
      order); None means runs of whitespace; any other string is used as given.
    header: None detects a header line (a first line that names a known column
      and holds no number, or whose rating/timestamp fields are not numbers or
      dates); True/False force it (a forced header whose names are not
      recognised is skipped and the columns are taken by position).
    ids: "auto" keeps a column as integers when every id in it is an integer,
      else as strings; "int" requires integers; "str" keeps strings.
    duplicate_rule: default "last" with a rating column, "sum" otherwise.
    values: "auto" (a column named as a count is counts, anything else a
      rating), "counts" (the value column -- count, rating or the positional
      third -- holds counts: implicit) or "ratings" (it holds ratings: explicit).
    notes: when given, one line per decision the reader made (columns mapped by
      the header, ignored columns, ISO timestamps converted, a count column) is
      appended to it, each starting with the file name.
  """
  if values not in VALUES:
    raise ValueError(f"values must be one of {', '.join(VALUES)}; got {values!r}")
  if delimiter not in ("auto", None):
    delimiter = delimiter.encode() if isinstance(delimiter, str) else delimiter
  return _read_table(path, delim=delimiter, ncols=None, header=header, ids=ids,
                     value_kind="float", rule=duplicate_rule, name=None, values=values,
                     notes=notes)


# ---------------------------------------------------------------------------
# Netflix Prize.
# ---------------------------------------------------------------------------

_NETFLIX_RATING = "'CustomerID,Rating,YYYY-MM-DD' or a 'MovieID:' header"


def _netflix_block(body: bytes, origins: list[tuple[Path, int, int]], carry: int | None):
  """Parses concatenated Netflix lines; origins = (file, first block line, its file line index)."""
  block_starts = np.array([o[1] for o in origins])

  def where(i: int) -> tuple[Path, int]:
    k = int(np.searchsorted(block_starts, i, side="right")) - 1
    path, b0, f0 = origins[k]
    return path, f0 + (i - b0) + 1

  def fail(i: int, message: str):
    path, line = where(i)
    raise DataFormatError(path, line, message)

  arr = np.frombuffer(body, np.uint8)
  nl, starts, ends = _line_bounds(arr)
  n_lines = len(starts)
  commas = np.bincount(np.searchsorted(nl, np.flatnonzero(arr == 44)), minlength=n_lines)
  nonempty = ends > starts
  last = arr[np.maximum(ends - 1, 0)] if len(arr) else np.zeros(n_lines, np.uint8)
  is_hdr = (commas == 0) & nonempty & (last == ord(":"))
  is_rating = commas == 2
  bad = np.flatnonzero(~(is_hdr | is_rating))
  if bad.size:
    i = int(bad[0])
    fail(i, f"expected {_NETFLIX_RATING}; got {_line_text(body, i)}")
  for path, b0, f0 in origins:
    if f0 == 0 and not is_hdr[b0]:
      fail(b0, f"expected a 'MovieID:' header as the first line; got {_line_text(body, b0)}")
  toks = np.array(body.replace(b"\n", b",").split(b","), dtype=bytes)
  tok0 = np.cumsum(commas + 1) - (commas + 1)
  hdr_lines = np.flatnonzero(is_hdr)
  hdr_tok = np.array([t[:-1] for t in toks[tok0[hdr_lines]].tolist()], dtype=bytes)
  try:
    hdr_movie = hdr_tok.astype(np.int64)
  except (ValueError, OverflowError):
    j = _first_failure(hdr_tok, np.int64)
    fail(int(hdr_lines[j]), f"expected a 'MovieID:' header with an integer id; got "
         f"{_line_text(body, int(hdr_lines[j]))}")
  movie_of_line = np.full(n_lines, -1, dtype=np.int64)
  movie_of_line[hdr_lines] = np.arange(len(hdr_lines))
  movie_of_line = np.maximum.accumulate(movie_of_line)
  r_lines = np.flatnonzero(is_rating)
  pos = movie_of_line[r_lines]
  if (pos < 0).any() and carry is None:
    fail(int(r_lines[0]), "expected a 'MovieID:' header before the first rating line")
  movies = np.where(pos >= 0, hdr_movie[np.maximum(pos, 0)] if len(hdr_movie) else 0,
                    carry if carry is not None else 0)
  t = tok0[r_lines]

  def conv(col, dtype, what):
    try:
      return col.astype(dtype)
    except (ValueError, OverflowError):
      j = _first_failure(col, dtype)
      line = int(r_lines[j])
      fail(line, f"expected {what}; got {_tok(col[j])} in {_line_text(body, line)}")

  customers = conv(toks[t], np.int64, "an integer CustomerID")
  ratings = conv(toks[t + 1], np.float64, "a numeric rating")
  bad = np.flatnonzero(~np.isfinite(ratings))
  if bad.size:
    line = int(r_lines[bad[0]])
    fail(line, f"expected a finite rating; got {_line_text(body, line)}")
  dates = toks[t + 2]
  if dates.size:
    v = dates.view(np.uint8).reshape(len(dates), dates.itemsize)
    ok = (v != 0).sum(1) == 10
    if dates.itemsize >= 10:
      ok &= (v[:, 4] == 45) & (v[:, 7] == 45)
    else:
      ok[:] = False
    bad = np.flatnonzero(~ok)
    if bad.size:
      fail(int(r_lines[bad[0]]), f"expected a YYYY-MM-DD date; got {_tok(dates[bad[0]])}")
  days = conv(dates, "datetime64[D]", "a YYYY-MM-DD date").astype(np.int64)
  new_carry = int(hdr_movie[-1]) if len(hdr_movie) else carry
  return movies, customers, ratings.astype(np.float32), days * 86400, new_carry


def read_netflix(path) -> Interactions:
  """Netflix Prize ratings, as Interactions (users = customers, items = movies).

  Accepts the `training_set/` folder of `mv_XXXXXXX.txt` files (or the folder
  above it), a folder of `combined_data_*.txt` files, or one such file.  Every
  `mv_` file must start with its `MovieID:` line.  Dates become unix seconds
  (midnight UTC); duplicate_rule "last".
  """
  p = Path(path)
  if p.is_dir():
    if (p / "training_set").is_dir():
      p = p / "training_set"
    files = sorted(p.glob("mv_*.txt")) or sorted(p.glob("combined_data_*.txt"))
    if not files:
      raise FileNotFoundError(f"{p}: no mv_*.txt or combined_data_*.txt files")
  else:
    files = [p]
  movies, customers, ratings, times = [], [], [], []

  def add(out):
    for lst, x in zip((movies, customers, ratings, times), out[:4]):
      lst.append(x)

  batch, origins, n_batch, size = [], [], 0, 0
  for f in files:
    if f.name.startswith("mv_"):
      body = _read_body(f)
      if not body:
        raise DataFormatError(f, 1, "expected a 'MovieID:' header; got an empty file")
      origins.append((f, n_batch, 0))
      batch.append(body)
      n_batch += body.count(b"\n") + 1
      size += len(body)
      if size >= CHUNK_BYTES:
        add(_netflix_block(b"\n".join(batch), origins, None))
        batch, origins, n_batch, size = [], [], 0, 0
    else:
      carry = None
      for body, line0 in _chunks(f):
        out = _netflix_block(body, [(f, 0, line0)], carry)
        carry = out[4]
        add(out)
  if batch:
    add(_netflix_block(b"\n".join(batch), origins, None))
  cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)
  uu, user_ids = _index_ids(cat(customers, np.int64), strings=False)
  ii, item_ids = _index_ids(cat(movies, np.int64), strings=False)
  return Interactions(users=uu, items=ii, values=cat(ratings, np.float32),
                      timestamps=cat(times, np.int64), user_ids=user_ids, item_ids=item_ids,
                      duplicate_rule="last", name=str(path))


# ---------------------------------------------------------------------------
# citeulike: `n i1 ... in` lists, LDA-C mult.dat, vocabulary, titles, splits.
# ---------------------------------------------------------------------------


def _counted_rows(path, body: bytes, line0: int, what: str):
  """Rows of an `n x1 ... xn` body: (line index per element, elements as bytes, line counts)."""
  counts, toks, line_of = _ws_tokens(body)
  where = lambda i: line0 + i + 1
  _check(counts == 0, path, where, lambda i: f"expected '{what}'; got an empty line")
  toks = np.array(toks, dtype=bytes)
  first = np.cumsum(counts) - counts
  n_decl = _convert(toks[first], np.int64, path, where, f"'{what}' with an integer count n")
  _check(n_decl != counts - 1, path, where,
         lambda i: f"expected {n_decl[i]} entries after the count {n_decl[i]} ('{what}'); "
         f"got {counts[i] - 1}")
  is_elem = np.ones(len(toks), dtype=bool)
  is_elem[first] = False
  return line_of[is_elem], toks[is_elem], len(counts)


def read_counted_lists(path, n_rows: int | None = None, n_cols: int | None = None,
                       name: str | None = None) -> Interactions:
  """A citeulike-style `n i1 ... in` file: line u lists the n (0-based) items of user u.

  Users are the lines (dense index == raw id == line number - 1).  With n_cols
  (the known number of items, e.g. citeulike's) dense item index == raw id,
  and an item id >= n_cols is an error; without it the item ids that occur are
  numbered densely in numeric order (`item_ids` keeps the raw ids), so no
  array is sized by a raw id.  n_rows, when given, is the number of users
  (more lines is an error; users without a line get an empty row).  Item ids
  must be non-negative.  Values are 1.0, duplicate_rule "sum".
  """
  rows, cols = [], []
  n_lines = 0
  for body, line0 in _chunks(path):
    line_of, elems, n = _counted_rows(path, body, line0, "n i1 ... in")
    where = lambda i, l0=line0, lo=line_of: l0 + int(lo[i]) + 1
    ids = _convert(elems, np.int64, path, where, "an integer item id")
    _check(ids < 0, path, where, lambda i, v=ids: f"expected a non-negative item id; got {v[i]}")
    if n_cols is not None:
      _raw_index(ids, n_cols, path, where, "item")
    rows.append(line_of + line0)
    cols.append(ids)
    n_lines = line0 + n
  if n_rows is not None and n_lines > n_rows:
    raise DataFormatError(path, n_rows + 1,
                          f"expected at most {n_rows} lines (one per user); got {n_lines}")
  users = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  items = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  nu = n_rows if n_rows is not None else n_lines
  if n_cols is not None:
    item_ids = np.arange(n_cols, dtype=np.int64)
  else:
    items, item_ids = _index_ids(items, strings=False)
  return Interactions(users=users.astype(np.int64), items=items.astype(np.int64),
                      values=np.ones(len(users), np.float32), timestamps=None,
                      user_ids=np.arange(nu, dtype=np.int64), item_ids=item_ids,
                      duplicate_rule="sum", name=name or str(path))


def read_lda_c(path, n_words: int | None = None, n_docs: int | None = None) -> sp.csr_matrix:
  """An LDA-C file (`M w1:c1 ... wM:cM`, e.g. citeulike mult.dat) -> csr [docs x words].

  Line d is document d.  Checks that M matches the line, every token is
  `word:count` with 0 <= word < n_words and count >= 1, and (when n_docs is
  given) that there are exactly n_docs lines.  Repeated words in a line are summed.
  """
  rows, cols, vals = [], [], []
  n_lines = 0
  for body, line0 in _chunks(path):
    line_of, elems, n = _counted_rows(path, body, line0, "M w1:c1 ... wM:cM")
    n_lines = line0 + n
    where = lambda i, l0=line0, lo=line_of: l0 + int(lo[i]) + 1
    if elems.size:
      v = elems.view(np.uint8).reshape(len(elems), elems.itemsize)
      is_colon = v == ord(":")
      length = (v != 0).sum(1)
      colon_at = np.argmax(is_colon, axis=1)
      ok = (is_colon.sum(1) == 1) & (colon_at > 0) & (colon_at < length - 1)
      _check(~ok, path, where, lambda i: f"expected a 'word:count' token; got {_tok(elems[i])}")
      parts = b" ".join(elems.tolist()).replace(b":", b" ").split()
      parts = np.array(parts, dtype=bytes).reshape(-1, 2)
      w = _convert(parts[:, 0], np.int64, path, where, "an integer word id in 'word:count'")
      c = _convert(parts[:, 1], np.int64, path, where, "an integer count in 'word:count'")
      _check(c < 1, path, where,
             lambda i: f"expected a positive count in 'word:count'; got {_tok(elems[i])}")
      _check(w < 0, path, where, lambda i: f"expected a non-negative word id; got {_tok(elems[i])}")
      if n_words is not None:
        _check(w >= n_words, path, where,
               lambda i: f"expected a word id in [0, {n_words}) (the vocabulary size); "
               f"got {_tok(elems[i])}")
      rows.append(line_of + line0)
      cols.append(w)
      vals.append(c)
  if n_docs is not None and n_lines != n_docs:
    raise DataFormatError(path, n_docs + 1 if n_lines > n_docs else None,
                          f"expected {n_docs} documents (lines); got {n_lines}")
  r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  v = np.concatenate(vals) if vals else np.zeros(0, np.int64)
  if n_words is None:
    _check_raw_size(c, lambda i: (path, int(r[i]) + 1), "word",
                    "give the vocabulary (its size bounds the word ids)")
  nw = n_words if n_words is not None else (int(c.max()) + 1 if c.size else 0)
  nd = n_docs if n_docs is not None else n_lines
  m = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(nd, nw))
  m.sum_duplicates()
  m.sort_indices()
  return m


def read_text_lines(path, allow_empty: bool = True) -> list[str]:
  """UTF-8 text, one entry a line, split on '\\n' only (not on U+0085/U+2028...).

  A final newline ends the last line rather than starting an empty one; CRLF is
  accepted.  With allow_empty=False an empty line is a DataFormatError.
  """
  data = Path(path).read_bytes()
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise DataFormatError(path, line,
                          f"expected UTF-8 text; got byte {data[e.start]:#04x}") from None
  if text.endswith("\n"):
    text = text[:-1]
  lines = text.split("\n") if text else []
  lines = [l[:-1] if l.endswith("\r") else l for l in lines]
  if not allow_empty:
    for k, l in enumerate(lines):
      if not l:
        raise DataFormatError(path, k + 1, "expected one non-empty entry a line; got an empty line")
  return lines


def read_vocabulary(path, n_words: int | None = None) -> list[str]:
  """A vocabulary file: one word a line (word id = line number - 1), split on '\\n' only."""
  words = read_text_lines(path, allow_empty=False)
  if n_words is not None and len(words) != n_words:
    raise DataFormatError(path, None, f"expected {n_words} words; got {len(words)}")
  return words


_SPLIT_RE = re.compile(r"^cf-train-(\d+)-users\.dat$")


def read_citeulike_splits(folder, n_users: int, n_items: int
                          ) -> dict[str, tuple[Interactions, Interactions]]:
  """The CDL/CVAE `cf-{train,test}-P-users.dat` pairs of a folder -> {"P1": (train, test), ...}.

  Both sides share the id space of users.dat: n_users rows, n_items items.
  """
  folder = Path(folder)
  found = []
  for f in folder.glob("cf-train-*-users.dat"):
    m = _SPLIT_RE.match(f.name)
    if m:
      found.append((int(m.group(1)), f))
  splits = {}
  for p, train in sorted(found):
    test = folder / f"cf-test-{p}-users.dat"
    if not test.is_file():
      raise FileNotFoundError(f"{test}: missing test half of split P={p} (have {train})")
    splits[f"P{p}"] = tuple(read_counted_lists(f, n_users, n_items, name=f"{f.name}")
                            for f in (train, test))
  return splits


# ---------------------------------------------------------------------------
# One line per user: `uid i1 i2 ...` (LightGCN, S3-Rec).
# ---------------------------------------------------------------------------


def read_user_lines(paths, ids: str = "sorted", n_users: int | None = None,
                    n_items: int | None = None, name: str | None = None) -> Interactions:
  """One-line-per-user files (`uid i1 i2 ...`, integer ids), merged into one id space.

  Events keep line order (position = time order; no timestamps), files in the
  order given; a user with lines in several files (train/valid/test) is one
  user.  A line with only a uid is a user without events.  Values 1.0, "sum".

  Args:
    paths: one path or a list of paths.
    ids: "sorted" numbers raw ids in numeric order (S3-Rec's 1-based ids become
      0..n-1); "raw" keeps dense index == raw id (0-based LightGCN ids).
    n_users, n_items: with ids="raw", the known counts (ids must be below them;
      ids that never occur still get their slot).
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  if ids not in ("sorted", "raw"):
    raise ValueError(f"ids must be 'sorted' or 'raw', got {ids!r}")
  u_all, i_all = [], []
  for path in paths:
    for body, line0 in _chunks(path):
      counts, toks, line_of = _ws_tokens(body)
      where = lambda i, l0=line0: l0 + i + 1
      _check(counts == 0, path, where,
             lambda i: "expected 'uid item1 item2 ...'; got an empty line")
      toks = _convert(np.array(toks, dtype=bytes), np.int64, path,
                      lambda j, l0=line0, lo=line_of: l0 + int(lo[j]) + 1,
                      "an integer id ('uid item1 item2 ...')")
      first = np.cumsum(counts) - counts
      is_item = np.ones(len(toks), dtype=bool)
      is_item[first] = False
      u_all.append((path, line0, toks[first], np.arange(len(counts)),
                    toks[is_item], np.repeat(toks[first], counts - 1), line_of[is_item]))
  if ids == "raw":
    for path, line0, uid, ulines, item, _, ilines in u_all:
      _raw_index(uid, n_users, path, lambda i, l0=line0, ul=ulines: l0 + int(ul[i]) + 1, "user")
      _raw_index(item, n_items, path, lambda i, l0=line0, il=ilines: l0 + int(il[i]) + 1, "item")
  line_uids = np.concatenate([x[2] for x in u_all]) if u_all else np.zeros(0, np.int64)
  ev_u = np.concatenate([x[5] for x in u_all]) if u_all else np.zeros(0, np.int64)
  ev_i = np.concatenate([x[4] for x in u_all]) if u_all else np.zeros(0, np.int64)
  if ids == "raw":
    for what, n, k, lk in (("user", n_users, 2, 3), ("item", n_items, 4, 6)):
      if n is None and u_all:
        sizes = np.cumsum([0] + [len(x[k]) for x in u_all])

        def locate(i, k=k, lk=lk, sizes=sizes):
          j = int(np.searchsorted(sizes, i, side="right")) - 1
          return u_all[j][0], u_all[j][1] + int(u_all[j][lk][i - sizes[j]]) + 1

        _check_raw_size(np.concatenate([x[k] for x in u_all]), locate, what,
                        f"read with ids='sorted' to number them densely, or give n_{what}s")
    nu = max(n_users or 0, int(line_uids.max()) + 1 if line_uids.size else 0)
    ni = max(n_items or 0, int(ev_i.max()) + 1 if ev_i.size else 0)
    users, user_ids = ev_u, np.arange(nu, dtype=np.int64)
    items, item_ids = ev_i, np.arange(ni, dtype=np.int64)
  else:
    user_ids = np.unique(line_uids)
    users = np.searchsorted(user_ids, ev_u).astype(np.int64)
    items, item_ids = _index_ids(ev_i, strings=False)
  if name is None:
    name = ",".join(str(p) for p in paths)
  return Interactions(users=users, items=items, values=np.ones(len(users), np.float32),
                      timestamps=None, user_ids=user_ids, item_ids=item_ids,
                      duplicate_rule="sum", name=name)


# ---------------------------------------------------------------------------
# Merging and format sniffing (used by the registry for generic paths).
# ---------------------------------------------------------------------------


def _joint_ids(id_arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
  """Union of raw-id arrays and, per array, the map old dense index -> joint index."""
  allv = np.concatenate(id_arrays)
  if allv.dtype.kind in "iu":
    joint = np.unique(allv)
    return joint, [np.searchsorted(joint, a) for a in id_arrays]
  allv = allv.astype(str)
  _, first, inv = np.unique(allv, return_index=True, return_inverse=True)
  order = np.argsort(first, kind="stable")
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  inv = rank[inv.reshape(-1)]
  joint = allv[np.sort(first)]
  out, k = [], 0
  for a in id_arrays:
    out.append(inv[k:k + len(a)])
    k += len(a)
  return joint, out


def merge_interactions(parts: Sequence[Interactions], name: str = "") -> Interactions:
  """Concatenates event logs (in order) into one id space, joined on raw ids.

  Integer raw ids stay numerically sorted; if any part has string ids all are
  compared as strings (first appearance).  Timestamps are kept only if every
  part has them; the duplicate rule must agree.
  """
  if not parts:
    raise ValueError("merge_interactions needs at least one part")
  rules = {p.duplicate_rule for p in parts}
  if len(rules) != 1:
    raise ValueError(f"cannot merge parts with different duplicate rules {sorted(rules)}")
  if any(p.user_ids.dtype.kind not in "iu" for p in parts) or any(
      p.item_ids.dtype.kind not in "iu" for p in parts):
    ids = [(p.user_ids.astype(str), p.item_ids.astype(str)) for p in parts]
  else:
    ids = [(p.user_ids, p.item_ids) for p in parts]
  user_ids, umaps = _joint_ids([u for u, _ in ids])
  item_ids, imaps = _joint_ids([i for _, i in ids])
  ts = None
  if all(p.timestamps is not None for p in parts):
    ts = np.concatenate([p.timestamps for p in parts])
  return Interactions(
      users=np.concatenate([m[p.users] for m, p in zip(umaps, parts)]).astype(np.int64),
      items=np.concatenate([m[p.items] for m, p in zip(imaps, parts)]).astype(np.int64),
      values=np.concatenate([p.values for p in parts]).astype(np.float32), timestamps=ts,
      user_ids=user_ids, item_ids=item_ids, duplicate_rule=rules.pop(),
      name=name or ",".join(p.name for p in parts))


def sniff_format(path, n_lines: int = 200) -> str:
  """Guesses a file's layout from its first lines.

  Returns "table" (`user item [rating] [timestamp]`, the same 2-4 fields on
  every line), "counted_lists" (`n i1 ... in`: the first field counts the rest),
  "lda_c" (`M w1:c1 ... wM:cM`) or "user_lines" (`uid i1 i2 ...`, whitespace-
  separated integers, field counts varying).  A file whose lines all have the
  same 2-4 fields is a "table" even if it could be read otherwise (e.g. a
  `1 i` counted list); pass the format explicitly for those.
  """
  lines = []
  with _open(path) as f:
    for raw in f:
      line = raw.rstrip(b"\r\n")
      if line.strip():
        lines.append(line)
      if len(lines) >= n_lines:
        break
  if not lines:
    return "table"
  ws = [l.split() for l in lines]
  counts = {len(f) for f in ws}
  if len(counts) == 1 and 2 <= min(counts) <= 4:
    return "table"
  numeric = all(all(t.lstrip(b"-").isdigit() for t in f) for f in ws)
  if not numeric:
    wc = re.compile(rb"^\d+:\d+$")
    if all(f[0].isdigit() and int(f[0]) == len(f) - 1 and all(wc.match(t) for t in f[1:])
           for f in ws):
      return "lda_c"
    return "table"
  if all(int(f[0]) == len(f) - 1 for f in ws):
    return "counted_lists"
  return "user_lines"
