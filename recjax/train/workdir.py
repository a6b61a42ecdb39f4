"""A workdir remembers its experiment: the checks that keep one run's files from another's.

`experiment_identity` is what makes two runs the same experiment (config.json
minus devices, data counts and the fields that only change how a run goes,
`RUNTIME_FIELDS`); `check_workdir` refuses a workdir made by a different
experiment, or clears it with ``overwrite``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from recjax.train import artifact


class WorkdirMismatch(ValueError):
  """A workdir holds a different experiment than the one asked for."""


# TrainConfig fields that change how a run goes, not what it computes: a workdir
# may be resumed with other values.  `epochs` is checked on its own (it may grow).
RUNTIME_FIELDS = ("epochs", "progress", "checkpoint", "checkpoint_every_s", "keep_checkpoints",
                  "n_devices", "model_shards", "eval_batch_size", "item_chunk")
# Files a run owns under its workdir (removed by `overwrite`).
RUN_FILES = ("config.json", "metrics.jsonl", "results.json", "checkpoints", artifact.MODEL_DIR,
             artifact.MODEL_DIR + ".tmp", artifact.MODEL_DIR + ".old")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def experiment_identity(info: dict[str, Any]) -> dict[str, Any]:
  """What makes two runs the same experiment, flattened to ``group.field`` keys.

  Everything config.json records except the devices, the data summary (its
  counts are checked through train_shape/train_nnz) and `RUNTIME_FIELDS`.
  """
  info = json.loads(json.dumps(info, default=str))  # The JSON view (tuples -> lists), as on disk.
  ident = {k: v for k, v in info.items() if k not in ("devices", "data")}
  ident["train_config"] = {k: v for k, v in ident.get("train_config", {}).items()
                           if k not in RUNTIME_FIELDS}
  return _flatten(ident)


def _short(value: Any) -> str:
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


def _shown(view: dict[str, Any], key: str) -> str:
  return _short(view[key]) if key in view else "<unset>"


def check_workdir(workdir: Path, info: dict[str, Any], epochs: int, overwrite: bool, log,
                  defaults: dict[str, Any] | None = None) -> None:
  """Refuses a workdir that holds another experiment; clears it when `overwrite`.

  `defaults` (``{"model_config": {...}, "train_config": {...}}``, the config
  classes' defaults) lets a workdir written before a config field existed be
  resumed: a field its config.json lacks is accepted when the run
  asks for that field's default (every option is added off by default, its
  default being the behaviour before it existed), and the acceptance is logged.
  Any other value of a missing field is refused like any other difference.

  Raises:
    WorkdirMismatch: one line naming what differs and how to proceed.
  """
  present = [f for f in RUN_FILES if (workdir / f).exists()]
  if not present:
    return
  if overwrite:
    for f in present:
      target = workdir / f
      shutil.rmtree(target) if target.is_dir() else target.unlink()
    log(f"overwrite: removed the previous run's {', '.join(present)} from {workdir}")
    return
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise WorkdirMismatch(
        f"{workdir} holds {', '.join(present)} but no config.json, so its experiment is "
        f"unknown; use a fresh --workdir, or pass --overwrite to discard what is there")
  try:
    old = json.loads(config_path.read_text())
  except ValueError:
    raise WorkdirMismatch(f"{config_path} is not valid JSON; use a fresh --workdir or pass "
                          f"--overwrite") from None
  before, now = experiment_identity(old), experiment_identity(info)
  if before.get("model") != now.get("model"):  # Another model: its config fields say nothing more.
    before = {k: v for k, v in before.items() if not k.startswith("model_config.")}
    now = {k: v for k, v in now.items() if not k.startswith("model_config.")}
  default_of = experiment_identity(defaults) if defaults else {}
  added = [k for k in sorted(set(now) - set(before))
           if k in default_of and default_of[k] == now[k]]
  if added:
    log(f"{workdir}/config.json predates field{'s' if len(added) > 1 else ''} "
        + ", ".join(f"{k}={_short(now[k])}" for k in added)
        + ": the default, the behaviour before the field existed; accepted")
    before = {**before, **{k: now[k] for k in added}}
  diffs = [f"{k}: {_shown(before, k)} -> {_shown(now, k)}" for k in sorted(set(before) | set(now))
           if k not in before or k not in now or before[k] != now[k]]
  if diffs:
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    raise WorkdirMismatch(
        f"{workdir} was made by a different experiment ({shown}); use a fresh --workdir, or "
        f"pass --overwrite (overwrite=True) to discard it")
  old_epochs = old.get("train_config", {}).get("epochs")
  if isinstance(old_epochs, int) and epochs > old_epochs:
    log(f"epochs raised from {old_epochs} to {epochs}: training this workdir further")


def previous_epochs(workdir: Path, model_name: str, epochs: int) -> int:
  """The epochs of the run that made `workdir` (same model), else `epochs`."""
  try:
    old = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError):
    return epochs
  old_epochs = old.get("train_config", {}).get("epochs") if isinstance(old, dict) else None
  if old.get("model") == model_name and isinstance(old_epochs, int) and old_epochs >= 1:
    return old_epochs
  return epochs
