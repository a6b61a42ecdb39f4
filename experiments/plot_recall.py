r"""Recall@M figures of the hybrid-model papers from finished runs' results.json.

Two kinds of plot, both over the test users of each run:

* ``--kind=curve`` (CVAE paper Figs 4–5, CRAE Fig 2 right): recall@M against M,
  one line per ``--run``;
* ``--kind=sweep`` (CVAE paper Figs 6–7, CRAE Fig 2 left): recall@M at one M
  against a swept setting, the ``--run`` labels being the x values (numbers,
  drawn on a log axis when ``--logx``); a label ``SERIES:X`` puts the run on the
  line named SERIES, so several models share one sweep plot.

Each ``--run`` is ``LABEL=WORKDIR[,WORKDIR...]``; several workdirs (e.g. five
split seeds) are averaged, with their standard deviation as error bars.  The
table of what was plotted is printed too, so the figures' numbers are in the
log.  Example:

  python -m experiments.plot_recall --kind=curve \
      --run=CVAE=workdirs/s5/cvae_citeulike_a_p10 --run=CDL=workdirs/s5/cdl_citeulike_a_p10 \
      --title="citeulike-a, P=10" --out=docs/figures/recall_citeulike_a_p10.png

``--ledger=experiments/results/ledger.jsonl`` reads a workdir that is gone
(another machine's, an earlier session's) from its `experiments.ledger` record,
and takes a metric a run's results.json lacks from a rescoring attached to its
record (``experiments.rescore`` + ``ledger --add_rescored``: CDL's mAP@500).
A WORKDIR may be a shell glob (``--run='CRAE:3=workdirs/crae-cv/P3-reg_v=10-s*'``): it
stands for every finished run it matches on disk (a results.json) or, with
``--ledger``, in the ledger.  The runs averaged under one label must be replicates
of one experiment (same identity but for seeds and split draws, as
``experiments.ledger`` groups them); a label whose runs differ otherwise is refused,
naming the field.
``--results_key=test_cold`` plots the cold-start metrics of runs made with
``--set cold_start=true``.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
from pathlib import Path

import numpy as np
from absl import app, flags

from experiments import experiment_flags, ledger

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "curve", ["curve", "sweep"], "recall@M against M, or against a setting.")
flags.DEFINE_multi_string("run", [], "LABEL=WORKDIR[,WORKDIR...] (several workdirs are averaged).")
flags.DEFINE_string("metric", "recall_cdl", "Metric kind: recall_cdl (the CVAE/CDL/CRAE papers' "
                    "recall) or recall (capped at M).")
flags.DEFINE_integer("at", 300, "M for --kind=sweep.")
flags.DEFINE_string("results_key", "test", "Section of results.json: test, or test_cold.")
flags.DEFINE_bool("logx", True, "Log-scale x axis for --kind=sweep.")
flags.DEFINE_string("xlabel", "", "x-axis label for --kind=sweep.")
flags.DEFINE_string("title", "", "Plot title.")
experiment_flags.define_out()


def parse_run(spec: str) -> tuple[str, list[Path]]:
  """'LABEL=DIR[,DIR...]' -> (label, [dirs])."""
  label, sep, dirs = spec.partition("=")
  if not sep or not label or not dirs:
    raise ValueError(f"--run {spec!r}: expected LABEL=WORKDIR[,WORKDIR...]")
  return label, [Path(d) for d in dirs.split(",") if d]


def expand_workdirs(dirs: list[Path], records: dict | None = None) -> list[Path]:
  """Each shell-glob workdir to the finished runs it matches (on disk, or in `records`), sorted.

  A plain path passes through unchanged; a glob that matches nothing, or a run listed twice,
  is an error.
  """
  out: list[Path] = []
  for d in dirs:
    pattern = str(d)
    if not glob.has_magic(pattern):
      hits = [pattern]
    else:
      on_disk = {os.path.normpath(os.path.dirname(p))
                 for p in glob.glob(os.path.join(pattern, "results.json"))}
      in_ledger = {k for k in (records or {}) if fnmatch.fnmatchcase(k, os.path.normpath(pattern))}
      hits = sorted(on_disk | in_ledger)
      if not hits:
        raise ValueError(f"{pattern}: matches no finished run on disk"
                         + ("" if records is None else " or in the ledger"))
    for h in hits:
      if Path(h) in out:
        raise ValueError(f"{h}: listed twice in one --run (each run counts once in a mean)")
      out.append(Path(h))
  return out


def _identity(workdir: Path, records: dict | None) -> dict | None:
  """The run's experiment identity (from its config.json, else its ledger record), or None."""
  config = Path(workdir) / "config.json"
  if config.is_file():
    from recjax.train.workdir import experiment_identity  # pylint: disable=import-outside-toplevel
    return experiment_identity(json.loads(config.read_text()))
  record = (records or {}).get(os.path.normpath(str(workdir)))
  return record.get("identity") if record else None


def check_replicates(label: str, workdirs: list[Path], records: dict | None = None) -> None:
  """Refuses to average runs of different experiments under one label.

  Replicates may differ only in what `experiments.ledger.replicate_group` leaves out (seeds,
  the split draw's counts, the fold of a CV protocol); runs whose identity is unknown (no
  config.json, no ledger record) are not checked.
  """
  known = [(w, ident) for w in workdirs if (ident := _identity(w, records)) is not None]
  if len(known) < 2:
    return
  groups = [dict(ledger.replicate_group({"identity": ident})) for _, ident in known]
  first_dir, first = known[0][0], groups[0]
  for (w, _), group in zip(known[1:], groups[1:]):
    if group != first:
      field = sorted(k for k in set(first) | set(group) if first.get(k) != group.get(k))[0]
      raise ValueError(
          f"--run {label!r}: {w} is not a replicate of {first_dir} ({field}: "
          f"{first.get(field, '<unset>')} there, {group.get(field, '<unset>')} here); "
          "give each experiment its own label")


class MissingMetricError(KeyError, ValueError):
  """A run lacks a section or metric that was asked for: bad input (one ``error:`` line from
  the binary), and a KeyError for code that looks metrics up."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


def _rescored(record: dict | None, results_key: str) -> dict[str, float]:
  """What rescorings attached to the run's ledger record add (test metrics only)."""
  return ledger.rescored_metrics(record) if record is not None and results_key == "test" else {}


def load_metrics(workdir: Path, results_key: str = "test",
                 records: dict | None = None) -> dict[str, float]:
  """The `results_key` section of workdir/results.json, with a clear error if absent.

  With `records` (an `experiments.ledger` file, loaded), a workdir that is gone
  is read from its ledger record, and metrics that a rescoring of the run attached to
  its record (``experiments.ledger --add_rescored``, e.g. mAP@500 for a config that does
  not compute it) fill in those results.json lacks; the run's own values win.
  """
  path = Path(workdir) / "results.json"
  record = (records or {}).get(os.path.normpath(str(workdir)))
  if not path.exists() and record is not None:
    if results_key not in record:
      raise MissingMetricError(f"{workdir}: its ledger record has no {results_key!r} section")
    return {**_rescored(record, results_key), **record[results_key]}
  if not path.exists():
    raise FileNotFoundError(f"{path}: no results.json (is the run finished?)"
                            + ("" if records is None else "; not in the ledger either"))
  results = json.loads(path.read_text())
  if results_key not in results:
    raise MissingMetricError(f"{path}: no {results_key!r} section (has {sorted(results)}); "
                             "test_cold needs a run made with --set cold_start=true")
  return {**_rescored(record, results_key), **results[results_key]}


def sweep_label(label: str) -> tuple[str, float]:
  """'SERIES:X' or 'X' -> (series, x); the series is '' when absent."""
  series, _, x = label.rpartition(":")
  try:
    return series, float(x)
  except ValueError:
    raise ValueError(f"--run label {label!r}: a sweep label is X or SERIES:X with X a number")


def cutoffs(metrics: dict[str, float], kind: str) -> list[int]:
  """The M of every `<kind>@M` present, sorted."""
  pattern = re.compile(rf"^{re.escape(kind)}@(\d+)$")
  return sorted(int(m.group(1)) for name in metrics if (m := pattern.match(name)))


def mean_std(workdirs: list[Path], kind: str, results_key: str = "test",
             at: list[int] | None = None, records: dict | None = None
             ) -> tuple[list[int], np.ndarray, np.ndarray]:
  """(Ms, mean, sample std over workdirs) of `<kind>@M`; Ms are those every workdir has (or `at`)."""
  loaded = [load_metrics(w, results_key, records) for w in workdirs]
  ms = at if at is not None else sorted(set.intersection(*(set(cutoffs(m, kind)) for m in loaded)))
  if not ms:
    raise ValueError(f"{[str(w) for w in workdirs]}: no common {kind}@M metrics")
  for w, m in zip(workdirs, loaded):
    missing = [f"{kind}@{k}" for k in ms if f"{kind}@{k}" not in m]
    if missing:
      raise MissingMetricError(
          f"{w}/results.json [{results_key}] lacks {missing}"
          + ("" if records is None else " (nor has a rescoring in the ledger)"))
  values = np.array([[m[f"{kind}@{k}"] for k in ms] for m in loaded], np.float64)
  # The sample std (ddof 1), as experiments.ledger and cross_validate report it; 0 for one run.
  std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(ms))
  return list(ms), values.mean(axis=0), std


def main(argv):
  del argv
  if not FLAGS.run:
    raise app.UsageError("give at least one --run LABEL=WORKDIR")
  if not FLAGS.out:
    raise app.UsageError("--out is required")
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = ledger.load(FLAGS.ledger) if FLAGS.get_flag_value("ledger", None) else None
  runs = []
  for spec in FLAGS.run:
    label, dirs = parse_run(spec)
    dirs = expand_workdirs(dirs, records)
    check_replicates(label, dirs, records)
    runs.append((label, dirs))
  fig, ax = plt.subplots(figsize=(5.5, 4))
  if FLAGS.kind == "curve":
    for label, dirs in runs:
      ms, mean, std = mean_std(dirs, FLAGS.metric, FLAGS.results_key, records=records)
      ax.errorbar(ms, mean, yerr=std if len(dirs) > 1 else None, marker="o", capsize=3,
                  label=label)
      print(f"{label} (n={len(dirs)}): " + " ".join(
          f"@{m}={a:.4f}" + (f"±{s:.4f}" if len(dirs) > 1 else "")
          for m, a, s in zip(ms, mean, std)))
    ax.set_xlabel("M")
    ax.set_ylabel(f"{FLAGS.metric}@M")
    ax.legend()
  else:
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for label, dirs in runs:
      series, x = sweep_label(label)
      _, mean, std = mean_std(dirs, FLAGS.metric, FLAGS.results_key, at=[FLAGS.at],
                              records=records)
      lines.setdefault(series, []).append((x, mean[0], std[0]))
      name = f"{series} " if series else ""
      print(f"{name}{FLAGS.xlabel or 'x'}={x:g} (n={len(dirs)}): {FLAGS.metric}@{FLAGS.at}="
            f"{mean[0]:.4f}" + (f"±{std[0]:.4f}" if len(dirs) > 1 else ""))
    for series, points in lines.items():
      x, mean, std = np.array(sorted(points)).T
      ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=series or None)
    if any(lines):
      ax.legend()
    if FLAGS.logx:
      ax.set_xscale("log")
    ax.set_xlabel(FLAGS.xlabel)
    ax.set_ylabel(f"{FLAGS.metric}@{FLAGS.at}")
  ax.set_title(FLAGS.title)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(FLAGS.out, dpi=120)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  from experiments import errors
  # Defined only when run as a program: experiments.pool defines a --ledger of its own on import.
  flags.DEFINE_string("ledger", None, "An experiments.ledger file: a --run workdir that is gone "
                      "is read from its record there.")
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
