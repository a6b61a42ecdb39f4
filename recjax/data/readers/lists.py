"""One row a line: citeulike `n i1 ... in` lists, LDA-C, text lines, user lines.

citeulike's `users.dat` and its `cf-{train,test}-P-users.dat` splits
(`read_counted_lists`, `read_citeulike_splits`), its bag-of-words `mult.dat`
(`read_lda_c`), vocabulary and titles (`read_vocabulary`, `read_text_lines`),
and the `uid i1 i2 ...` files of LightGCN and S3-Rec (`read_user_lines`).
Line k is row k where the ids are dense already; no array is sized by a raw
id that `parse.check_raw_size` has not bounded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recjax.data.readers.parse import (check, check_raw_ids, check_raw_size, chunks, convert,
                                       index_ids, token_text, ws_tokens)
from recjax.data.types import DataFormatError, Interactions

def _counted_rows(path, body: bytes, line0: int, what: str):
  """Rows of an `n x1 ... xn` body: (line index per element, elements as bytes, line counts)."""
  counts, toks, line_of = ws_tokens(body)
  where = lambda i: line0 + i + 1
  check(counts == 0, path, where, lambda i: f"expected '{what}'; got an empty line")
  toks = np.array(toks, dtype=bytes)
  first = np.cumsum(counts) - counts
  n_decl = convert(toks[first], np.int64, path, where, f"'{what}' with an integer count n")
  check(n_decl != counts - 1, path, where,
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
  for body, line0 in chunks(path):
    line_of, elems, n = _counted_rows(path, body, line0, "n i1 ... in")
    where = lambda i, l0=line0, lo=line_of: l0 + int(lo[i]) + 1
    ids = convert(elems, np.int64, path, where, "an integer item id")
    check(ids < 0, path, where, lambda i, v=ids: f"expected a non-negative item id; got {v[i]}")
    if n_cols is not None:
      check_raw_ids(ids, n_cols, path, where, "item")
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
    items, item_ids = index_ids(items, strings=False)
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
  for body, line0 in chunks(path):
    line_of, elems, n = _counted_rows(path, body, line0, "M w1:c1 ... wM:cM")
    n_lines = line0 + n
    where = lambda i, l0=line0, lo=line_of: l0 + int(lo[i]) + 1
    if elems.size:
      v = elems.view(np.uint8).reshape(len(elems), elems.itemsize)
      is_colon = v == ord(":")
      length = (v != 0).sum(1)
      colon_at = np.argmax(is_colon, axis=1)
      ok = (is_colon.sum(1) == 1) & (colon_at > 0) & (colon_at < length - 1)
      check(~ok, path, where,
            lambda i: f"expected a 'word:count' token; got {token_text(elems[i])}")
      parts = b" ".join(elems.tolist()).replace(b":", b" ").split()
      parts = np.array(parts, dtype=bytes).reshape(-1, 2)
      w = convert(parts[:, 0], np.int64, path, where, "an integer word id in 'word:count'")
      c = convert(parts[:, 1], np.int64, path, where, "an integer count in 'word:count'")
      check(c < 1, path, where,
             lambda i: f"expected a positive count in 'word:count'; got {token_text(elems[i])}")
      check(w < 0, path, where,
            lambda i: f"expected a non-negative word id; got {token_text(elems[i])}")
      if n_words is not None:
        check(w >= n_words, path, where,
               lambda i: f"expected a word id in [0, {n_words}) (the vocabulary size); "
               f"got {token_text(elems[i])}")
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
    check_raw_size(c, lambda i: (path, int(r[i]) + 1), "word",
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
    for body, line0 in chunks(path):
      counts, toks, line_of = ws_tokens(body)
      where = lambda i, l0=line0: l0 + i + 1
      check(counts == 0, path, where,
             lambda i: "expected 'uid item1 item2 ...'; got an empty line")
      toks = convert(np.array(toks, dtype=bytes), np.int64, path,
                      lambda j, l0=line0, lo=line_of: l0 + int(lo[j]) + 1,
                      "an integer id ('uid item1 item2 ...')")
      first = np.cumsum(counts) - counts
      is_item = np.ones(len(toks), dtype=bool)
      is_item[first] = False
      u_all.append((path, line0, toks[first], np.arange(len(counts)),
                    toks[is_item], np.repeat(toks[first], counts - 1), line_of[is_item]))
  if ids == "raw":
    for path, line0, uid, ulines, item, _, ilines in u_all:
      check_raw_ids(uid, n_users, path, lambda i, l0=line0, ul=ulines: l0 + int(ul[i]) + 1, "user")
      check_raw_ids(item, n_items, path, lambda i, l0=line0, il=ilines: l0 + int(il[i]) + 1, "item")
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

        check_raw_size(np.concatenate([x[k] for x in u_all]), locate, what,
                        f"read with ids='sorted' to number them densely, or give n_{what}s")
    nu = max(n_users or 0, int(line_uids.max()) + 1 if line_uids.size else 0)
    ni = max(n_items or 0, int(ev_i.max()) + 1 if ev_i.size else 0)
    users, user_ids = ev_u, np.arange(nu, dtype=np.int64)
    items, item_ids = ev_i, np.arange(ni, dtype=np.int64)
  else:
    user_ids = np.unique(line_uids)
    users = np.searchsorted(user_ids, ev_u).astype(np.int64)
    items, item_ids = index_ids(ev_i, strings=False)
  if name is None:
    name = ",".join(str(p) for p in paths)
  return Interactions(users=users, items=items, values=np.ones(len(users), np.float32),
                      timestamps=None, user_ids=user_ids, item_ids=item_ids,
                      duplicate_rule="sum", name=name)
