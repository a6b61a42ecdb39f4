"""Tests for recjax.data.registry: resolution, downloads (file:// only), paths, shared data."""

import hashlib
import time
import zipfile
from pathlib import Path

import pytest

from recjax.data import registry
from recjax.data.registry import ChecksumError, Download, load_dataset
from recjax.data.types import DataFormatError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} (repo/../shared/data) is missing")

U_DATA = "1\t10\t4\t100\n2\t10\t5\t101\n1\t20\t3\t102\n"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
  """No real env roots or ~/.cache: the cache dir is a fresh temp folder."""
  monkeypatch.delenv("RECJAX_DATA_DIR", raising=False)
  monkeypatch.setenv("RECJAX_CACHE_DIR", str(tmp_path / "env-cache"))


def write(path: Path, text: str) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def make_zip(path: Path, members: dict) -> tuple[str, str]:
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, "w") as z:
    for name, text in members.items():
      z.writestr(name, text)
  data = path.read_bytes()
  return hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------
# Specs and names.
# ---------------------------------------------------------------------------


def test_names_and_specs():
  names = registry.list_datasets()
  for n in ["ml-100k", "ml-1m", "ml-20m", "netflix", "msd", "ml-1m-lightgcn", "gowalla",
            "citeulike-a", "citeulike-t", "beauty", "sports", "toys", "yelp", "lastfm-s3rec"]:
    assert n in names
  assert names == sorted(registry.DATASETS)
  ml20 = registry.dataset_spec("ml-20m")
  assert (ml20.heldout_users, ml20.binarize_threshold, ml20.min_user_count) == (10_000, 4.0, 5)
  nf = registry.dataset_spec("netflix")
  assert (nf.heldout_users, nf.binarize_threshold, nf.min_user_count) == (40_000, 4.0, 5)
  msd = registry.dataset_spec("msd")
  assert (msd.heldout_users, msd.min_user_count, msd.min_item_count) == (50_000, 20, 200)
  assert msd.binarize_threshold is None
  for n in ["ml-100k", "ml-1m", "gowalla", "citeulike-a", "beauty"]:
    assert registry.dataset_spec(n).heldout_users is None
  assert registry.dataset_spec("movielens-100k").name == "ml-100k"
  assert "netflix" not in registry.DOWNLOADS


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError) as e:
    load_dataset("ml-3m")
  for n in ["ml-100k", "gowalla", "citeulike-a", "beauty"]:
    assert n in str(e.value)
  with pytest.raises(ValueError, match="valid names"):
    registry.dataset_spec("nope")


# ---------------------------------------------------------------------------
# Resolution.
# ---------------------------------------------------------------------------


def test_missing_dataset_names_every_path(tmp_path, monkeypatch):
  monkeypatch.setenv("RECJAX_DATA_DIR", str(tmp_path / "env"))
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("ml-100k", data_dir=tmp_path / "dd", cache_dir=tmp_path / "cc", download=False)
  msg = str(e.value)
  for root in ["dd", "env", "cc"]:
    for folder in ["ml-100k", "movielens-100k"]:
      assert str(tmp_path / root / folder) in msg
  assert "--data_dir" in msg and "RECJAX_DATA_DIR" in msg
  assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in msg
  with pytest.raises(FileNotFoundError, match="cannot be downloaded"):
    load_dataset("netflix", data_dir=tmp_path / "dd")


def test_resolution_order(tmp_path, monkeypatch):
  write(tmp_path / "dd" / "ml-100k" / "u.data", "1\t1\t1\t1\n")
  write(tmp_path / "env" / "movielens-100k" / "u.data", "1\t1\t1\t1\n2\t2\t2\t2\n")
  write(tmp_path / "cc" / "ml-100k" / "u.data", "1\t1\t1\t1\n2\t2\t2\t2\n3\t3\t3\t3\n")
  monkeypatch.setenv("RECJAX_DATA_DIR", str(tmp_path / "env"))
  kw = dict(cache_dir=tmp_path / "cc", download=False)
  assert load_dataset("ml-100k", data_dir=tmp_path / "dd", **kw).interactions.n_events == 1
  assert load_dataset("ml-100k", data_dir=tmp_path / "none", **kw).interactions.n_events == 2
  monkeypatch.delenv("RECJAX_DATA_DIR")
  ds = load_dataset("ml-100k", **kw)
  assert ds.interactions.n_events == 3 and ds.kind == "explicit" and ds.name == "ml-100k"


def test_malformed_registry_file_raises(tmp_path):
  write(tmp_path / "ml-100k" / "u.data", "1\t1\t1\t1\n1\t1\n")
  with pytest.raises(DataFormatError, match=r"u.data:2: expected 4 tab-separated"):
    load_dataset("ml-100k", data_dir=tmp_path, download=False)


def test_small_citeulike_layout(tmp_path):
  root = tmp_path / "data"
  folder = root / "citeulike-t"
  write(folder / "users.dat", "2 0 3\n1 1\n")
  write(folder / "vocabulary.dat", "alpha\nbeta\ngamma")
  write(folder / "mult.dat", "1 0:2\n0\n2 1:1 2:1\n1 2:4\n" + "0\n" * (25_975 - 4))
  write(folder / "cvae-splits" / "cf-train-1-users.dat", "1 0\n1 1\n")
  write(folder / "cvae-splits" / "cf-test-1-users.dat", "1 3\n0\n")
  ds = load_dataset("citeulike-t", data_dir=root)
  assert ds.interactions.shape == (7947, 25_975)  # documented counts fix the id space
  assert ds.item_content.shape == (25_975, 3)
  assert ds.item_content[2].toarray().tolist() == [[0, 1, 1]]
  assert ds.vocabulary == ["alpha", "beta", "gamma"]
  train, test = ds.predefined_splits["P1"]
  assert train.shape == test.shape == ds.interactions.shape
  write(folder / "mult.dat", "1 0:2\n")
  with pytest.raises(DataFormatError, match="expected 25975 documents"):
    load_dataset("citeulike-t", data_dir=root)


# ---------------------------------------------------------------------------
# Downloads (file:// URLs; this machine has no network).
# ---------------------------------------------------------------------------


def ml100k_zip(tmp_path):
  src = tmp_path / "server" / "ml-100k.zip"
  sha, md5 = make_zip(src, {"ml-100k/u.data": U_DATA, "ml-100k/README": "hi"})
  return src, sha, md5


def test_download_verify_and_cache(tmp_path):
  src, sha, md5 = ml100k_zip(tmp_path)
  table = {"ml-100k": Download(src.as_uri(), "ml-100k.zip", "ml-100k", "ml-100k", sha256=sha)}
  cache = tmp_path / "cache"
  ds = load_dataset("ml-100k", data_dir=tmp_path / "empty", cache_dir=cache, downloads=table)
  assert ds.interactions.n_events == 3
  assert (cache / "ml-100k.zip").is_file() and (cache / "ml-100k" / "u.data").is_file()
  assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp leftovers
  src.unlink()  # second load is served from the cache
  assert load_dataset("ml-100k", cache_dir=cache, downloads=table).interactions.n_events == 3


def test_download_sha256_mismatch_leaves_nothing(tmp_path):
  src, sha, md5 = ml100k_zip(tmp_path)
  table = {"ml-100k": Download(src.as_uri(), "ml-100k.zip", "ml-100k", "ml-100k",
                               sha256="0" * 64)}
  cache = tmp_path / "cache"
  with pytest.raises(ChecksumError, match="sha256"):
    load_dataset("ml-100k", cache_dir=cache, downloads=table)
  assert list(cache.iterdir()) == []


def test_download_md5_only(tmp_path):
  src, sha, md5 = ml100k_zip(tmp_path)
  cache = tmp_path / "cache"
  bad = {"ml-100k": Download(src.as_uri(), "ml-100k.zip", "ml-100k", "ml-100k", md5="f" * 32)}
  with pytest.raises(ChecksumError, match="md5"):
    registry.fetch("ml-100k", cache, bad)
  assert list(cache.iterdir()) == []
  good = {"ml-100k": Download(src.as_uri(), "ml-100k.zip", "ml-100k", "ml-100k", md5=md5)}
  assert registry.fetch("ml-100k", cache, good) == cache / "ml-100k"


def test_download_without_hash_warns_with_sha256(tmp_path):
  src = tmp_path / "server" / "train_triplets.txt.zip"
  sha, _ = make_zip(src, {"train_triplets.txt": "u1\ts1\t2\nu2\ts1\t1\nu1\ts1\t3\n"})
  table = {"msd": Download(src.as_uri(), "train_triplets.txt.zip", "msd", None)}
  with pytest.warns(UserWarning, match=f"sha256 {sha}.*NOT verified"):
    ds = load_dataset("msd", cache_dir=tmp_path / "cache", downloads=table)
  x = ds.interactions
  assert x.user_ids.tolist() == ["u1", "u2"] and x.to_csr().toarray().tolist() == [[5], [1]]
  assert (tmp_path / "cache" / "msd" / "train_triplets.txt").is_file()


def test_download_failure_is_one_file_not_found(tmp_path):
  table = {"ml-1m": Download((tmp_path / "absent.zip").as_uri(), "ml-1m.zip", "ml-1m", "ml-1m",
                             sha256="0" * 64)}
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("ml-1m", data_dir=tmp_path / "dd", cache_dir=tmp_path / "cache",
                 downloads=table)
  msg = str(e.value)
  assert str(tmp_path / "dd" / "ml-1m") in msg and "absent.zip" in msg and "failed" in msg
  assert not [p for p in (tmp_path / "cache").iterdir()]


def test_zip_with_unsafe_member_rejected(tmp_path):
  src = tmp_path / "server" / "ml-100k.zip"
  sha, _ = make_zip(src, {"../evil.txt": "x", "ml-100k/u.data": U_DATA})
  table = {"ml-100k": Download(src.as_uri(), "ml-100k.zip", "ml-100k", "ml-100k", sha256=sha)}
  with pytest.raises(DataFormatError, match="relative member paths"):
    registry.fetch("ml-100k", tmp_path / "cache", table)
  assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "ml-100k").exists()


# ---------------------------------------------------------------------------
# Generic paths.
# ---------------------------------------------------------------------------


def test_path_file_and_lightgcn_folder(tmp_path):
  f = write(tmp_path / "ratings.csv", "user,item,rating\na,x,4\nb,x,2\n")
  ds = load_dataset(str(f))
  assert ds.kind == "explicit" and ds.interactions.shape == (2, 1)
  lg = tmp_path / "lg"
  write(lg / "train.txt", "0 1 2\n1 0\n")
  write(lg / "test.txt", "0 3\n1 2 1\n")
  write(lg / "README.md", "not data")
  ds = load_dataset(str(lg))
  x = ds.interactions
  assert ds.kind == "implicit" and x.shape == (2, 4) and x.n_events == 6
  assert x.items.tolist() == [1, 2, 0, 3, 2, 1]  # train first, then test


def test_path_mixed_formats_and_missing(tmp_path):
  write(tmp_path / "m" / "a.txt", "0 1 2\n1 0\n")
  write(tmp_path / "m" / "b.csv", "u,i\n1,2\n")
  with pytest.raises(ValueError, match="not all of one format"):
    load_dataset(str(tmp_path / "m"))
  with pytest.raises(ValueError, match="valid names"):
    load_dataset(str(tmp_path / "nothing-here"))


# ---------------------------------------------------------------------------
# Real shared data (documented counts).
# ---------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name,counts,kind", [
    ("ml-100k", (943, 1682, 100_000), "explicit"),
    ("ml-1m-lightgcn", (6039, 3628, 836_478), "implicit"),
    ("gowalla", (29_858, 40_981, 1_027_370), "implicit"),
    ("beauty", (22_363, 12_101, 198_502), "sequence"),
])
def test_shared_counts(name, counts, kind):
  t = time.perf_counter()
  ds = load_dataset(name, data_dir=SHARED, download=False)
  took = time.perf_counter() - t
  x = ds.interactions
  assert (x.n_users, x.n_items, x.n_events) == counts
  assert x.to_csr().nnz == counts[2]  # no duplicate pairs in these copies
  assert ds.kind == kind
  assert took < 10, f"{name} took {took:.1f}s"


@needs_shared
def test_shared_citeulike_a():
  ds = load_dataset("citeulike-a", data_dir=SHARED, download=False)
  x = ds.interactions
  assert (x.n_users, x.n_items, x.n_events) == (5551, 16_980, 204_986)
  assert ds.item_content is None and len(ds.vocabulary) == 8000
  assert len(ds.item_text) == 16_980
  assert ds.item_text[0] == "The metabolic world of Escherichia coli is not small"
  train, test = ds.predefined_splits["P1"]
  assert train.n_events == 5551 and test.n_events == 199_435
  assert ds.predefined_splits["P10"][0].n_events == 55_510
  both = (train.to_csr() + test.to_csr()) > 0
  assert (both != (x.to_csr() > 0)).nnz == 0  # train + test = users.dat, per user


@needs_shared
def test_shared_citeulike_t():
  ds = load_dataset("citeulike-t", data_dir=SHARED, download=False)
  x = ds.interactions
  assert (x.n_users, x.n_items, x.n_events) == (7947, 25_975, 134_860)
  assert ds.item_content.shape == (25_975, 20_000) and ds.item_content.nnz == 490_708
  assert len(ds.vocabulary) == 20_000 and ds.item_text is None
  assert ds.predefined_splits["P1"][0].n_events == 7947
