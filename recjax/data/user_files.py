"""Data of one's own, loaded by path: a generic file, or a folder of them.

`load_path` reads one file in the format `readers.sniff_format` guesses (or
the one given), or a folder of interaction files: merged into one event log,
or, when the folder holds train.* and test.* files (and optionally
valid.*/validation.*), kept as a given split.  Every decision is a line in
`Dataset.notes`; a folder whose files are not all interaction data raises one
`DataFormatError` with a line per file.  `registry.load_dataset` calls it for
any argument that is not a registry name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from recjax.data import readers
from recjax.data.types import GIVEN_SPLIT, DataFormatError, Dataset, Interactions


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


def load_path(p: Path, format: str | None, values: str = "auto") -> Dataset:
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
