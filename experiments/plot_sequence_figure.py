r"""Figure 2 of Ko et al. 2016: per-user error of sequence models by entropy tercile.

  python -m experiments.plot_sequence_figure \
      --workdirs=workdirs/unigram-ml100k,workdirs/hmm-ml100k,workdirs/bigram-ml100k,workdirs/cgru-ml100k \
      --out=docs/figures/crnn_figure2_ml-100k.png

Reads each finished run's ``results.json`` (`experiments.main` with a sequence
model, e.g. ``--config=experiments/configs/crnn_ml100k.py``): the test tail's
``per_user_error`` and each user's ``history_entropy`` (the entropy of the
items of their training prefix).  Users are cut into three terciles by
entropy rank (the first run's entropies; every run must be on the same
users); each panel draws one box per run of the per-user errors of the
tercile, the run's mean error E over all users as a short line, and the
uniform model's error log I as a dashed line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from absl import app, flags

from experiments import experiment_flags

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Workdirs of finished sequence-model runs, in plot order.")
experiment_flags.define_out()


def load_run(workdir: Path) -> dict:
  """What the figure needs of one run: model, dataset, E, log I, per-user errors and entropies."""
  path = Path(workdir) / "results.json"
  if not path.exists():
    raise FileNotFoundError(f"{path}: no results.json (is {workdir} a finished run?)")
  results = json.loads(path.read_text())
  test = results.get("test") or {}
  if "per_user_error" not in test or "history_entropy" not in test:
    raise ValueError(f"{path}: no per-user test errors; is it a sequence model's run "
                     f"(protocol sequence-tail*)?")
  run = results["run"]
  return {"model": run["model"], "dataset": run.get("dataset"), "error": test["error"],
          "uniform_error": math.log(run["train_shape"][1]),
          "per_user_error": [math.nan if e is None else e for e in test["per_user_error"]],
          "history_entropy": test["history_entropy"]}


def plot(runs: list[dict], out: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  from recjax.eval.sequence import entropy_terciles

  n_users = {len(r["per_user_error"]) for r in runs}
  if len(n_users) != 1:
    raise ValueError(f"the runs have different numbers of users ({sorted(n_users)}); draw runs "
                     f"of one dataset and protocol together")
  bins = entropy_terciles(runs[0]["history_entropy"])
  fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
  for b, ax in enumerate(axes):
    data = []
    for r in runs:
      e = np.asarray(r["per_user_error"], dtype=float)
      data.append(e[(bins == b) & np.isfinite(e)])
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(runs) + 1), [r["model"] for r in runs])
    for k, r in enumerate(runs):
      ax.plot([k + 0.7, k + 1.3], [r["error"]] * 2, "k-", lw=1)
    ax.axhline(runs[0]["uniform_error"], ls="--", color="gray")
    ax.set_title(["low", "medium", "high"][b] + " entropy")
  axes[0].set_ylabel("per-user error (NLL/event)")
  fig.suptitle(f"{runs[0]['dataset']}: error by entropy tercile (solid: mean over all users)")
  fig.tight_layout()
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdirs or not FLAGS.out:
    raise app.UsageError("--workdirs and --out are required")
  runs = [load_run(Path(d)) for d in FLAGS.workdirs]
  plot(runs, Path(FLAGS.out))
  print(f"wrote {FLAGS.out}: " + ", ".join(f"{r['model']} E={r['error']:.4f}" for r in runs))


if __name__ == "__main__":
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
