r"""Figure 1 of Liang et al. 2018: validation NDCG@100 against epochs under three β schedules.

  python -m experiments.plot_figure1 \
      --beta_select=workdirs/multvae0-ml1m-b100 \
      --no_anneal=workdirs/multvae0-ml1m-b100-noanneal \
      --out=docs/figures/figure1_ml1m.png

Reads the runs' ``metrics.jsonl`` (written by the runner, one record per
epoch):

* ``--no_anneal``: a run with β fixed at 1 (``--set total_anneal_steps=0
  --set anneal_cap=1``), the blue solid curve;
* ``<beta_select>/anneal``: β annealed linearly from 0 to 1 (green dashed),
  with its validation peak marked, which is where β* is read;
* ``<beta_select>/final``: the same schedule capped at β* (red dot-dashed),
  the Mult-VAE^PR run.

β* and the peak epoch come from ``<beta_select>/beta_select.json``
(`experiments/beta_select.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("beta_select", None, "Workdir of experiments.beta_select (anneal/, final/, "
                    "beta_select.json).")
flags.DEFINE_string("no_anneal", None, "Workdir of the run with β = 1 throughout (optional).")
flags.DEFINE_string("metric", "ndcg@100", "Validation metric on the y axis.")
flags.DEFINE_string("title", "", "Plot title (default: the dataset of the runs).")
flags.DEFINE_string("out", None, "Output PNG path.")


def validation_curve(workdir: Path, metric: str) -> tuple[list[int], list[float]]:
  """(epochs, validation `metric`) of every evaluated epoch in workdir/metrics.jsonl."""
  path = Path(workdir) / "metrics.jsonl"
  if not path.exists():
    raise FileNotFoundError(f"{path}: no metrics.jsonl (is {workdir} a runner workdir?)")
  epochs, values = [], []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    record = json.loads(line)
    if "validation" not in record:
      continue
    if metric not in record["validation"]:
      raise KeyError(f"{path} line {n}: no validation metric {metric!r} "
                     f"(has {sorted(record['validation'])})")
    epochs.append(record["epoch"])
    values.append(record["validation"][metric])
  if not epochs:
    raise ValueError(f"{path}: no validation records")
  return epochs, values


def plot(beta_select: Path, no_anneal: Path | None, metric: str, out: Path, title: str = "") -> dict:
  """Draws the figure; returns the plotted peaks for the caller to print."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  beta_select = Path(beta_select)
  summary = json.loads((beta_select / "beta_select.json").read_text())
  fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
  peaks = {}
  if no_anneal is not None:
    e, v = validation_curve(no_anneal, metric)
    ax.plot(e, v, "-", color="tab:blue", label="no annealing (β = 1)")
    peaks["no_anneal"] = max(v)
  e, v = validation_curve(beta_select / "anneal", metric)
  ax.plot(e, v, "--", color="tab:green", label="annealing to β = 1")
  peaks["anneal"] = max(v)
  beta, peak_epoch = summary["beta"], summary["peak_epoch"]
  ax.plot([peak_epoch], [v[e.index(peak_epoch)]], "o", color="black",
          label=f"peak: β* = {beta:.3g} (epoch {peak_epoch})")
  final = beta_select / "final"
  if (final / "metrics.jsonl").exists():
    e, v = validation_curve(final, metric)
    ax.plot(e, v, "-.", color="tab:red", label=f"annealing capped at β* = {beta:.3g}")
    peaks["capped"] = max(v)
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"validation {metric.upper() if metric.startswith('ndcg') else metric}")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(out)
  plt.close(fig)
  return peaks


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.beta_select or not FLAGS.out:
    raise app.UsageError("--beta_select and --out are required")
  peaks = plot(Path(FLAGS.beta_select), Path(FLAGS.no_anneal) if FLAGS.no_anneal else None,
               FLAGS.metric, Path(FLAGS.out), FLAGS.title)
  print(f"wrote {FLAGS.out}; best validation {FLAGS.metric}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in peaks.items()))


if __name__ == "__main__":
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
