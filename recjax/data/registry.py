"""Datasets by name: where to find them, how to read them, how to download them.

`load_dataset("ml-1m")` looks for the dataset's folder under, in order, the
`data_dir` argument, `$RECJAX_DATA_DIR` and the cache dir (`cache_dir`,
`$RECJAX_CACHE_DIR` or `~/.cache/recjax`).  When it is nowhere and its licence
allows, the official archive is downloaded into the cache dir (temp file +
rename), checked against its published checksum and unpacked.  Otherwise one
`FileNotFoundError` lists every path tried.

`load_dataset` also takes a path to a file or folder in a generic format
(`recjax.data.user_files`): a table whose header names its columns, a folder
of such files (merged), or a folder of train/[valid/]test files, used as the
given split.  What the reader decided is in `Dataset.notes`.  The download
itself (checksums, atomic writes, unpacking) is `recjax.data.downloads`.

Published data are never shipped with recjax; several licences (MovieLens)
forbid redistribution.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Callable, Literal, Mapping

from recjax.data import readers
from recjax.data.downloads import ChecksumError, Download, archive_matches, download_file, extract
from recjax.data.types import DataFormatError, Dataset, Interactions
from recjax.data.user_files import load_path

__all__ = [
    "Download", "DatasetSpec", "DATASETS", "DOWNLOADS", "ChecksumError", "load_dataset",
    "dataset_spec", "list_datasets", "find_dataset", "fetch", "default_cache_dir",
]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to find and read one dataset, plus the facts protocols need about it.

  Attributes:
    name: registry name.
    description: one line on what it is and where it comes from.
    folders: folder names that may hold it under a data root, tried in order.
    loader: how to read the folder (a key of `_LOADERS`).
    files: the loader's input files inside the folder, in merge order.
    kind: "explicit", "implicit" or "sequence" (becomes Dataset.kind).
    n_users, n_items, n_events: documented counts (None where not documented);
      for id-space formats (citeulike, LightGCN) n_users/n_items fix the size.
    ids: for one-line-per-user files, "raw" (dense index == raw id) or "sorted".
    titles: (folder, file) of item titles, looked for beside the data folder.
    heldout_users: held-out users for strong generalization in the Mult-VAE
      paper (Liang et al., WWW 2018); None = use a 10% default elsewhere.
    binarize_threshold: Mult-VAE keeps ratings >= this as positives (None: all).
    min_user_count: Mult-VAE keeps users with at least this many positives.
    min_item_count: Mult-VAE keeps items with at least this many users
      (applied before the user filter, as in its code).
    licence: short note on the terms of use.
  """

  name: str
  description: str
  folders: tuple[str, ...]
  loader: str
  files: tuple[str, ...] = ()
  kind: Literal["explicit", "implicit", "sequence"] = "implicit"
  n_users: int | None = None
  n_items: int | None = None
  n_events: int | None = None
  ids: str = "sorted"
  titles: tuple[str, str] | None = None
  heldout_users: int | None = None
  binarize_threshold: float | None = None
  min_user_count: int | None = None
  min_item_count: int | None = None
  licence: str = ""


_ML_TERMS = "GroupLens: research use, no redistribution, acknowledge in publications"
_S3REC = "S3-Rec (Zhou et al., CIKM 2020) 5-core sequence, one user a line, items in time order"

DATASETS: dict[str, DatasetSpec] = {
    # Official releases (downloadable where the licence allows).
    "ml-100k": DatasetSpec(
        "ml-100k", "MovieLens 100K ratings (u.data)", ("ml-100k", "movielens-100k"),
        "movielens", ("u.data",), "explicit", 943, 1682, 100_000, licence=_ML_TERMS),
    "ml-1m": DatasetSpec(
        "ml-1m", "MovieLens 1M ratings (ratings.dat)", ("ml-1m", "movielens-1m"), "movielens",
        ("ratings.dat",), "explicit", 6040, 3706, 1_000_209, licence=_ML_TERMS),
    "ml-10m": DatasetSpec(
        "ml-10m", "MovieLens 10M ratings (ratings.dat)", ("ml-10M100K", "ml-10m", "movielens-10m"),
        "movielens", ("ratings.dat",), "explicit", 69_878, 10_677, 10_000_054, licence=_ML_TERMS),
    "ml-20m": DatasetSpec(
        "ml-20m", "MovieLens 20M ratings (ratings.csv)", ("ml-20m", "movielens-20m"), "movielens",
        ("ratings.csv",), "explicit", 138_493, 26_744, 20_000_263, heldout_users=10_000,
        binarize_threshold=4.0, min_user_count=5, licence=_ML_TERMS),
    "ml-25m": DatasetSpec(
        "ml-25m", "MovieLens 25M ratings (ratings.csv)", ("ml-25m", "movielens-25m"), "movielens",
        ("ratings.csv",), "explicit", 162_541, 59_047, 25_000_095, licence=_ML_TERMS),
    "netflix": DatasetSpec(
        "netflix", "Netflix Prize training set (training_set/mv_*.txt or combined_data_*.txt)",
        ("netflix", "netflix-prize", "nf_prize_dataset", "netflix-prize-data"), "netflix",
        (), "explicit", 480_189, 17_770, 100_480_507, heldout_users=40_000,
        binarize_threshold=4.0, min_user_count=5,
        licence="Netflix Prize rules: no official download any more; bring your own copy"),
    "msd": DatasetSpec(
        "msd", "Million Song Dataset Echo Nest taste profile (train_triplets.txt)",
        ("msd", "msd-taste-profile", "taste-profile"), "msd", ("train_triplets.txt",),
        "implicit", 1_019_318, 384_546, 48_373_586, heldout_users=50_000,
        min_user_count=20, min_item_count=200,
        licence="MSD / Echo Nest taste profile: research use, cite Bertin-Mahieux et al. 2011"),
    # Copies in the shared data folder (see each folder's SOURCE.md).
    "ml-1m-lightgcn": DatasetSpec(
        "ml-1m-lightgcn",
        "ML-1M ratings >= 3 as implicit pairs, LightGCN++ train/valid/test merged",
        ("movielens-1m-lightgcnpp", "ml-1m-lightgcnpp", "ml-1m-lightgcn"), "user_lines",
        ("train.txt", "valid.txt", "test.txt"), "implicit", 6039, 3628, 836_478, ids="raw",
        licence=_ML_TERMS),
    "gowalla": DatasetSpec(
        "gowalla", "Gowalla check-ins, NGCF/LightGCN split, train+test merged",
        ("gowalla-lightgcn", "gowalla"), "user_lines", ("train.txt", "test.txt"), "implicit",
        29_858, 40_981, 1_027_370, ids="raw", licence="no licence stated; cite SNAP and LightGCN"),
    "citeulike-a": DatasetSpec(
        "citeulike-a", "citeulike-a libraries, vocabulary, CDL/CVAE P1/P10 splits; titles beside",
        ("citeulike-a",), "citeulike", ("users.dat",), "implicit", 5551, 16_980, 204_986,
        titles=("citeulike-a-titles", "citeutitles.txt"),
        licence="research data; cite Wang & Blei 2011 and Wang, Chen & Li 2013"),
    "citeulike-t": DatasetSpec(
        "citeulike-t", "citeulike-t libraries, mult.dat bag of words, P1/P10 splits",
        ("citeulike-t",), "citeulike", ("users.dat",), "implicit", 7947, 25_975, 134_860,
        licence="research data; cite Wang, Chen & Li 2013"),
    "beauty": DatasetSpec(
        "beauty", f"Amazon Beauty, {_S3REC}", ("s3rec-sequences",), "user_lines",
        ("Beauty.txt",), "sequence", 22_363, 12_101, 198_502, licence="Amazon review data"),
    "sports": DatasetSpec(
        "sports", f"Amazon Sports_and_Outdoors, {_S3REC}", ("s3rec-sequences",), "user_lines",
        ("Sports_and_Outdoors.txt",), "sequence", 35_598, 18_357, 296_337,
        licence="Amazon review data"),
    "toys": DatasetSpec(
        "toys", f"Amazon Toys_and_Games, {_S3REC}", ("s3rec-sequences",), "user_lines",
        ("Toys_and_Games.txt",), "sequence", 19_412, 11_924, 167_597,
        licence="Amazon review data"),
    "yelp": DatasetSpec(
        "yelp", f"Yelp 2019, {_S3REC}", ("s3rec-sequences",), "user_lines", ("Yelp.txt",),
        "sequence", 30_431, 20_033, 316_354, licence="Yelp dataset terms: non-commercial"),
    "lastfm-s3rec": DatasetSpec(
        "lastfm-s3rec", f"HetRec 2011 Last.fm tagging, {_S3REC}", ("s3rec-sequences",),
        "user_lines", ("LastFM.txt",), "sequence", 1090, 3646, 52_551,
        licence="HetRec 2011: research use"),
}

_ALIASES = {
    "movielens-100k": "ml-100k", "ml-1m-lightgcnpp": "ml-1m-lightgcn",
    "movielens-1m-lightgcnpp": "ml-1m-lightgcn", "gowalla-lightgcn": "gowalla",
    "sports_and_outdoors": "sports", "toys_and_games": "toys", "lastfm": "lastfm-s3rec",
    "netflix-prize": "netflix", "msd-taste-profile": "msd",
}

# Official archives.  GroupLens publishes an MD5 beside each zip
# (https://files.grouplens.org/datasets/movielens/<name>.zip.md5); the SHA-256
# values of ml-100k.zip and ml-1m.zip are the ones computed and recorded by
# several independent projects (each agreeing with the GroupLens MD5); no
# SHA-256 was found for ml-10m/ml-20m/ml-25m, so those are checked by the
# GroupLens MD5 only.  No checksum is published for the MSD taste profile
# zip, so it is not verified: its computed sha256 is reported in a warning.
# Netflix Prize data has no official download any more.
_GL = "https://files.grouplens.org/datasets/movielens/"
DOWNLOADS: dict[str, Download] = {
    "ml-100k": Download(
        _GL + "ml-100k.zip", "ml-100k.zip", "ml-100k", "ml-100k",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        md5="0e33842e24a9c977be4e0107933c0723"),
    "ml-1m": Download(
        _GL + "ml-1m.zip", "ml-1m.zip", "ml-1m", "ml-1m",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        md5="c4d9eecfca2ab87c1945afe126590906"),
    "ml-10m": Download(_GL + "ml-10m.zip", "ml-10m.zip", "ml-10M100K", "ml-10M100K",
                       md5="ce571fd55effeba0271552578f2648bd"),
    "ml-20m": Download(_GL + "ml-20m.zip", "ml-20m.zip", "ml-20m", "ml-20m",
                       md5="cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": Download(_GL + "ml-25m.zip", "ml-25m.zip", "ml-25m", "ml-25m",
                       md5="6b51fb2759a8657d3bfcbfc42b592ada"),
    "msd": Download(
        "http://millionsongdataset.com/sites/default/files/challenge/train_triplets.txt.zip",
        "train_triplets.txt.zip", "msd", None),
}


def list_datasets() -> list[str]:
  """The registry names, sorted."""
  return sorted(DATASETS)


def _canonical(name: str) -> str | None:
  key = name.strip().lower()
  if key in DATASETS:
    return key
  return _ALIASES.get(key)


def _did_you_mean(name: str) -> str:
  close = difflib.get_close_matches(str(name).strip().lower(),
                                    list(DATASETS) + list(_ALIASES), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def dataset_spec(name: str) -> DatasetSpec:
  """The spec of a registry name (or alias); ValueError listing the names otherwise."""
  key = _canonical(name)
  if key is None:
    raise ValueError(f"unknown dataset {name!r}{_did_you_mean(name)}; valid names: "
                     f"{', '.join(list_datasets())}")
  return DATASETS[key]


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """cache_dir, else $RECJAX_CACHE_DIR, else ~/.cache/recjax."""
  if cache_dir is not None:
    return Path(cache_dir).expanduser()
  env = os.environ.get("RECJAX_CACHE_DIR")
  return Path(env).expanduser() if env else Path.home() / ".cache" / "recjax"


def _roots(data_dir, cache_dir) -> list[tuple[str, Path]]:
  roots = []
  if data_dir is not None:
    roots.append(("data_dir", Path(data_dir).expanduser()))
  env = os.environ.get("RECJAX_DATA_DIR")
  if env:
    roots.append(("$RECJAX_DATA_DIR", Path(env).expanduser()))
  roots.append(("cache", default_cache_dir(cache_dir)))
  return roots


# ---------------------------------------------------------------------------
# Per-loader probes (is this folder the dataset?) and readers.
# ---------------------------------------------------------------------------


def _netflix_files(folder: Path) -> bool:
  sub = folder / "training_set"
  return ((sub.is_dir() and any(sub.glob("mv_*.txt"))) or any(folder.glob("mv_*.txt"))
          or any(folder.glob("combined_data_*.txt")))


def _probe(spec: DatasetSpec, folder: Path) -> bool:
  if not folder.is_dir():
    return False
  if spec.loader == "netflix":
    return _netflix_files(folder)
  return all((folder / f).is_file() for f in spec.files)


def _find_titles(spec: DatasetSpec, folder: Path, roots) -> Path | None:
  sub, fname = spec.titles
  for cand in [folder.parent / sub / fname, folder / fname] + [r / sub / fname for _, r in roots]:
    if cand.is_file():
      return cand
  return None


def _load_citeulike(spec: DatasetSpec, folder: Path, roots) -> Dataset:
  n_items = spec.n_items
  vocab = None
  if (folder / "vocabulary.dat").is_file():
    vocab = readers.read_vocabulary(folder / "vocabulary.dat")
  content = None
  if (folder / "mult.dat").is_file():
    content = readers.read_lda_c(folder / "mult.dat", n_words=len(vocab) if vocab else None,
                                 n_docs=n_items)
  inter = readers.read_counted_lists(folder / "users.dat", n_rows=spec.n_users, n_cols=n_items,
                                     name=spec.name)
  n_users = inter.n_users
  splits = {}
  for d in (folder / "cvae-splits", folder):
    if any(d.glob("cf-train-*-users.dat")):
      splits = readers.read_citeulike_splits(d, n_users, n_items)
      break
  text = None
  if spec.titles is not None:
    tpath = _find_titles(spec, folder, roots)
    if tpath is not None:
      text = readers.read_text_lines(tpath)
      if len(text) != n_items:
        raise DataFormatError(tpath, None,
                              f"expected {n_items} titles (one per item); got {len(text)}")
  return Dataset(spec.name, inter, item_content=content, vocabulary=vocab, item_text=text,
                 predefined_splits=splits, kind=spec.kind)


def _load_user_lines(spec: DatasetSpec, folder: Path, roots) -> Dataset:
  kw = dict(n_users=spec.n_users, n_items=spec.n_items) if spec.ids == "raw" else {}
  inter = readers.read_user_lines([folder / f for f in spec.files], ids=spec.ids,
                                  name=spec.name, **kw)
  return Dataset(spec.name, inter, kind=spec.kind)


def _renamed(inter: Interactions, name: str) -> Interactions:
  return dataclasses.replace(inter, name=name)


_LOADERS: dict[str, Callable[[DatasetSpec, Path, list], Dataset]] = {
    "movielens": lambda s, f, r: Dataset(
        s.name, _renamed(readers.read_movielens(f / s.files[0]), s.name), kind=s.kind),
    "netflix": lambda s, f, r: Dataset(
        s.name, _renamed(readers.read_netflix(f), s.name), kind=s.kind),
    "msd": lambda s, f, r: Dataset(
        s.name, _renamed(readers.read_msd_triplets(f / s.files[0]), s.name), kind=s.kind),
    "user_lines": _load_user_lines,
    "citeulike": _load_citeulike,
}


# ---------------------------------------------------------------------------
# Download.
# ---------------------------------------------------------------------------


def fetch(name: str, cache_dir: str | os.PathLike | None = None,
          downloads: Mapping[str, Download] | None = None) -> Path:
  """Downloads, verifies and unpacks a dataset's official archive; returns its folder."""
  spec = dataset_spec(name)
  table = DOWNLOADS if downloads is None else downloads
  if spec.name not in table:
    raise ValueError(f"{spec.name}: no official download ({spec.licence})")
  d = table[spec.name]
  cache = default_cache_dir(cache_dir)
  cache.mkdir(parents=True, exist_ok=True)
  archive = cache / d.archive
  if archive.exists() and not archive_matches(archive, d):
    archive.unlink()
  if not archive.exists():
    download_file(d.url, archive, d.sha256, d.md5)
  folder = cache / d.folder
  if not _probe(spec, folder):
    extract(archive, cache, d)
  if not _probe(spec, folder):
    raise DataFormatError(archive, None, f"expected {', '.join(spec.files) or 'the data files'} "
                          f"in {folder} after unpacking")
  return folder


# ---------------------------------------------------------------------------
# Resolution and loading.
# ---------------------------------------------------------------------------


def find_dataset(name: str, data_dir=None, cache_dir=None) -> tuple[Path | None, list[str]]:
  """The first folder holding the dataset, and every path tried (with its origin)."""
  spec = dataset_spec(name)
  tried = []
  for label, root in _roots(data_dir, cache_dir):
    for folder in spec.folders:
      cand = root / folder
      tried.append(f"{cand} ({label})")
      if _probe(spec, cand):
        return cand, tried
  return None, tried


def load_dataset(name_or_path: str, data_dir: str | None = None, cache_dir: str | None = None,
                 download: bool = True, *, format: str | None = None,
                 values: str = "auto",
                 downloads: Mapping[str, Download] | None = None) -> Dataset:
  """A registry dataset by name, or a generic file/folder by path.

  Args:
    name_or_path: a name from `list_datasets()` (or alias), or a path.
    data_dir: first root to look in for the dataset's folder.
    cache_dir: download/cache root (default $RECJAX_CACHE_DIR or ~/.cache/recjax).
    download: whether a missing dataset may be downloaded (where allowed).
    format: for paths: "table", "user_lines", "counted_lists" (default: sniffed).
    values: for paths: what a table's value column holds.  "auto": a column
      named as a count (count, plays, weight, clicks...) is counts (implicit
      feedback, duplicates summed), any other value column ratings (explicit);
      "counts" / "ratings" force it (see `readers.read_interactions`).  A
      registry dataset takes only "auto".
    downloads: replaces the `DOWNLOADS` table (name -> Download), e.g. in tests.

  Raises:
    FileNotFoundError: a known dataset is not found (the message lists every path tried).
    ValueError: an unknown name that is not an existing path.
    DataFormatError: a file is malformed.
  """
  if values not in readers.VALUES:
    raise ValueError(f"values must be one of {', '.join(readers.VALUES)}; got {values!r}")
  key = _canonical(str(name_or_path))
  if key is None:
    p = Path(name_or_path).expanduser()
    if p.exists():
      return load_path(p, format, values)
    raise ValueError(f"unknown dataset {str(name_or_path)!r} (and no such file or folder)"
                     f"{_did_you_mean(str(name_or_path))}; valid names: "
                     f"{', '.join(list_datasets())}")
  spec = DATASETS[key]
  if values != "auto":
    raise ValueError(f"values={values!r} applies to files and folders loaded by path; "
                     f"{key!r} is a registry dataset ({spec.kind}) read by its own loader")
  roots = _roots(data_dir, cache_dir)
  folder, tried = find_dataset(key, data_dir, cache_dir)
  failure = None
  table = DOWNLOADS if downloads is None else downloads
  if folder is None and key in table:
    if download:
      try:
        folder = fetch(key, cache_dir, table)
      except OSError as e:  # offline, HTTP error, timeout (URLError is an OSError)
        failure = f"download from {table[key].url} failed: {e}"
    else:
      failure = f"download disabled (download=False); official archive: {table[key].url}"
  if folder is None:
    lines = [f"dataset {key!r} not found; looked for:"] + [f"  {t}" for t in tried]
    lines.append("Pass --data_dir DIR (load_dataset(..., data_dir=DIR)) or set RECJAX_DATA_DIR "
                 f"to a folder holding one of: {', '.join(f + '/' for f in spec.folders)}.")
    if failure:
      lines.append(failure)
    elif key not in table:
      lines.append(f"It cannot be downloaded automatically ({spec.licence}).")
    raise FileNotFoundError("\n".join(lines))
  return _LOADERS[spec.loader](spec, folder, roots)
