r"""A results ledger: finished runs' figures kept in the repository, beside what produced them.

A workdir lives on the machine that ran it (``workdirs/`` is git-ignored) and
a fresh machine starts without it.  Work that spans sessions (Issue 20's
cross-validation: ~60 runs of 20 minutes on this CPU) needs its figures to
outlive the workdirs, with enough of each run to check what a figure is:

  # record finished runs (each workdir's config.json and results.json)
  python -m experiments.ledger --add 'workdirs/cv/crae/P3/*/fold*' workdirs/cdl-cv/P3-reg_v=1-s1
  # attach an experiments.rescore output to its run's record
  python -m experiments.ledger --add_rescored=workdirs/rescored/cdl-P3-s1.json
  # print figures (mean ± std over the matched runs, per group of replicates)
  python -m experiments.ledger --show 'workdirs/cdl-cv/P3-*' --metrics=recall_cdl@300,map@500

``--ledger`` (default ``experiments/results/ledger.jsonl``) has one JSON record
per run: its workdir path as written (the key), its experiment identity
(`recjax.train.workdir.experiment_identity` of config.json: model, dataset,
every config field, the split), the epochs it ran, results.json's "test" and
"validation" metrics, where it ran (devices, host CPU, jax version), the git
commit of the code, and when it was recorded.  Recording a run again is a
no-op when nothing changed; a run whose identity or figures differ from its
record is refused (``--replace`` overwrites it, and says so): the ledger never
quietly holds two experiments under one name.  Only finished runs (a
results.json with test metrics) are recorded; a pattern that matches
unfinished ones reports them.

`experiments.cross_validate --mode=select --ledger=F` reads a fold from the
ledger when its workdir is gone, after checking that the record is that fold
(its protocol, split seed and value of the chosen field).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import fnmatch
import glob
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from absl import app, flags

from experiments import errors

FLAGS = flags.FLAGS
DEFAULT_LEDGER = "experiments/results/ledger.jsonl"


def define_flags():
  """Defined only when run as a program (absl's flag registry is global)."""
  flags.DEFINE_string("ledger", DEFAULT_LEDGER, "The ledger file (JSON lines).")
  flags.DEFINE_bool("add", False, "Record the finished runs of the workdir patterns given.")
  flags.DEFINE_bool("replace", False, "With --add: overwrite a record whose run changed.")
  flags.DEFINE_multi_string("add_rescored", [], "Attach an experiments.rescore --out file to "
                            "the record of its workdir.")
  flags.DEFINE_bool("show", False, "Print the records of the workdir patterns given.")
  flags.DEFINE_list("metrics", ["recall_cdl@300"], "With --show: the metrics printed.")


def _cpu_name() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _commit() -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent, timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def run_record(workdir: str) -> dict[str, Any]:
  """The ledger record of a finished run; ValueError when `workdir` is not one."""
  from recjax.train.workdir import experiment_identity  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  path = Path(workdir)
  for name in ("config.json", "results.json"):
    if not (path / name).is_file():
      raise ValueError(f"{path / name}: missing (not a finished recjax run)")
  info = json.loads((path / "config.json").read_text())
  results = json.loads((path / "results.json").read_text())
  if not results.get("test"):
    raise ValueError(f"{path / 'results.json'}: no test metrics (the run was not evaluated)")
  return {
      "workdir": os.path.normpath(workdir),
      "identity": experiment_identity(info),
      "epochs": info.get("train_config", {}).get("epochs"),
      "test": results["test"],
      "validation": results.get("validation") or {},
      "ran_on": {"devices": info.get("devices"), "cpu": _cpu_name(), "jax": jax.__version__},
      "commit": _commit(),
      "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def load(ledger: str) -> dict[str, dict[str, Any]]:
  """{workdir: record}; an absent ledger is empty.  A malformed line names its number."""
  path = Path(ledger)
  if not path.is_file():
    return {}
  records = {}
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      key = record["workdir"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise ValueError(f"{path}:{n}: not a ledger record ({e})") from None
    if key in records:
      raise ValueError(f"{path}:{n}: {key} is recorded twice")
    records[key] = record
  return records


@contextlib.contextmanager
def _locked(ledger: str):
  """Holds an exclusive lock beside `ledger` (two pools may record at once)."""
  path = Path(ledger)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path.with_name(path.name + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _save(ledger: str, records: dict[str, dict[str, Any]]) -> None:
  path = Path(ledger)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                         for _, r in sorted(records.items())))
  os.replace(tmp, path)


def _first_difference(old: dict, new: dict) -> str | None:
  for part in ("identity", "epochs", "test"):
    a, b = old.get(part), new.get(part)
    if isinstance(a, dict) and isinstance(b, dict):
      for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
          return f"{part}.{key}: recorded {a.get(key, '<unset>')!r}, now {b.get(key, '<unset>')!r}"
    elif a != b:
      return f"{part}: recorded {a!r}, now {b!r}"
  return None


def expand(patterns: list[str]) -> list[str]:
  """Workdir patterns (shell globs) to paths, in order; a pattern that matches nothing fails."""
  out = []
  for pattern in patterns:
    hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not hits:
      raise ValueError(f"{pattern}: matches no workdir")
    out += [h for h in hits if h not in out]
  return out


def add(ledger: str, workdirs: list[str], replace: bool = False, log=print) -> dict[str, int]:
  """Records the finished runs among `workdirs`; counts of added/unchanged/replaced/unfinished."""
  with _locked(ledger):
    return _add(ledger, workdirs, replace, log)


def _add(ledger: str, workdirs: list[str], replace: bool, log) -> dict[str, int]:
  records = load(ledger)
  counts = {"added": 0, "unchanged": 0, "replaced": 0, "unfinished": 0}
  for workdir in workdirs:
    if not (Path(workdir) / "results.json").is_file():
      counts["unfinished"] += 1
      log(f"ledger: {workdir}: unfinished (no results.json), not recorded")
      continue
    new = run_record(workdir)
    old = records.get(new["workdir"])
    if old is not None:
      diff = _first_difference(old, new)
      if diff is None:
        counts["unchanged"] += 1
        continue
      if not replace:
        raise ValueError(f"{new['workdir']}: differs from its ledger record ({diff}); "
                         f"--replace overwrites the record")
      log(f"ledger: {new['workdir']}: record replaced ({diff})")
      new["rescored"] = []  # Scores of the old state no longer describe this run.
      counts["replaced"] += 1
    else:
      counts["added"] += 1
    records[new["workdir"]] = new
  _save(ledger, records)
  log(f"ledger: {ledger}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
  return counts


def add_rescored(ledger: str, rescored_file: str, log=print) -> None:
  """Attaches an experiments.rescore output (its workdir must be recorded) to that record."""
  out = json.loads(Path(rescored_file).read_text())
  for key in ("workdir", "test"):
    if key not in out:
      raise ValueError(f"{rescored_file}: no {key!r} (not an experiments.rescore --out file)")
  key = os.path.normpath(out["workdir"])
  entry = {k: out.get(k) for k in ("overrides", "cold_start", "exclude_fold_in", "test")}
  with _locked(ledger):
    _attach(ledger, key, entry, rescored_file)
  log(f"ledger: {key}: rescored {', '.join(sorted(out['test']))} attached")


def _attach(ledger: str, key: str, entry: dict, rescored_file: str) -> None:
  records = load(ledger)
  if key not in records:
    raise ValueError(f"{rescored_file}: its run {key} is not in {ledger}; record it first "
                     f"(--add {key})")
  entries = [e for e in records[key].get("rescored", []) if e != entry]
  records[key]["rescored"] = entries + [entry]
  _save(ledger, records)


def rescored_metrics(record: dict[str, Any]) -> dict[str, float]:
  """Test metrics that rescorings of the run's own state attached to its record (the first
  rescoring that has a metric gives it); those made with overrides or cold start describe
  another evaluation and are left out."""
  out: dict[str, float] = {}
  for entry in record.get("rescored", []):
    if not entry.get("overrides") and not entry.get("cold_start"):
      for name, value in entry["test"].items():
        out.setdefault(name, value)
  return out


def metric(record: dict[str, Any], name: str) -> float | None:
  """`name` from the run's test metrics, else from a rescoring without overrides (None: absent)."""
  value = record.get("test", {}).get(name, rescored_metrics(record).get(name))
  return None if value is None else float(value)


# What differs between replicates: their seeds, and the data counts that follow from the draw.
REPLICATE_FIELDS = ("data_config.split_seed", "train_config.seed", "model_config.seed",
                    "test_users", "validation_users", "train_nnz", "train_shape")


def replicate_group(record: dict[str, Any]) -> tuple:
  """What runs share when they are replicates of one experiment: the identity less its seeds
  (and the data counts a draw sets) and the fold of a cross-validation protocol
  (``random-P3-cv2of5`` -> ``random-P3-cv*of5``)."""
  from recjax.data.psplits import CV_RE  # pylint: disable=import-outside-toplevel

  ident = {k: v for k, v in record.get("identity", {}).items() if k not in REPLICATE_FIELDS}
  fold = CV_RE.match(str(ident.get("data_config.protocol", "")))
  if fold:
    ident["data_config.protocol"] = f"random-P{fold[1]}-cv*of{fold[3]}"
  return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in ident.items()))


def mean_std(values: list[float]) -> tuple[float, float]:
  mean = sum(values) / len(values)
  std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
         if len(values) > 1 else 0.0)
  return mean, std


def _label(group: dict[str, str], groups: list[dict[str, str]]) -> str:
  """model, dataset, protocol, then the fields that tell `group` from the others of its model."""
  same_model = [g for g in groups if g.get("model") == group.get("model")]
  differing = sorted(k for k in set().union(*same_model)
                     if len({g.get(k) for g in same_model}) > 1
                     and k not in ("model", "dataset", "data_config.protocol"))
  head = [json.loads(group[k]) for k in ("model", "dataset", "data_config.protocol") if k in group]
  return " ".join(str(h) for h in head) + "".join(
      f" {k.split('.')[-1]}={json.loads(group[k]) if k in group else '<unset>'}"
      for k in differing)


def show(ledger: str, patterns: list[str], metrics: list[str], log=print) -> list[dict]:
  """Prints the records whose workdir matches a pattern, then mean ± std per metric and group.

  Runs are averaged only with their replicates (`replicate_group`: same experiment but for the
  seeds and the CV fold); when the matched runs form several groups, each group's figures are
  printed under the fields that tell the groups apart, so no mean mixes two experiments.
  """
  records = load(ledger)
  chosen = [r for k, r in sorted(records.items())
            if any(fnmatch.fnmatchcase(k, os.path.normpath(p)) for p in patterns)]
  if not chosen:
    raise ValueError(f"{ledger}: no record matches {' '.join(patterns)}")
  for r in chosen:
    figures = "  ".join(f"{m} {v:.4f}" if (v := metric(r, m)) is not None else f"{m} –"
                        for m in metrics)
    log(f"{r['workdir']}  {figures}  ({r['ran_on'].get('devices')}, {r['recorded'][:10]})")
  groups: dict[tuple, list[dict]] = {}
  for r in chosen:
    groups.setdefault(replicate_group(r), []).append(r)
  for key, runs in groups.items():
    if len(groups) > 1:
      log(f"group {_label(dict(key), [dict(g) for g in groups])}:")
    for m in metrics:
      values = [v for r in runs if (v := metric(r, m)) is not None]
      if values:
        mean, std = mean_std(values)
        spread = f" ± {std:.4f}" if len(values) > 1 else " (no spread: one run)"
        log(f"{m}: {mean:.4f}{spread} over {len(values)} of {len(runs)} runs")
  return chosen


def main(argv):
  patterns = argv[1:]
  if sum([FLAGS.add, FLAGS.show, bool(FLAGS.add_rescored)]) != 1:
    raise app.UsageError("give one of --add, --add_rescored, --show")
  if (FLAGS.add or FLAGS.show) and not patterns:
    raise app.UsageError("name the workdirs (paths or shell patterns, quoted)")
  with errors.one_line_errors({"ledger": FLAGS.ledger}, False):
    if FLAGS.add:
      add(FLAGS.ledger, expand(patterns), FLAGS.replace)
    elif FLAGS.add_rescored:
      for f in FLAGS.add_rescored:
        add_rescored(FLAGS.ledger, f)
    else:
      show(FLAGS.ledger, patterns, FLAGS.metrics)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=errors.parse_flags)
