"""Rating tables: MovieLens, MSD triplets and generic `user item [rating] [time]` files.

Every table goes through `_read_table`: its `Layout` (`readers.layout`) from
the first lines, then each chunk's fields converted and checked, ids numbered
(integers in numeric order, strings by first appearance) and the decisions
taken recorded in `notes`.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Callable

import numpy as np

from recjax.data.readers.layout import ISO_RE, table_format
from recjax.data.readers.parse import (check, chunks, convert, fixed_fields, index_ids,
                                       token_text)
from recjax.data.types import DuplicateRule, Interactions

ML_CSV_HEADER = b"userId,movieId,rating,timestamp"
VALUES = ("auto", "counts", "ratings")
_DELIM_NAMES = {b"\t": "tab", b",": "comma", b"::": "'::'", b";": "';'", None: "whitespace"}
_ISO_WHAT = ("an integer timestamp or an ISO-8601 date/time (2024-05-01, 2024-05-01T12:30:00, "
             "optionally with Z or an offset such as +02:00)")


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
  for body, line0 in chunks(path, chunk_bytes):
    if lay is None:
      lay = table_format(path, body, delim, ncols, header, values, value_kind, own_notes)
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
    f = fixed_fields(path, body, line0, lay.delim, lay.ncols, expected)
    where = lambda i, l0=line0: l0 + i + 1
    users.append(f[:, lay.user])
    items.append(f[:, lay.item])
    if lay.value is not None:
      col, what = f[:, lay.value], lay.column(lay.value)
      if lay.value_kind == "count":
        v = convert(col, np.int64, path, where, "a positive integer count")
        check(v < 1, path, where, lambda i: f"expected a positive integer count; got {v[i]}")
      elif lay.value_kind == "weight":
        v = convert(col, np.float64, path, where, f"a positive count ({what})")
        check(~(v > 0), path, where,
               lambda i: f"expected a positive count ({what}); got {token_text(col[i])}")
      else:
        v = convert(col, np.float64, path, where, "a numeric rating")
      vals.append(v.astype(np.float32))
    if lay.time is not None:
      if lay.iso_time:
        t, k = _timestamps(f[:, lay.time], path, where)
        n_iso += k
      else:
        t = convert(f[:, lay.time], np.int64, path, where, "an integer timestamp")
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
      cols.append(index_ids(raw, strings=True))
    elif ids == "int":
      cols.append(index_ids(convert(raw, np.int64, path, where, f"an integer {what} id"),
                             strings=False))
    else:
      try:
        as_int = raw.astype(np.int64)
      except (ValueError, OverflowError):
        cols.append(index_ids(raw, strings=True))
      else:
        cols.append(index_ids(as_int, strings=False))
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
    if not ISO_RE.match(tok):
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
  check(~ok[inv], path, where, lambda i: f"expected {_ISO_WHAT}; got {token_text(col[i])}")
  return out[inv], int(iso[inv].sum())


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
  case (`layout._COLUMN_NAMES`): user (user, userId, user_id, uid, customer...),
  item (item, itemId, movieId, artistID, song, track, product...), rating (rating,
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
