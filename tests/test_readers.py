"""Tests for recjax.data.readers: hand-written files, malformed lines, real shared data."""

import time
from pathlib import Path

import numpy as np
import pytest

from recjax.data import readers
from recjax.data.types import DataFormatError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} (repo/../shared/data) is missing")


def write(tmp_path, name, text, mode="w"):
  p = tmp_path / name
  p.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(text, bytes):
    p.write_bytes(text)
  else:
    p.write_text(text, encoding="utf-8", newline="")
  return p


def raises_at(fn, path, line, *fragments):
  """Asserts fn() raises DataFormatError at path:line whose message holds the fragments."""
  with pytest.raises(DataFormatError) as e:
    fn()
  msg = str(e.value)
  assert e.value.line == line, msg
  assert Path(e.value.path).name == Path(path).name, msg
  assert f"{Path(path).name}:{line}" in msg if line is not None else Path(path).name in msg
  for f in fragments:
    assert f in msg, msg
  return msg


def dense(inter):
  return inter.to_csr().toarray()


# ---------------------------------------------------------------------------
# MovieLens.
# ---------------------------------------------------------------------------


def test_ml100k_values_ids_and_last_rule(tmp_path):
  p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n"
            "186\t302\t3\t891717742\n"
            "196\t302\t5\t881250000\n"
            "196\t242\t1\t881250000\n")  # older than the first 196/242 event
  x = readers.read_ml100k(p)
  assert x.user_ids.tolist() == [186, 196]
  assert x.item_ids.tolist() == [242, 302]
  assert x.users.tolist() == [1, 0, 1, 1]
  assert x.values.dtype == np.float32 and x.values.tolist() == [3, 3, 5, 1]
  assert x.timestamps.tolist() == [881250949, 891717742, 881250000, 881250000]
  assert x.duplicate_rule == "last"
  # The latest event by timestamp wins: 3 (t=881250949), not the later-in-file 1.
  assert dense(x).tolist() == [[0, 3], [3, 5]]


def test_ml_dat_half_stars_crlf_and_trailing_blank_lines(tmp_path):
  p = write(tmp_path, "ratings.dat", "1::122::4.5::838985046\r\n2::122::3::838983525\r\n\r\n\n")
  x = readers.read_ml_dat(p)
  assert x.n_events == 2 and x.values.tolist() == [4.5, 3.0]
  assert readers.read_movielens(tmp_path).n_events == 2


def test_ml_csv_header(tmp_path):
  p = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n"
            "1,29,3.5,1112484676\n")
  x = readers.read_ml_csv(p)
  assert x.n_events == 2 and x.item_ids.tolist() == [2, 29]
  bad = write(tmp_path, "bad/ratings.csv", "user,movie,rating,timestamp\n1,2,3.5,1\n")
  raises_at(lambda: readers.read_ml_csv(bad), bad, 1, "expected the header",
            "userId,movieId,rating,timestamp")


@pytest.mark.parametrize("text,line,fragment", [
    ("1\t2\t3\t4\n1\t2\t3\n", 2, "expected 4 tab-separated fields"),
    ("1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "got 5 field(s)"),
    ("1\t2\t3\t4\n\n1\t2\t3\t4\n", 2, "got an empty line"),
    ("1\t2\t3\t4\n1\t2\t3\t4\na1\t2\t3\t4\n", 3, "expected an integer user id; got 'a1'"),
    ("1\t2.5\t3\t4\n", 1, "expected an integer item id; got '2.5'"),
    ("1\t2\tx\t4\n", 1, "expected a numeric rating; got 'x'"),
    ("1\t2\t3\t4\n1\t2\tnan\t4\n", 2, "finite"),
    ("1\t2\t3\t4\n1\t2\t3\t\n", 2, "expected an integer timestamp; got ''"),
    ("1\t2\t3\t1.5e9\n", 1, "integer timestamp"),
    ("1 2 3 4\n", 1, "expected 4 tab-separated fields"),
])
def test_ml100k_malformed(tmp_path, text, line, fragment):
  p = write(tmp_path, "u.data", text)
  raises_at(lambda: readers.read_ml100k(p), p, line, fragment)


def test_ml_dat_malformed(tmp_path):
  p = write(tmp_path, "ratings.dat", "1::2::3::4\n1:2::3::4\n")
  raises_at(lambda: readers.read_ml_dat(p), p, 2, "expected 4 '::'-separated fields", "'1:2::3::4'")


def test_line_numbers_across_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(readers.parse, "CHUNK_BYTES", 40)
  good = "".join(f"{u}\t{u + 1}\t3\t{1000 + u}\n" for u in range(50))
  p = write(tmp_path, "u.data", good + "\n\n")
  x = readers.read_ml100k(p)
  assert x.n_events == 50 and x.user_ids.tolist() == list(range(50))
  p = write(tmp_path, "u.data", good + "7\t8\t9\n" + good)
  raises_at(lambda: readers.read_ml100k(p), p, 51, "got 3 field(s)")
  p = write(tmp_path, "u.data", good + "\n\n\n" + good)  # blank lines spanning chunks
  raises_at(lambda: readers.read_ml100k(p), p, 51, "empty line")
  p = write(tmp_path, "u.data", good + good.replace("\t3\t1010", "\tbad\t1010"))
  raises_at(lambda: readers.read_ml100k(p), p, 61, "numeric rating", "'bad'")


def test_ml_sized_file_is_fast(tmp_path):
  rng = np.random.default_rng(0)
  n = 1_000_000
  cols = [rng.integers(1, 6041, n), rng.integers(1, 3953, n), rng.integers(1, 6, n),
          rng.integers(956703932, 1046454590, n)]
  p = tmp_path / "ratings.dat"
  np.savetxt(p, np.stack(cols, 1), fmt="%d", delimiter="::")
  t = time.perf_counter()
  x = readers.read_ml_dat(p)
  took = time.perf_counter() - t
  assert x.n_events == n
  assert took < 10, f"reading 1M lines took {took:.1f}s"


# ---------------------------------------------------------------------------
# Netflix.
# ---------------------------------------------------------------------------


def test_netflix_training_set_folder(tmp_path):
  write(tmp_path, "training_set/mv_0000001.txt", "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n")
  write(tmp_path, "training_set/mv_0000002.txt", "2:\n822109,4,2005-09-07\n")
  x = readers.read_netflix(tmp_path)
  assert x.user_ids.tolist() == [822109, 1488844]
  assert x.item_ids.tolist() == [1, 2]
  assert x.items.tolist() == [0, 0, 1] and x.users.tolist() == [1, 0, 0]
  assert x.values.tolist() == [3, 5, 4]
  assert x.timestamps[0] == 1125964800  # 2005-09-06T00:00:00Z
  assert x.duplicate_rule == "last"


def test_netflix_combined_across_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(readers.parse, "CHUNK_BYTES", 32)
  lines = ["1:"] + [f"{c},{1 + c % 5},2005-01-0{1 + c % 9}" for c in range(10)]
  lines += ["7:"] + [f"{c},2,2004-12-31" for c in range(5)]
  p = write(tmp_path, "combined_data_1.txt", "\n".join(lines) + "\n")
  x = readers.read_netflix(p)
  assert x.n_events == 15
  assert x.item_ids[x.items].tolist() == [1] * 10 + [7] * 5
  assert readers.read_netflix(tmp_path).n_events == 15
  bad = lines[:14] + ["3,2,2004-12-32"] + lines[15:]
  p = write(tmp_path, "combined_data_1.txt", "\n".join(bad) + "\n")
  raises_at(lambda: readers.read_netflix(p), p, 15, "YYYY-MM-DD")


@pytest.mark.parametrize("text,line,fragment", [
    ("1488844,3,2005-09-06\n", 1, "'MovieID:' header"),
    ("1:\n1488844,3\n", 2, "CustomerID,Rating,YYYY-MM-DD"),
    ("1:\n1488844,3,2005-09-06\n\n5,3,2005-09-06\n", 3, "got an empty line"),
    ("1:\nabc,3,2005-09-06\n", 2, "integer CustomerID"),
    ("1:\n5,x,2005-09-06\n", 2, "numeric rating"),
    ("1:\n5,3,2005-9-6\n", 2, "YYYY-MM-DD"),
    ("1:\n5,3,06/09/2005\n", 2, "YYYY-MM-DD"),
    ("x1:\n5,3,2005-09-06\n", 1, "integer id"),
])
def test_netflix_malformed(tmp_path, text, line, fragment):
  write(tmp_path, "training_set/mv_0000001.txt", "1:\n5,3,2005-09-06\n")
  p = write(tmp_path, "training_set/mv_0000002.txt", text)
  raises_at(lambda: readers.read_netflix(tmp_path), p, line, fragment)


# ---------------------------------------------------------------------------
# MSD taste profile.
# ---------------------------------------------------------------------------


def test_msd_triplets_string_ids_sum(tmp_path):
  p = write(tmp_path, "train_triplets.txt",
            "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t1\n"
            "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAPDEY12A81C210A9\t2\n"
            "85c1f87fea955d09b4bec2e36aee110927aedf9a\tSOAKIMP12A8C130995\t5\n"
            "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t3\n")
  x = readers.read_msd_triplets(p)
  assert x.user_ids.tolist() == ["b80344d063b5ccb3212f76538f3d9e43d87dca9e",
                                 "85c1f87fea955d09b4bec2e36aee110927aedf9a"]
  assert x.item_ids.tolist() == ["SOAKIMP12A8C130995", "SOAPDEY12A81C210A9"]
  assert x.duplicate_rule == "sum"
  assert dense(x).tolist() == [[4, 2], [5, 0]]


@pytest.mark.parametrize("text,line,fragment", [
    ("u\ts\t1\nu\ts\n", 2, "expected 3 tab-separated fields (user item rating)"),
    ("u\ts\t1\nu\ts\t0\n", 2, "positive integer count"),
    ("u\ts\t1.5\n", 1, "positive integer count"),
    ("u s 1\n", 1, "got 1 field(s)"),
])
def test_msd_malformed(tmp_path, text, line, fragment):
  p = write(tmp_path, "train_triplets.txt", text)
  raises_at(lambda: readers.read_msd_triplets(p), p, line, fragment)


# ---------------------------------------------------------------------------
# citeulike: n-lists, LDA-C, vocabulary, titles, splits.
# ---------------------------------------------------------------------------


def test_counted_lists_identity_ids_and_padding(tmp_path):
  p = write(tmp_path, "users.dat", "3 0 4 2\n0\n2 1 1 \n")
  x = readers.read_counted_lists(p, n_rows=4, n_cols=6)
  assert x.shape == (4, 6)
  assert x.user_ids.tolist() == [0, 1, 2, 3] and x.item_ids.tolist() == list(range(6))
  assert x.users.tolist() == [0, 0, 0, 2, 2] and x.items.tolist() == [0, 4, 2, 1, 1]
  assert dense(x)[2, 1] == 2  # "sum"
  y = readers.read_counted_lists(p)  # No item count: the ids that occur, numbered densely.
  assert y.shape == (3, 4) and y.item_ids.tolist() == [0, 1, 2, 4]
  assert y.items.tolist() == [0, 3, 2, 1, 1]


@pytest.mark.parametrize("text,kw,line,fragment", [
    ("2 1 2\n3 1 2\n", {}, 2, "expected 3 entries after the count 3"),
    ("2 1 2\n\n1 1\n", {}, 2, "got an empty line"),
    ("2 1 x\n", {}, 1, "integer item id"),
    ("x 1 2\n", {}, 1, "integer count"),
    ("1 1\n1 9\n", {"n_cols": 9}, 2, "item id in [0, 9); got 9"),
    ("1 -1\n", {}, 1, "non-negative item id"),
    ("1 1\n1 2\n1 3\n", {"n_rows": 2}, 3, "at most 2 lines"),
])
def test_counted_lists_malformed(tmp_path, text, kw, line, fragment):
  p = write(tmp_path, "users.dat", text)
  raises_at(lambda: readers.read_counted_lists(p, **kw), p, line, fragment)


def test_lda_c(tmp_path):
  p = write(tmp_path, "mult.dat", "2 0:1 3:2\n0\n1 2:5\n")
  m = readers.read_lda_c(p, n_words=4, n_docs=3)
  assert m.shape == (3, 4) and m.toarray().tolist() == [[1, 0, 0, 2], [0, 0, 0, 0], [0, 0, 5, 0]]


@pytest.mark.parametrize("text,line,fragment", [
    ("2 0:1 3:2\n2 0:1\n", 2, "expected 2 entries after the count 2"),
    ("1 0:1\n1 3\n", 2, "'word:count' token; got '3'"),
    ("1 0:1\n1 3:1:2\n", 2, "'word:count' token"),
    ("1 :1\n", 1, "'word:count' token"),
    ("1 a:1\n", 1, "integer word id"),
    ("1 0:1\n1 4:1\n", 2, "word id in [0, 4) (the vocabulary size); got '4:1'"),
    ("1 0:0\n", 1, "positive count"),
])
def test_lda_c_malformed(tmp_path, text, line, fragment):
  p = write(tmp_path, "mult.dat", text)
  raises_at(lambda: readers.read_lda_c(p, n_words=4), p, line, fragment)


def test_lda_c_doc_count(tmp_path):
  p = write(tmp_path, "mult.dat", "1 0:1\n1 1:1\n")
  raises_at(lambda: readers.read_lda_c(p, n_docs=3), p, None, "expected 3 documents")
  raises_at(lambda: readers.read_lda_c(p, n_docs=1), p, 2, "expected 1 documents")


def test_vocabulary_splits_on_newline_only(tmp_path):
  words = ["cell", "one\u2013two", "it\u2019s", "a\u0085b", "x\u2028y", "\xa0"]
  p = write(tmp_path, "vocabulary.dat", "\n".join(words).encode("utf-8"))
  assert readers.read_vocabulary(p) == words
  assert readers.read_vocabulary(p, n_words=6) == words
  raises_at(lambda: readers.read_vocabulary(p, n_words=5), p, None, "expected 5 words; got 6")
  q = write(tmp_path, "v2.dat", "a\n\nb\n")
  raises_at(lambda: readers.read_vocabulary(q), q, 2, "empty line")
  r = write(tmp_path, "v3.dat", b"a\nb\xff\n")
  raises_at(lambda: readers.read_vocabulary(r), r, 2, "UTF-8")


def test_text_lines(tmp_path):
  p = write(tmp_path, "titles.txt", "First title\r\n\nThird \u2013 title\n")
  assert readers.read_text_lines(p) == ["First title", "", "Third \u2013 title"]


def test_citeulike_splits_share_id_space(tmp_path):
  write(tmp_path, "cf-train-1-users.dat", "1 0\n1 3\n")
  write(tmp_path, "cf-test-1-users.dat", "1 2\n0\n")
  write(tmp_path, "cf-train-10-users.dat", "2 0 2\n1 3\n")
  write(tmp_path, "cf-test-10-users.dat", "0\n0\n")
  s = readers.read_citeulike_splits(tmp_path, n_users=3, n_items=5)
  assert list(s) == ["P1", "P10"]
  train, test = s["P1"]
  assert train.shape == test.shape == (3, 5)
  assert dense(train)[1, 3] == 1 and dense(test)[0, 2] == 1
  write(tmp_path, "cf-train-5-users.dat", "1 0\n")
  with pytest.raises(FileNotFoundError, match="cf-test-5-users.dat"):
    readers.read_citeulike_splits(tmp_path, 3, 5)


# ---------------------------------------------------------------------------
# Generic tables.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\t", ",", "::", ";", " ", "  \t "])
def test_generic_delimiters(tmp_path, sep):
  rows = [("10", "7", "4", "100"), ("3", "7", "5", "101"), ("10", "2", "1", "99")]
  p = write(tmp_path, "r.txt", "".join(sep.join(r) + "\n" for r in rows))
  x = readers.read_interactions(p)
  assert x.user_ids.tolist() == [3, 10] and x.item_ids.tolist() == [2, 7]
  assert x.values.tolist() == [4, 5, 1] and x.timestamps.tolist() == [100, 101, 99]
  assert x.duplicate_rule == "last"


def test_generic_header_string_ids_and_implicit(tmp_path):
  p = write(tmp_path, "a.csv", "user,item,rating\nbob,x,4\nann,y,2\nbob,y,5\n")
  x = readers.read_interactions(p)
  assert x.user_ids.tolist() == ["bob", "ann"]  # first appearance
  assert x.item_ids.tolist() == ["x", "y"]
  assert x.timestamps is None and x.duplicate_rule == "last"
  q = write(tmp_path, "b.txt", "u2 i1\nu1 i1\nu2 i1\n")
  y = readers.read_interactions(q)
  assert y.duplicate_rule == "sum" and y.values.tolist() == [1, 1, 1]
  assert dense(y).tolist() == [[2], [1]]
  h = write(tmp_path, "c.tsv", "userId\tmovieId\n5\t6\n")
  assert readers.read_interactions(h).n_events == 1
  n = write(tmp_path, "d.tsv", "5\t6\n7\t8\n")
  assert readers.read_interactions(n).n_events == 2
  assert readers.read_interactions(n, header=True).n_events == 1
  assert readers.read_interactions(q, delimiter=" ", duplicate_rule="last").duplicate_rule == "last"


@pytest.mark.parametrize("text,line,fragment", [
    ("1,2,3\n1,2\n", 2, "expected 3 comma-separated fields (user item rating); got 2"),
    ("1,2,3,4,5\n1,2,3,4,5\n", 1, "expected 2-4 fields"),
    ("1,2,3\n1,2,x\n", 2, "numeric rating"),
    ("1,2,3,4\n1,2,3,4.5\n", 2, "integer timestamp"),
    ("1,2\n1,2\n\n1,2\n", 3, "empty line"),
])
def test_generic_malformed(tmp_path, text, line, fragment):
  p = write(tmp_path, "x.csv", text)
  raises_at(lambda: readers.read_interactions(p), p, line, fragment)


def test_generic_header_maps_columns_by_name(tmp_path, monkeypatch):
  monkeypatch.setattr(readers.parse, "CHUNK_BYTES", 64)  # the header's layout holds in every chunk
  rows = "".join(f"{100 + u % 7}\t{u}\t{1 + u % 5}\t2024-05-{1 + u % 28:02d}T00:00:00Z\textra\n"
                 for u in range(40))
  p = write(tmp_path, "r.tsv", "Item_ID\tUserID\tScore\tDate\tcomment\n" + rows)
  notes = []
  x = readers.read_interactions(p, notes=notes)
  assert x.user_ids.tolist() == list(range(40)) and x.item_ids.tolist() == list(range(100, 107))
  assert x.timestamps[0] == 1714521600 and x.duplicate_rule == "last"
  assert notes == ["r.tsv: header maps columns: Item_ID -> item, UserID -> user, Score -> rating, "
                   "Date -> timestamp",
                   "r.tsv: columns ignored: comment",
                   "r.tsv: timestamp column 'Date': 40 ISO-8601 dates/times converted to int64 "
                   "epoch seconds (UTC where no offset is given)"]
  bad = write(tmp_path, "bad.tsv", "Item_ID\tUserID\tScore\tDate\tcomment\n" + rows
              + "1\t2\t3\t2024-05-01\n")
  raises_at(lambda: readers.read_interactions(bad), bad, 42,
            "expected 5 tab-separated fields (Item_ID UserID Score Date comment)")


def test_generic_rating_and_count_columns(tmp_path):
  p = write(tmp_path, "b.csv", "user,item,rating,plays\n1,2,4,10\n1,2,5,3\n")
  notes = []
  x = readers.read_interactions(p, notes=notes)
  assert x.duplicate_rule == "last" and x.values.tolist() == [4, 5]
  assert any("plays (a second value column" in n for n in notes), notes
  y = readers.read_interactions(p, values="counts")
  assert y.duplicate_rule == "sum" and y.to_csr().toarray().tolist() == [[13.0]]
  z = readers.read_interactions(write(tmp_path, "c.csv", "user,item,playcount\n1,2,10\n"),
                                values="ratings")
  assert z.duplicate_rule == "last"
  with pytest.raises(DataFormatError, match="values='ratings'"):
    readers.read_interactions(write(tmp_path, "d.csv", "user,item\n1,2\n"), values="ratings")


def test_generic_forced_header_with_unknown_names_is_positional(tmp_path):
  p = write(tmp_path, "d.tsv", "a\tb\n5\t6\n7\t8\n")
  notes = []
  x = readers.read_interactions(p, header=True, notes=notes)
  assert x.n_events == 2 and x.user_ids.tolist() == [5, 7]
  assert "skipped" in notes[0] and "by position" in notes[0]
  raises_at(lambda: readers.read_interactions(p), p, 1, "expected a header naming a user column",
            "userId", "movieId", "got columns 'a', 'b': no user and no item column")


# ---------------------------------------------------------------------------
# One line per user.
# ---------------------------------------------------------------------------


def test_user_lines_merge_files_raw_ids(tmp_path):
  a = write(tmp_path, "train.txt", "0 5 1 2\n2 3\n")
  b = write(tmp_path, "test.txt", "0 4\n1\n")
  x = readers.read_user_lines([a, b], ids="raw", n_items=7)
  assert x.shape == (3, 7)
  assert x.users.tolist() == [0, 0, 0, 2, 0] and x.items.tolist() == [5, 1, 2, 3, 4]
  assert x.timestamps is None and x.duplicate_rule == "sum"
  assert [s.tolist() for s in x.sequences()] == [[5, 1, 2, 4], [], [3]]


def test_user_lines_sorted_ids(tmp_path):
  a = write(tmp_path, "Beauty.txt", "1 1 2 3\n2 4 2\n3 3 3\n")
  x = readers.read_user_lines(a)
  assert x.user_ids.tolist() == [1, 2, 3] and x.item_ids.tolist() == [1, 2, 3, 4]
  assert [s.tolist() for s in x.sequences()] == [[0, 1, 2], [3, 1], [2, 2]]
  assert dense(x)[2, 2] == 2


@pytest.mark.parametrize("text,kw,line,fragment", [
    ("0 1 2\n\n1 2\n", {}, 2, "empty line"),
    ("0 1 2\n1 2 b\n", {}, 2, "integer id"),
    ("0 1 2\n1 2 9\n", {"ids": "raw", "n_items": 9}, 2, "item id in [0, 9); got 9"),
    ("0 1\n5 2\n", {"ids": "raw", "n_users": 5}, 2, "user id in [0, 5); got 5"),
    ("0 -1\n", {"ids": "raw"}, 1, "non-negative item id"),
])
def test_user_lines_malformed(tmp_path, text, kw, line, fragment):
  ok = write(tmp_path, "train.txt", "0 1\n")
  p = write(tmp_path, "test.txt", text)
  raises_at(lambda: readers.read_user_lines([ok, p], **kw), p, line, fragment)


def test_merge_and_sniff(tmp_path):
  a = readers.read_interactions(write(tmp_path, "a.txt", "1 10\n2 20\n"))
  b = readers.read_interactions(write(tmp_path, "b.txt", "3 10\n1 30\n"))
  m = readers.merge_interactions([a, b])
  assert m.user_ids.tolist() == [1, 2, 3] and m.item_ids.tolist() == [10, 20, 30]
  assert m.user_ids[m.users].tolist() == [1, 2, 3, 1]
  assert m.item_ids[m.items].tolist() == [10, 20, 10, 30]
  assert readers.sniff_format(write(tmp_path, "t.txt", "1\t2\t3\n")) == "table"
  assert readers.sniff_format(write(tmp_path, "u.txt", "0 1 2\n1 3\n")) == "user_lines"
  assert readers.sniff_format(write(tmp_path, "c.dat", "2 1 2\n1 3\n0\n")) == "counted_lists"
  assert readers.sniff_format(write(tmp_path, "m.dat", "2 1:1 2:3\n1 3:1\n")) == "lda_c"


# ---------------------------------------------------------------------------
# Real shared data (documented counts).
# ---------------------------------------------------------------------------


@needs_shared
def test_shared_ml100k():
  x = readers.read_ml100k(SHARED / "movielens-100k" / "u.data")
  assert (x.n_users, x.n_items, x.n_events) == (943, 1682, 100_000)
  assert np.bincount(x.values.astype(int))[1:].tolist() == [6110, 11370, 27145, 34174, 21201]


@needs_shared
def test_shared_citeulike_t_mult():
  vocab = readers.read_vocabulary(SHARED / "citeulike-t" / "vocabulary.dat")
  assert len(vocab) == 20_000
  m = readers.read_lda_c(SHARED / "citeulike-t" / "mult.dat", n_words=len(vocab), n_docs=25_975)
  assert m.shape == (25_975, 20_000) and m.nnz == 490_708 and m.sum() == 804_367
  assert int((m.getnnz(axis=1) == 0).sum()) == 31


@needs_shared
def test_shared_beauty_sequences():
  x = readers.read_user_lines(SHARED / "s3rec-sequences" / "Beauty.txt")
  assert (x.n_users, x.n_items, x.n_events) == (22_363, 12_101, 198_502)
  lengths = np.bincount(x.users)
  assert lengths.min() == 5 and lengths.max() == 204
