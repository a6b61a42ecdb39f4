"""A user's own files, read as the user meant them: headers, counts, ISO dates, given splits.

Every file here is small and generated under tmp_path.
"""

import datetime
from pathlib import Path

import numpy as np
import pytest

from recjax.data import pipeline, readers
from recjax.data.registry import load_dataset
from recjax.data.types import DataFormatError, Dataset, Interactions

# (user, item, rating, timestamp) rows: 6 users with 1-6 ratings, ratings 1-5.
ROWS = [(u, 100 + i, 1 + (u * 7 + i * 3) % 5, 1_000_000 + 10 * u + i)
        for u in range(1, 7) for i in range(u)]


def write(path: Path, text: str) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8", newline="")
  return path


def table(path: Path, header: list[str] | None, rows, sep=",") -> Path:
  lines = [sep.join(header)] if header else []
  lines += [sep.join(str(x) for x in r) for r in rows]
  return write(path, "\n".join(lines) + "\n")


def events(x: Interactions) -> list[tuple]:
  """The events as raw-id tuples, in file order (ids mapped back through the id maps)."""
  ts = x.timestamps if x.timestamps is not None else [None] * x.n_events
  return [(str(x.user_ids[u]), str(x.item_ids[i]), float(v), None if t is None else int(t))
          for u, i, v, t in zip(x.users, x.items, x.values, ts)]


def pairs(m, row_ids, col_ids) -> set[tuple]:
  r, c = m.nonzero()
  return {(str(row_ids[a]), str(col_ids[b])) for a, b in zip(r, c)}


# ---------------------------------------------------------------------------
# 1. Header rows name the columns.
# ---------------------------------------------------------------------------


PERMUTATIONS = [
    (["user", "item", "rating", "timestamp"], (0, 1, 2, 3), ","),
    (["ITEM", "User", "Timestamp", "Rating"], (1, 0, 3, 2), ","),
    (["movieId", "userId", "rating", "timestamp"], (1, 0, 2, 3), "\t"),
    (["ts", "score", "item_id", "user_id"], (3, 2, 1, 0), ";"),
    (["userID", "timestamp", "artistID", "stars"], (0, 3, 1, 2), " "),
]


@pytest.mark.parametrize("header,order,sep", PERMUTATIONS)
def test_header_permutations_give_the_same_interactions(tmp_path, header, order, sep):
  plain = readers.read_interactions(table(tmp_path / "plain.txt", None, ROWS, "\t"))
  rows = [tuple(r[k] for k in order) for r in ROWS]
  notes = []
  x = readers.read_interactions(table(tmp_path / "h.txt", header, rows, sep), notes=notes)
  assert events(x) == events(plain)
  assert x.duplicate_rule == "last" and x.n_events == len(ROWS)
  assert sorted(x.user_ids.tolist()) == list(range(1, 7))  # Users are users, items items.
  assert all(i >= 100 for i in x.item_ids.tolist())
  mapped = dict(part.split(" -> ") for part in notes[0].split(": ", 2)[2].split(", "))
  assert sorted(mapped.values()) == ["item", "rating", "timestamp", "user"]
  assert notes[0].startswith("h.txt: header maps columns: ")


def test_item_first_header_string_ids(tmp_path):
  p = write(tmp_path / "r.csv", "product,customer,stars\nx,bob,4\ny,ann,2\nx,ann,5\n")
  x = readers.read_interactions(p)
  assert x.user_ids.tolist() == ["bob", "ann"] and x.item_ids.tolist() == ["x", "y"]
  assert events(x) == [("bob", "x", 4.0, None), ("ann", "y", 2.0, None), ("ann", "x", 5.0, None)]
  ds = load_dataset(str(p))
  assert ds.kind == "explicit" and ds.interactions.shape == (2, 2)


def test_extra_columns_ignored_with_a_note(tmp_path):
  p = write(tmp_path / "m.csv", "userId,title,movieId,rating,genre\n1,Heat,10,4,crime\n"
            "2,Up,11,5,kids\n")
  ds = load_dataset(str(p))
  assert events(ds.interactions) == [("1", "10", 4.0, None), ("2", "11", 5.0, None)]
  assert "m.csv: header maps columns: userId -> user, movieId -> item, rating -> rating" in ds.notes
  assert "m.csv: columns ignored: title, genre" in ds.notes


def test_unknown_header_names_are_an_error_at_line_1(tmp_path):
  p = write(tmp_path / "artists.dat", "id\tname\turl\n1\tMALICE MIZER\thttp://a\n")
  with pytest.raises(DataFormatError) as e:
    readers.read_interactions(p)
  msg = str(e.value)
  assert e.value.line == 1 and "artists.dat:1" in msg
  for accepted in ("userId", "user_id", "uid", "itemId", "movieId", "artistID", "rating",
                   "playcount", "timestamp"):
    assert accepted in msg, msg
  assert "no user and no item column" in msg
  q = write(tmp_path / "friends.dat", "userID\tfriendID\n2\t275\n")
  with pytest.raises(DataFormatError, match="no item column"):
    readers.read_interactions(q)
  r = write(tmp_path / "two.csv", "user,userId,item\n1,2,3\n")
  with pytest.raises(DataFormatError, match="both name the user"):
    readers.read_interactions(r)


def test_headerless_files_stay_positional(tmp_path):
  p = table(tmp_path / "u.txt", None, ROWS[:4], "\t")
  x = readers.read_interactions(p)
  assert x.duplicate_rule == "last" and x.timestamps is not None
  assert events(x)[0] == ("1", "100", float(ROWS[0][2]), ROWS[0][3])
  q = write(tmp_path / "v.txt", "1 10\n2 10\n1 10\n")
  y = readers.read_interactions(q)
  assert y.duplicate_rule == "sum" and y.to_csr().toarray().tolist() == [[2.0], [1.0]]


# ---------------------------------------------------------------------------
# 2-3. Counts are not stars.
# ---------------------------------------------------------------------------


LASTFM = ("userID\tartistID\tweight\n"
          "2\t51\t13883\n2\t52\t3\n2\t53\t1\n"  # user 2: 3 artists, weights < 4 among them
          "3\t51\t2\n"                          # user 3: one artist
          "4\t54\t1\n4\t51\t7\n4\t54\t2\n")      # user 4 listened to 54 twice (rows summed)


def test_count_header_is_implicit_and_keeps_every_pair(tmp_path):
  p = write(tmp_path / "user_artists.dat", LASTFM)
  ds = load_dataset(str(p))
  assert ds.kind == "implicit" and ds.interactions.duplicate_rule == "sum"
  assert any("count column 'weight'" in n for n in ds.notes), ds.notes
  config = pipeline.resolve(pipeline.DataConfig(), ds)
  assert (config.binarize_threshold, config.min_user_count) == (None, None)
  split, info = pipeline.ranking_split(ds, pipeline.DataConfig(heldout_users=0))
  assert info["preprocessed"]["interactions"] == 6  # 7 rows, (4, 54) twice: every pair kept
  assert split.train.nnz == 6 and set(split.train.data.tolist()) == {1.0}
  assert "counts became clicks (1.0); --set implicit_values=counts keeps them" in info["conversions"]
  assert "duplicate (user, item) pairs summed: 1 repeated event" in info["conversions"]
  counts, info = pipeline.ranking_split(ds, pipeline.DataConfig(heldout_users=0,
                                                                implicit_values="counts"))
  x = ds.interactions
  got = {(str(x.user_ids[split.train_users[r]]), str(x.item_ids[split.items[c]])): v
         for r, c, v in zip(*counts.train.nonzero(), counts.train.data)}
  assert got == {("2", "51"): 13883, ("2", "52"): 3, ("2", "53"): 1, ("3", "51"): 2,
                 ("4", "54"): 3, ("4", "51"): 7}


def test_values_argument_forces_counts_or_ratings(tmp_path):
  p = write(tmp_path / "plays.tsv", "a\tx\t12\na\ty\t1\nb\tx\t3\na\tx\t5\n")
  rated = load_dataset(str(p))
  assert rated.kind == "explicit" and rated.interactions.duplicate_rule == "last"
  assert any("values span 1..12" in n and "values='counts'" in n for n in rated.notes)
  ds = load_dataset(str(p), values="counts")
  assert ds.kind == "implicit" and ds.interactions.to_csr().toarray().tolist() == [[17, 1], [3, 0]]
  assert any("column 3 read as counts (values='counts')" in n for n in ds.notes)
  q = write(tmp_path / "w.tsv", "user\titem\tplays\n1\t2\t40\n")
  assert load_dataset(str(q), values="ratings").kind == "explicit"
  with pytest.raises(ValueError, match="values must be one of"):
    load_dataset(str(q), values="stars")
  with pytest.raises(ValueError, match="registry dataset"):
    load_dataset("ml-100k", values="counts")
  with pytest.raises(DataFormatError, match="positive count"):
    readers.read_interactions(write(tmp_path / "z.tsv", "user\titem\tcount\n1\t2\t0\n"))


def test_implicit_values_counts_errors_name_the_field(tmp_path):
  ratings = load_dataset(str(table(tmp_path / "r.csv", ["user", "item", "rating"],
                                   [r[:3] for r in ROWS])))
  with pytest.raises(ValueError, match="implicit_values='counts'.*ratings"):
    pipeline.ranking_split(ratings, pipeline.DataConfig(implicit_values="counts"))
  with pytest.raises(ValueError, match="DataConfig.implicit_values must be one of"):
    pipeline.ranking_split(ratings, pipeline.DataConfig(implicit_values="weights"))
  counts = load_dataset(str(write(tmp_path / "c.tsv", LASTFM)))
  with pytest.raises(ValueError, match="implicit_values='counts'.*loo-sampled"):
    pipeline.resolve(pipeline.DataConfig(protocol="loo-sampled", implicit_values="counts"), counts)
  with pytest.raises(ValueError, match="binarize_threshold=2 turns them into 1.0"):
    pipeline.resolve(pipeline.DataConfig(binarize_threshold=2, implicit_values="counts"), counts)


def test_strong_temporal_keeps_counts(tmp_path):
  rng = np.random.default_rng(0)
  lines = ["user,item,count,timestamp"]
  for u in range(40):
    for k, i in enumerate(rng.choice(30, size=8, replace=False)):
      lines.append(f"u{u},i{i},{1 + (u + k) % 6},{1000 * u + k}")
  ds = load_dataset(str(write(tmp_path / "t.csv", "\n".join(lines) + "\n")))
  clicks, _ = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong-temporal"))
  counts, info = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong-temporal",
                                                                implicit_values="counts"))
  full = ds.interactions.to_csr()
  assert (counts.train != 0).toarray().tolist() == (clicks.train != 0).toarray().tolist()
  expected = full[counts.train_users][:, counts.items].multiply(clicks.train)
  assert np.allclose(counts.train.toarray(), expected.toarray())
  assert counts.train.data.max() > 1
  fold = counts.test.fold_in
  assert np.allclose(fold.toarray(), full[counts.test.users][:, counts.items]
                     .multiply(clicks.test.fold_in).toarray())
  assert (counts.test.held_out != clicks.test.held_out).nnz == 0
  assert any("implicit_values=counts" in c for c in info["conversions"])


# ---------------------------------------------------------------------------
# ISO-8601 timestamps.
# ---------------------------------------------------------------------------


def test_iso_timestamps(tmp_path):
  p = write(tmp_path / "e.csv", "user,item,date\n1,2,2024-05-01\n1,3,2024-05-01T12:30:00\n"
            "2,3,2024-05-01T12:30:00Z\n2,2,2024-05-01T12:30:00+02:00\n3,2,1714521600\n")
  ds = load_dataset(str(p))
  base = int(datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc).timestamp())
  assert ds.interactions.timestamps.dtype == np.int64
  assert ds.interactions.timestamps.tolist() == [base, base + 45000, base + 45000,
                                                 base + 45000 - 7200, 1714521600]
  assert ("e.csv: timestamp column 'date': 4 ISO-8601 dates/times converted to int64 epoch "
          "seconds (UTC where no offset is given)") in ds.notes
  headerless = write(tmp_path / "h.tsv", "a\tx\t4\t2024-05-02\nb\tx\t3\t2024-05-03T00:00:00Z\n")
  x = readers.read_interactions(headerless)
  assert x.timestamps.tolist() == [base + 86400, base + 2 * 86400] and x.n_events == 2
  for bad in ("2024-13-01", "May 1 2024", "2024-05-01T25:00", "2024-5-1", "1.5e9"):
    q = write(tmp_path / "bad.csv", f"user,item,timestamp\n1,2,2024-05-01\n1,3,{bad}\n")
    with pytest.raises(DataFormatError) as e:
      readers.read_interactions(q)
    assert e.value.line == 3 and "bad.csv:3" in str(e.value) and "ISO-8601" in str(e.value)


# ---------------------------------------------------------------------------
# 4. binarize_threshold=None means no binarization.
# ---------------------------------------------------------------------------


def test_binarize_threshold_none_auto_and_bad_string(tmp_path):
  rows = [(u, 100 + i, 1 + (u * 7 + i * 3) % 5) for u in range(1, 9) for i in range(2 * u + 2)]
  ds = load_dataset(str(table(tmp_path / "r.csv", ["user", "item", "rating"], rows)))
  everything, info = pipeline.ranking_split(ds, pipeline.DataConfig(
      binarize_threshold=None, min_user_count=None, heldout_users=0))
  assert info["resolved"]["binarize_threshold"] is None
  assert everything.train.nnz == len(rows) and everything.train.shape == ds.interactions.shape
  assert any(c.startswith("ratings became clicks (1.0)") for c in info["conversions"])
  unbinarized, _ = pipeline.ranking_split(ds, pipeline.DataConfig(binarize_threshold=None,
                                                                  heldout_users=0))
  assert unbinarized.train.nnz == sum(1 for u, _, _ in rows if 2 * u + 2 >= 5)
  auto, info = pipeline.ranking_split(ds, pipeline.DataConfig(heldout_users=0))
  positives = [(u, i) for u, i, r in rows if r >= 4]
  per_user = {u: sum(1 for v, _ in positives if v == u) for u, _ in positives}
  kept = {(str(u), str(i)) for u, i in positives if per_user[u] >= 5}
  assert kept and info["resolved"]["binarize_threshold"] == 4.0
  assert info["resolved"]["min_user_count"] == 5
  assert pairs(auto.train, ds.interactions.user_ids[auto.train_users],
               ds.interactions.item_ids[auto.items]) == kept
  with pytest.raises(ValueError, match="DataConfig.binarize_threshold must be a number, None"):
    pipeline.resolve(pipeline.DataConfig(binarize_threshold="none"), ds)
  none = pipeline.resolve(pipeline.DataConfig(min_user_count=None, heldout_users=None), ds)
  assert (none.min_user_count, none.heldout_users, none.binarize_threshold) == (None, 0, 4.0)


def test_registry_datasets_resolve_auto_protocol_to_strong():
  inter = Interactions(users=np.arange(6), items=np.zeros(6, np.int64),
                       values=np.ones(6, np.float32), timestamps=None,
                       user_ids=np.arange(6), item_ids=np.arange(1))
  for name in ("ml-100k", "gowalla", "citeulike-a", "msd", "ml-20m"):
    assert pipeline.resolve(pipeline.DataConfig(), Dataset(name, inter)).protocol == "strong"
  ml20 = pipeline.resolve(pipeline.DataConfig(), Dataset("ml-20m", inter, kind="explicit"))
  assert (ml20.heldout_users, ml20.binarize_threshold, ml20.min_user_count) == (10_000, 4.0, 5)


# ---------------------------------------------------------------------------
# 5. Folders: given train/test splits, and files that are not interactions.
# ---------------------------------------------------------------------------


def test_train_test_folder_keeps_its_split(tmp_path):
  d = tmp_path / "mine"
  write(d / "train.csv", "user,item\nann,a\nann,b\nbob,b\nbob,c\ncid,a\n")
  write(d / "test.csv", "user,item\nann,c\nbob,a\ndan,b\n")
  write(d / "items.txt", "org_id remap_id\n5 0\n")
  ds = load_dataset(str(d))
  assert set(ds.predefined_splits) == {"given"} and ds.kind == "implicit"
  assert any("a given split" in n for n in ds.notes)
  assert "files ignored (not train/valid/test): items.txt" in ds.notes
  split, info = pipeline.ranking_split(ds, pipeline.DataConfig())
  assert info["resolved"]["protocol"] == "given" and split.protocol == "given"
  x = ds.interactions
  users, items = x.user_ids[split.test.users], x.item_ids[split.items]
  assert pairs(split.test.held_out, users, items) == {("ann", "c"), ("bob", "a"), ("dan", "b")}
  assert pairs(split.train, x.user_ids[split.train_users], items) == {
      ("ann", "a"), ("ann", "b"), ("bob", "b"), ("bob", "c"), ("cid", "a")}
  assert (split.test.fold_in != split.train).nnz == 0  # fold-in = each user's train row
  assert split.validation is split.test
  merged, info = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong",
                                                                heldout_users=0))
  assert merged.protocol == "strong" and info["preprocessed"]["interactions"] == 8
  # Held-out users with 2-3 items have nothing to hold out: a clear stop, not NaN metrics.
  with pytest.raises(ValueError, match="nothing to evaluate: none of its 1 validation and 1 "
                     "test users has a held-out item"):
    pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong", heldout_users=1))


def test_train_valid_test_folder_uses_the_validation_file(tmp_path):
  d = tmp_path / "r"
  train = [(u, i, 5) for u in range(1, 6) for i in range(10, 14)]
  table(d / "train.tsv", ["userId", "movieId", "rating"], train, "\t")
  table(d / "validation.tsv", ["userId", "movieId", "rating"],
        [(1, 20, 5), (2, 21, 4), (3, 20, 2)], "\t")
  table(d / "test.tsv", ["userId", "movieId", "rating"],
        [(1, 21, 4), (4, 20, 1), (6, 20, 5), (2, 10, 5)], "\t")
  ds = load_dataset(str(d))
  assert ds.kind == "explicit" and len(ds.predefined_splits["given"]) == 3
  split, info = pipeline.ranking_split(ds, pipeline.DataConfig())
  x = ds.interactions
  items = x.item_ids[split.items]
  assert pairs(split.validation.held_out, x.user_ids[split.validation.users], items) == {
      ("1", "20"), ("2", "21")}  # rating 2 < 4: dropped by the ratings >= 4 default
  assert pairs(split.test.held_out, x.user_ids[split.test.users], items) == {
      ("1", "21"), ("6", "20"), ("2", "10")}
  assert (split.validation.fold_in != split.train).nnz == 0
  conv = info["conversions"]
  assert any(c.startswith("ratings binarized: ") and "validation 2 of 3" in c for c in conv), conv
  assert any("also in train: 1" in c for c in conv), conv
  assert not any("users with <" in c for c in conv)  # no min-count filter on a given split
  raw, info = pipeline.ranking_split(ds, pipeline.DataConfig(binarize_threshold=None))
  assert raw.test.held_out.nnz == 4 and raw.validation.held_out.nnz == 3


def test_lastfm_style_folder_names_the_files_that_are_not_interactions(tmp_path):
  d = tmp_path / "hetrec-lastfm"
  write(d / "user_artists.dat", LASTFM)
  write(d / "artists.dat", "id\tname\turl\tpictureURL\n1\tMALICE MIZER\thttp://w\thttp://p\n")
  write(d / "tags.dat", "tagID\ttagValue\n1\tmetal\n2\tchill out\n")
  write(d / "readme.txt", "about")
  with pytest.raises(DataFormatError) as e:
    load_dataset(str(d))
  lines = str(e.value).splitlines()
  assert "not every file in this folder is interaction data" in lines[0]
  assert "user_artists.dat" in lines[0]  # the hint names the file to load
  by_file = {l.strip().split(":")[0]: l for l in lines[1:]}
  assert set(by_file) == {"artists.dat", "tags.dat", "user_artists.dat"}
  assert "not interaction data: line 1: its header ('id', 'name', 'url', 'pictureURL') names no " \
         "user and no item column" in by_file["artists.dat"]
  assert "not interaction data" in by_file["tags.dat"]
  assert "interactions (implicit): 7 events" in by_file["user_artists.dat"]
  ds = load_dataset(str(d / "user_artists.dat"))
  assert ds.interactions.n_events == 7


# ---------------------------------------------------------------------------
# 6. Conversions recorded; filters that empty the data raise.
# ---------------------------------------------------------------------------


def test_conversions_are_listed_once(tmp_path):
  rows = [(u, i, 5 if (u + i) % 3 else 2) for u in range(30) for i in range(u % 9 + 2)]
  rows.append((8, 0, 5))  # a repeated rating of a kept pair
  ds = load_dataset(str(table(tmp_path / "r.csv", ["user", "item", "rating"], rows)))
  _, info = pipeline.ranking_split(ds, pipeline.DataConfig(heldout_users=3))
  conv = info["conversions"]
  n_pos = sum(1 for u, i, r in rows if r >= 4)
  assert conv[0] == (f"ratings binarized: {n_pos:,} of {len(rows):,} events have rating >= 4 "
                     "and become 1.0; the rest are dropped")
  assert conv[1].startswith("users with < 5 items dropped: ")
  assert "duplicate (user, item) pairs merged: 1 repeated event (a pair counts once)" in conv
  assert len(conv) == len(set(conv))
  assert all(isinstance(c, str) and "\n" not in c for c in conv)


@pytest.mark.parametrize("text,config,fragments", [
    ("user,item,rating\n1,2,1\n1,3,3\n2,3,2\n", {},
     ["binarize_threshold=4 drops every event", "3 events", "largest is 3"]),
    ("user,item,rating\n1,2,5\n1,3,5\n2,3,5\n", {},
     ["min_user_count=5 drops every user", "the most is 2"]),
    ("user,item\n1,2\n2,2\n", {"min_item_count": 3},
     ["min_item_count=3 drops every item", "the most is 2"]),
])
def test_filters_that_empty_the_data_raise(tmp_path, text, config, fragments):
  ds = load_dataset(str(write(tmp_path / "tiny.csv", text)))
  with pytest.raises(ValueError) as e:
    pipeline.ranking_split(ds, pipeline.DataConfig(**config))
  msg = str(e.value)
  assert "tiny.csv" in msg
  for f in fragments:
    assert f in msg, msg


@pytest.mark.parametrize("text,got", [("", "an empty file"), ("\n\n", "an empty file"),
                                      ("user,item,rating\n", "only a header line")])
def test_empty_and_header_only_files_raise(tmp_path, text, got):
  p = write(tmp_path / "e.csv", text)
  with pytest.raises(ValueError) as e:
    load_dataset(str(p))
  assert "e.csv" in str(e.value) and got in str(e.value)


def test_zero_heldout_users_give_empty_eval_sets(tmp_path):
  ds = load_dataset(str(write(tmp_path / "c.tsv", LASTFM)))
  for heldout in (0, 0.0, None):
    split, _ = pipeline.ranking_split(ds, pipeline.DataConfig(heldout_users=heldout))
    n_items = split.train.shape[1]
    for e in (split.validation, split.test):
      assert e.fold_in.shape == e.held_out.shape == (0, n_items) and e.users.shape == (0,)
    assert split.train.shape[0] == ds.interactions.n_users


def test_split_indices_are_the_datasets_after_preprocessing_compacts(tmp_path):
  # Items 0-2 are only ever rated 1 and users 0-1 have < 5 positives: binarization and
  # the min-count filter drop them, so the preprocessed log has fewer ids than the file.
  rng = np.random.default_rng(0)
  lines = ["user,item,rating,timestamp"]
  for u in range(60):
    for k, i in enumerate(rng.choice(25, size=12, replace=False)):
      r = 1 if i < 3 or u < 2 else 5
      lines.append(f"u{u},i{i},{r},{100 * u + k}")
  ds = load_dataset(str(write(tmp_path / "r.csv", "\n".join(lines) + "\n")))
  x = ds.interactions
  positives = {tuple(l.split(",")[:2]) for l in lines[1:] if l.split(",")[2] == "5"}
  config = dict(heldout_users=6)
  strong, _ = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong", **config))
  temporal, _ = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong-temporal",
                                                               **config))
  for s in (strong, temporal):
    items = x.item_ids[s.items]
    assert not {"i0", "i1", "i2"} & set(items.tolist())
    got = pairs(s.train, x.user_ids[s.train_users], items)
    for e in (s.validation, s.test):
      got |= pairs(e.fold_in + e.held_out, x.user_ids[e.users], items)
    assert got and got <= positives
  np.testing.assert_array_equal(strong.items, temporal.items)
  np.testing.assert_array_equal(strong.train_users, temporal.train_users)
