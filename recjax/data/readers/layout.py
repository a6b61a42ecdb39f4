"""Where a table's fields are: delimiter, header line and column roles.

`table_format` reads the first lines of a table and returns its `Layout`:
the delimiter (given, or detected among tab, '::', comma, ';' and
whitespace), whether the first line is a header, and which column holds the
user, the item, the rating or count and the timestamp.  A header maps columns
by name (`_COLUMN_NAMES`, compared without case or punctuation); without one
the columns are positional, `user item [rating] [timestamp]`.  Every decision
is appended to a `notes` list for the user.
"""

from __future__ import annotations

import dataclasses
import re

from recjax.data.readers.parse import line_text, token_text
from recjax.data.types import DataFormatError

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
ISO_RE = re.compile(rb"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
                     rb"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?$")


def _column_name(tok: bytes) -> str:
  return tok.strip().strip(b"\"'").decode("utf-8", "replace").strip()


def _role_of(name: str) -> str | None:
  key = re.sub(r"[^0-9a-z]", "", name.lower())
  for role, names in _COLUMN_NAMES.items():
    if key in names:
      return role
  return None


@dataclasses.dataclass(frozen=True)
class Layout:
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


def _is_number(tok: bytes) -> bool:
  try:
    float(tok)
    return True
  except ValueError:
    return False


def _is_value(tok: bytes) -> bool:
  """A number or an ISO-8601 date: a data field, not a column name."""
  return _is_number(tok) or bool(ISO_RE.match(tok.strip()))


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


def table_format(path, body: bytes, delim, ncols, header, values: str = "auto",
                  value_kind: str = "float", notes: list[str] | None = None) -> Layout:
  """The layout of a table from its first lines (arguments as in `tables._read_table`)."""
  notes = [] if notes is None else notes
  generic = ncols is None
  lines = body.split(b"\n", 21)[:21]
  if isinstance(header, bytes):
    if lines[0] != header:
      raise DataFormatError(
          path, 1, f"expected the header {token_text(header)}; got {line_text(body, 0)}")
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
          f"the same number on every line; got {line_text(body, skip)}")
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
                            f"{line_text(body, 0)}")
    return Layout(delim, len(first), skip, iso_time=True, **cols)
  if ncols is None:
    if skip >= len(lines) or not lines[skip]:
      ncols = 2
    else:
      ncols = len(_split(lines[skip], delim))
      if not 2 <= ncols <= 4:
        raise DataFormatError(
            path, skip + 1, "expected 2-4 fields (user item [rating] [timestamp]); "
            f"got {ncols} field(s): {line_text(body, skip)}")
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
                            f"values='ratings'; got {line_text(body, skip)}")
  return Layout(delim, ncols, skip, value=value, value_kind=value_kind,
                 time=3 if ncols == 4 else None, iso_time=generic)
