"""The Netflix Prize ratings: `MovieID:` header lines, then `CustomerID,Rating,YYYY-MM-DD`.

`mv_` files are parsed many at once (joined up to `parse.CHUNK_BYTES`),
`combined_data_*` files chunk by chunk with the current movie carried from one
chunk to the next; every error names the original file and line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recjax.data.readers import parse
from recjax.data.readers.parse import (chunks, first_failure, index_ids, line_bounds, line_text,
                                       read_body, token_text)
from recjax.data.types import DataFormatError, Interactions

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
  nl, starts, ends = line_bounds(arr)
  n_lines = len(starts)
  commas = np.bincount(np.searchsorted(nl, np.flatnonzero(arr == 44)), minlength=n_lines)
  nonempty = ends > starts
  last = arr[np.maximum(ends - 1, 0)] if len(arr) else np.zeros(n_lines, np.uint8)
  is_hdr = (commas == 0) & nonempty & (last == ord(":"))
  is_rating = commas == 2
  bad = np.flatnonzero(~(is_hdr | is_rating))
  if bad.size:
    i = int(bad[0])
    fail(i, f"expected {_NETFLIX_RATING}; got {line_text(body, i)}")
  for path, b0, f0 in origins:
    if f0 == 0 and not is_hdr[b0]:
      fail(b0, f"expected a 'MovieID:' header as the first line; got {line_text(body, b0)}")
  toks = np.array(body.replace(b"\n", b",").split(b","), dtype=bytes)
  tok0 = np.cumsum(commas + 1) - (commas + 1)
  hdr_lines = np.flatnonzero(is_hdr)
  hdr_tok = np.array([t[:-1] for t in toks[tok0[hdr_lines]].tolist()], dtype=bytes)
  try:
    hdr_movie = hdr_tok.astype(np.int64)
  except (ValueError, OverflowError):
    j = first_failure(hdr_tok, np.int64)
    fail(int(hdr_lines[j]), f"expected a 'MovieID:' header with an integer id; got "
         f"{line_text(body, int(hdr_lines[j]))}")
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
      j = first_failure(col, dtype)
      line = int(r_lines[j])
      fail(line, f"expected {what}; got {token_text(col[j])} in {line_text(body, line)}")

  customers = conv(toks[t], np.int64, "an integer CustomerID")
  ratings = conv(toks[t + 1], np.float64, "a numeric rating")
  bad = np.flatnonzero(~np.isfinite(ratings))
  if bad.size:
    line = int(r_lines[bad[0]])
    fail(line, f"expected a finite rating; got {line_text(body, line)}")
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
      fail(int(r_lines[bad[0]]), f"expected a YYYY-MM-DD date; got {token_text(dates[bad[0]])}")
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
      body = read_body(f)
      if not body:
        raise DataFormatError(f, 1, "expected a 'MovieID:' header; got an empty file")
      origins.append((f, n_batch, 0))
      batch.append(body)
      n_batch += body.count(b"\n") + 1
      size += len(body)
      if size >= parse.CHUNK_BYTES:
        add(_netflix_block(b"\n".join(batch), origins, None))
        batch, origins, n_batch, size = [], [], 0, 0
    else:
      carry = None
      for body, line0 in chunks(f):
        out = _netflix_block(body, [(f, 0, line0)], carry)
        carry = out[4]
        add(out)
  if batch:
    add(_netflix_block(b"\n".join(batch), origins, None))
  cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)
  uu, user_ids = index_ids(cat(customers, np.int64), strings=False)
  ii, item_ids = index_ids(cat(movies, np.int64), strings=False)
  return Interactions(users=uu, items=ii, values=cat(ratings, np.float32),
                      timestamps=cat(times, np.int64), user_ids=user_ids, item_ids=item_ids,
                      duplicate_rule="last", name=str(path))
