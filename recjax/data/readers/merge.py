"""Generic paths: merging several event logs into one id space, guessing a file's format.

Used by the registry when a user points it at a file or folder of their own.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from recjax.data.readers.parse import open_file
from recjax.data.types import Interactions

def _joint_ids(id_arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
  """Union of raw-id arrays and, per array, the map old dense index -> joint index."""
  allv = np.concatenate(id_arrays)
  if allv.dtype.kind in "iu":
    joint = np.unique(allv)
    return joint, [np.searchsorted(joint, a) for a in id_arrays]
  allv = allv.astype(str)
  _, first, inv = np.unique(allv, return_index=True, return_inverse=True)
  order = np.argsort(first, kind="stable")
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  inv = rank[inv.reshape(-1)]
  joint = allv[np.sort(first)]
  out, k = [], 0
  for a in id_arrays:
    out.append(inv[k:k + len(a)])
    k += len(a)
  return joint, out


def merge_interactions(parts: Sequence[Interactions], name: str = "") -> Interactions:
  """Concatenates event logs (in order) into one id space, joined on raw ids.

  Integer raw ids stay numerically sorted; if any part has string ids all are
  compared as strings (first appearance).  Timestamps are kept only if every
  part has them; the duplicate rule must agree.
  """
  if not parts:
    raise ValueError("merge_interactions needs at least one part")
  rules = {p.duplicate_rule for p in parts}
  if len(rules) != 1:
    raise ValueError(f"cannot merge parts with different duplicate rules {sorted(rules)}")
  if any(p.user_ids.dtype.kind not in "iu" for p in parts) or any(
      p.item_ids.dtype.kind not in "iu" for p in parts):
    ids = [(p.user_ids.astype(str), p.item_ids.astype(str)) for p in parts]
  else:
    ids = [(p.user_ids, p.item_ids) for p in parts]
  user_ids, umaps = _joint_ids([u for u, _ in ids])
  item_ids, imaps = _joint_ids([i for _, i in ids])
  ts = None
  if all(p.timestamps is not None for p in parts):
    ts = np.concatenate([p.timestamps for p in parts])
  return Interactions(
      users=np.concatenate([m[p.users] for m, p in zip(umaps, parts)]).astype(np.int64),
      items=np.concatenate([m[p.items] for m, p in zip(imaps, parts)]).astype(np.int64),
      values=np.concatenate([p.values for p in parts]).astype(np.float32), timestamps=ts,
      user_ids=user_ids, item_ids=item_ids, duplicate_rule=rules.pop(),
      name=name or ",".join(p.name for p in parts))


def sniff_format(path, n_lines: int = 200) -> str:
  """Guesses a file's layout from its first lines.

  Returns "table" (`user item [rating] [timestamp]`, the same 2-4 fields on
  every line), "counted_lists" (`n i1 ... in`: the first field counts the rest),
  "lda_c" (`M w1:c1 ... wM:cM`) or "user_lines" (`uid i1 i2 ...`, whitespace-
  separated integers, field counts varying).  A file whose lines all have the
  same 2-4 fields is a "table" even if it could be read otherwise (e.g. a
  `1 i` counted list); pass the format explicitly for those.
  """
  lines = []
  with open_file(path) as f:
    for raw in f:
      line = raw.rstrip(b"\r\n")
      if line.strip():
        lines.append(line)
      if len(lines) >= n_lines:
        break
  if not lines:
    return "table"
  ws = [l.split() for l in lines]
  counts = {len(f) for f in ws}
  if len(counts) == 1 and 2 <= min(counts) <= 4:
    return "table"
  numeric = all(all(t.lstrip(b"-").isdigit() for t in f) for f in ws)
  if not numeric:
    wc = re.compile(rb"^\d+:\d+$")
    if all(f[0].isdigit() and int(f[0]) == len(f) - 1 and all(wc.match(t) for t in f[1:])
           for f in ws):
      return "lda_c"
    return "table"
  if all(int(f[0]) == len(f) - 1 for f in ws):
    return "counted_lists"
  return "user_lines"
