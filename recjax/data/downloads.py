"""Downloading an official archive safely: checksums, atomic writes, unpacking.

`download_file` streams a URL to a temp file beside its destination, checks it
against the published SHA-256/MD5 and renames it into place; `extract` unzips
into a temp folder (refusing absolute or '..' member paths) and renames the
dataset folder into place.  Nothing half-written is ever left under the final
name.  The registry (`recjax.data.registry.fetch`) says what to download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path

from recjax.data.types import DataFormatError


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


def archive_matches(archive: Path, d: Download) -> bool:
  """Whether a cached archive matches the checksums `d` publishes (True when it has none)."""
  h256, hmd5 = hashlib.sha256(), hashlib.md5()
  with open(archive, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h256.update(block)
      hmd5.update(block)
  return not ((d.sha256 and h256.hexdigest() != d.sha256)
              or (d.md5 and hmd5.hexdigest() != d.md5))


def download_file(url: str, dest: Path, sha256: str | None, md5: str | None) -> str:
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


def extract(archive: Path, cache: Path, d: Download) -> Path:
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
