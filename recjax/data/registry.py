"""Datasets by name: where to find them, how to read them, how to download them.

`load_dataset("ml-1m")` looks for the dataset's folder under, in order, the
`data_dir` argument, `$RECJAX_DATA_DIR` and the cache dir (`cache_dir`,
`$RECJAX_CACHE_DIR` or `~/.cache/recjax`).  When it is nowhere and its licence
allows, the official archive is downloaded into the cache dir (temp file +
rename), checked against its published checksum and unpacked.  Otherwise one
`FileNotFoundError` lists every path tried.

`load_dataset` also takes a path to a file or folder in a generic format
(`_load_path`): a table whose header names its columns, a folder of such files
(merged), or a folder of train/[valid/]test files, used as the given split.
What the reader decided is in `Dataset.notes`.

Published data are never shipped with recjax; several licences (MovieLens)
forbid redistribution.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Literal, Mapping

import numpy as np

from recjax.data import readers
from recjax.data.types import GIVEN_SPLIT, DataFormatError, Dataset, Interactions

__all__ = [
    "Download", "DatasetSpec", "DATASETS", "DOWNLOADS", "ChecksumError", "load_dataset",
    "dataset_spec", "list_datasets", "find_dataset", "fetch", "default_cache_dir",
]


class ChecksumError(ValueError):
  """A downloaded file does not match its published checksum."""


@dataclasses.dataclass(frozen=True)
class Download:
  """An official archive.

  Attributes:
    url: where to get it (any urllib scheme, so tests can use file://).
    archive: file name to store it under in the cache dir.
    folder: the cache-dir folder the unpacked dataset must end up in.
    member_root: the folder inside the zip that becomes `folder`; None when the
      zip's top-level files go straight into `folder`.
    sha256, md5: published/verified checksums; None when unknown (then the
      computed sha256 is reported in a warning, unverified).
  """

  url: str
  archive: str
  folder: str
  member_root: str | None = None
  sha256: str | None = None
  md5: str | None = None


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


def _download(url: str, dest: Path, sha256: str | None, md5: str | None) -> str:
  """Streams url to dest atomically (temp file + rename) and checks it; returns its sha256.

  On any failure (network, checksum) no file is left behind.
  """
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
  try:
    h256, hmd5 = hashlib.sha256(), hashlib.md5()
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
      while True:
        block = resp.read(1 << 20)
        if not block:
          break
        h256.update(block)
        hmd5.update(block)
        out.write(block)
    got256, gotmd5 = h256.hexdigest(), hmd5.hexdigest()
    if sha256 is not None and got256 != sha256.lower():
      raise ChecksumError(f"{url}: sha256 {got256} does not match the expected {sha256}")
    if md5 is not None and gotmd5 != md5.lower():
      raise ChecksumError(f"{url}: md5 {gotmd5} does not match the expected {md5}")
    if sha256 is None and md5 is None:
      warnings.warn(f"{url}: no published checksum known; downloaded file has sha256 {got256} "
                    "(NOT verified)", stacklevel=3)
    os.replace(tmp, dest)
    return got256
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _extract(archive: Path, cache: Path, d: Download) -> Path:
  """Unzips into a temp folder, then renames the dataset folder into place."""
  target = cache / d.folder
  if target.exists():
    raise FileExistsError(f"{target} exists but is not a complete dataset; remove it to re-extract")
  tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{d.folder}.", suffix=".extract"))
  try:
    with zipfile.ZipFile(archive) as z:
      for m in z.namelist():
        parts = Path(m).parts
        if Path(m).is_absolute() or ".." in parts:
          raise DataFormatError(archive, None, f"expected relative member paths; got {m!r}")
      z.extractall(tmp)
    src = tmp / d.member_root if d.member_root else tmp
    if not src.is_dir():
      raise DataFormatError(archive, None, f"expected a folder {d.member_root}/ in the archive")
    os.replace(src, target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


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
  if archive.exists():
    h256, hmd5 = hashlib.sha256(), hashlib.md5()
    with open(archive, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h256.update(block)
        hmd5.update(block)
    if (d.sha256 and h256.hexdigest() != d.sha256) or (d.md5 and hmd5.hexdigest() != d.md5):
      archive.unlink()
  if not archive.exists():
    _download(d.url, archive, d.sha256, d.md5)
  folder = cache / d.folder
  if not _probe(spec, folder):
    _extract(archive, cache, d)
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
      return _load_path(p, format, values)
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


_SPLIT_ORDER = {"train": 0, "training": 0, "valid": 1, "val": 1, "validation": 1, "dev": 1,
                "test": 2}
_SPLIT_ROLES = {"train": "train", "training": "train", "valid": "validation", "val": "validation",
                "validation": "validation", "dev": "validation", "test": "test"}
_SKIP_PREFIXES = ("readme", "license", "licence", "source", "citation")


def _folder_files(folder: Path) -> list[Path]:
  files = [f for f in folder.iterdir()
           if f.is_file() and f.suffix.lower() in (".txt", ".csv", ".dat", ".tsv")
           and not f.name.lower().startswith(_SKIP_PREFIXES)]
  return sorted(files, key=lambda f: (_SPLIT_ORDER.get(f.stem.lower(), 3), f.name))


def _nonblank_lines(path: Path, limit: int = 2) -> int:
  n = 0
  with readers.open_file(path) as f:
    for raw in f:
      if raw.strip(b"\r\n\t \xef\xbb\xbf"):
        n += 1
        if n >= limit:
          break
  return n


def _read_file(f: Path, fmt: str, values: str, notes: list[str]) -> Interactions:
  """One generic file as Interactions; DataFormatError (naming the file) when it is not one."""
  if fmt == "table":
    inter = readers.read_interactions(f, values=values, notes=notes)
  elif fmt in ("user_lines", "counted_lists"):
    layout = "uid i1 i2 ..." if fmt == "user_lines" else "n i1 ... in"
    if values == "ratings":
      raise DataFormatError(f, None, f"expected a rating column with values='ratings'; got "
                            f"one line per user ({layout}), which has no ratings")
    inter = (readers.read_user_lines([f], name=str(f)) if fmt == "user_lines"
             else readers.read_counted_lists(f))
    notes.append(f"{f.name}: one line per user ({layout}): implicit feedback, every listed "
                 "item counts 1")
  elif fmt == "lda_c":
    raise DataFormatError(f, None, "expected interactions; got an LDA-C bag of words "
                          "('M w1:c1 ... wM:cM' lines): item content")
  else:
    raise ValueError(f"unknown format {fmt!r}; use 'table', 'user_lines' or 'counted_lists'")
  if not inter.n_events:
    n = _nonblank_lines(f)
    got = ("an empty file" if n == 0 else "only a header line" if fmt == "table" and n == 1
           else "no events")
    raise DataFormatError(f, None, f"expected interaction lines; got {got}")
  return inter


def _why_not(e: DataFormatError) -> str:
  short = getattr(e, "short", None)
  where = f"line {e.line}: " if e.line is not None else ""
  return where + (short or getattr(e, "message", str(e)))


def _summary(inter: Interactions) -> str:
  what = "ratings" if inter.duplicate_rule == "last" else "implicit"
  return (f"interactions ({what}): {inter.n_events:,} events, {inter.n_users:,} users, "
          f"{inter.n_items:,} items")


def _load_path(p: Path, format: str | None, values: str = "auto") -> Dataset:
  """A generic file, or a folder of interaction files, as a Dataset.

  A folder's files are merged into one event log, except that a folder with
  train.* and test.* files (and optionally valid.*/validation.*) is a given
  split: `predefined_splits[GIVEN_SPLIT]` = (train, test[, validation]) in the
  id space of the merged log, which `pipeline.resolve` picks for
  protocol="auto"; the folder's other files are ignored (noted).  A folder
  whose files are not all interaction data raises one DataFormatError with a
  line per file saying what it is.
  """
  if p.is_file():
    fmt = format or readers.sniff_format(p)
    notes: list[str] = []
    inter = _read_file(p, fmt, values, notes)
    dkind = "explicit" if inter.duplicate_rule == "last" else "implicit"
    return Dataset(str(p), inter, kind=dkind, notes=tuple(notes))
  files = _folder_files(p)
  if not files:
    raise FileNotFoundError(f"{p}: no .txt/.csv/.dat/.tsv data files in this folder")
  roles: dict[str, list[Path]] = {}
  for f in files:
    role = _SPLIT_ROLES.get(f.stem.lower())
    if role:
      roles.setdefault(role, []).append(f)
  given = "train" in roles and "test" in roles
  if given:
    for role, fs in roles.items():
      if len(fs) > 1:
        raise ValueError(f"{p}: {len(fs)} {role} files ({', '.join(f.name for f in fs)}); "
                         "expected one train, one test and at most one validation file")
    use = roles["train"] + roles.get("validation", []) + roles["test"]
  else:
    use = files
  fmts = {f: format or readers.sniff_format(f) for f in use}
  parts: dict[Path, Interactions] = {}
  failures: dict[Path, DataFormatError] = {}
  notes = []
  for f in use:
    try:
      parts[f] = _read_file(f, fmts[f], values, notes)
    except DataFormatError as e:
      failures[f] = e
  if failures:
    if len(use) == 1:
      raise failures[use[0]]
    good = [f for f in use if f in parts]
    hint = (f"load the interactions file itself (e.g. load_dataset({str(good[0])!r})) or move "
            "the other files out" if good else "no file here reads as interactions")
    lines = [f"not every file in this folder is interaction data; {hint}:"]
    for f in use:
      lines.append(f"  {f.name}: " + (_summary(parts[f]) if f in parts else
                                      f"not interaction data: {_why_not(failures[f])}"))
    raise DataFormatError(p, None, "\n".join(lines))
  kinds = set(fmts.values())
  if len(kinds) > 1:
    listing = ", ".join(f"{f.name}: {k}" for f, k in fmts.items())
    raise ValueError(f"{p}: files are not all of one format ({listing}); pass a file, "
                     "or format=...")
  rules = {parts[f].duplicate_rule for f in use}
  if len(rules) > 1:
    listing = ", ".join(f"{f.name}: {'ratings' if parts[f].duplicate_rule == 'last' else 'implicit'}"
                        for f in use)
    raise ValueError(f"{p}: files mix ratings and implicit feedback ({listing}); pass one "
                     "file, or values='counts'/'ratings' to read them alike")
  inter = readers.merge_interactions([parts[f] for f in use], str(p))
  splits = {}
  if given:
    bounds = np.cumsum([0] + [parts[f].n_events for f in use])
    event = np.arange(inter.n_events)
    side = {f: dataclasses.replace(inter.select_events((event >= a) & (event < b)), name=f.name)
            for f, a, b in zip(use, bounds[:-1], bounds[1:])}
    train, test = side[roles["train"][0]], side[roles["test"][0]]
    valid = [side[f] for f in roles.get("validation", [])]
    splits[GIVEN_SPLIT] = (train, test, *valid)
    names = ", ".join(f.name for f in use)
    notes.append(f"{names}: a given split (protocol {GIVEN_SPLIT!r}, what protocol='auto' "
                 f"picks): training rows from {roles['train'][0].name}, ranked held-out items "
                 f"from {roles['test'][0].name}"
                 + (f" (validation: {valid[0].name})" if valid else
                    " (also used for validation: there is no validation file)")
                 + "; --set protocol=strong merges the files and re-splits by user instead")
    others = [f.name for f in files if f not in use]
    if others:
      notes.append(f"files ignored (not train/valid/test): {', '.join(others)}")
  dkind = "explicit" if inter.duplicate_rule == "last" else "implicit"
  return Dataset(str(p), inter, predefined_splits=splits, kind=dkind, notes=tuple(notes))
