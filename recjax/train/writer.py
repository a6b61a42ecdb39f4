"""Run outputs under ``workdir``: config.json, metrics.jsonl, results.json."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return str(x)
  return x


def write_json(path: Path, obj: Any) -> None:
  """Writes atomically (temp file + rename), so a killed run never leaves half a file."""
  path = Path(path)
  tmp = path.with_suffix(path.suffix + ".tmp")
  with open(tmp, "w") as f:
    json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class MetricWriter:
  """Appends one JSON record per epoch to ``metrics.jsonl``.

  On resume, `truncate_after(epoch)` drops records of epochs that the restored
  checkpoint does not contain, so the file matches an uninterrupted run.
  """

  def __init__(self, workdir: Path):
    self.path = Path(workdir) / "metrics.jsonl"

  def truncate_after(self, epoch: int) -> None:
    if not self.path.exists():
      return
    kept = []
    for line in self.path.read_text().splitlines():
      if line.strip() and json.loads(line).get("epoch", 0) <= epoch:
        kept.append(line)
    tmp = self.path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, self.path)

  def write(self, record: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]
