r"""Seconds per epoch of Mult-VAE^PR and WMF on 1, 2, 4 and 8 devices, as the runner trains them.

  python -m benchmarks.bench_scaling                       # CPU devices 1,2,4,8
  python -m benchmarks.bench_scaling --devices=1 --platform=gpu   # one accelerator

Each (model, devices, batch) configuration runs `train_and_evaluate` in its own
subprocess (``JAX_NUM_CPU_DEVICES`` = devices on CPU) on a seeded synthetic
matrix (default ML-1M-sized for Mult-VAE: 6,040 x 3,706, 1M clicks; 20,000 x
4,000 with 1M clicks for WMF), every user in training (no evaluation inside the
epochs), ``--epochs`` epochs, and reads the epoch times from the run's
``metrics.jsonl``.  The figure is the median over epochs 2.. (epoch 1 compiles).

Communication share (Mult-VAE, data parallel): on n devices each device
computes B/n rows of each batch of B, then the gradients are all-reduced.  The
same run on ONE device with batches of B/n rows does n times as many steps of
the per-device work and no communication, so ``t_compute(n) = epoch(1 device,
B/n) / n`` and ``share = 1 - t_compute(n) / epoch(n devices, B)`` is the part of
an n-device epoch that is not per-device compute (all-reduce, and the lost
efficiency of n devices sharing the host's cores and memory bandwidth).  On
CPU the "devices" share one socket, so speedup is bounded by the cores: run on
a host with at least 2n cores to read the table as scaling.

WMF (ALS): rows of each half sweep split over the devices, the Gram reduced
over them; seconds per epoch (one user and one item half sweep) and speedup.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app, flags

flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts.")
flags.DEFINE_list("models", ["mult-vae", "wmf"], "Models.")
flags.DEFINE_integer("epochs", 4, "Epochs per run (the first is compile + run).")
flags.DEFINE_integer("batch_size", 512, "Mult-VAE users per global batch (divisible by 8).")
flags.DEFINE_string("platform", "cpu", "cpu or gpu.")
flags.DEFINE_string("out", "benchmarks/results/bench_scaling.json", "JSON output path.")
flags.DEFINE_string("child", None, "(internal) run one configuration, JSON-encoded.")
FLAGS = flags.FLAGS

SHAPES = {"mult-vae": (6040, 3706, 1_000_000), "wmf": (20_000, 4_000, 1_000_000)}


def _child(spec: dict) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  from recjax.data import splits, synthetic  # pylint: disable=import-outside-toplevel
  from recjax.models.registry import get_model  # pylint: disable=import-outside-toplevel
  from recjax.train.runner import TrainConfig, train_and_evaluate  # pylint: disable=import-outside-toplevel
  users, items, nnz = SHAPES[spec["model"]]
  matrix = synthetic.synthetic_implicit(n_users=users, n_items=items, nnz=nnz, seed=0)
  split = splits.strong_generalization(matrix, n_heldout_users=0, seed=0)
  overrides = {"dim": 64, "solver": "cg"} if spec["model"] == "wmf" else {}
  config = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch"], n_devices=spec["devices"],
                       progress=False, checkpoint=False, metrics=("recall@20",))
  with tempfile.TemporaryDirectory() as workdir:
    train_and_evaluate(get_model(spec["model"], overrides), split, config, workdir,
                       log=lambda *a: None)
    records = [json.loads(l) for l in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
  seconds = [r["seconds"] for r in records]
  print("RESULT " + json.dumps({**spec, "epoch_seconds": seconds,
                                "median_s": statistics.median(seconds[1:]),
                                "device": jax.devices()[0].device_kind,
                                "peak_host_gb": records[-1]["peak_host_memory_gb"]}), flush=True)


def _run(spec: dict) -> dict:
  env = dict(os.environ)
  if FLAGS.platform == "cpu":
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(spec["devices"]))
  done = subprocess.run([sys.executable, "-m", "benchmarks.bench_scaling",
                         f"--child={json.dumps(spec)}"], env=env, capture_output=True, text=True)
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
  if done.returncode or not line:
    raise RuntimeError(f"{spec}: exit {done.returncode}\n{done.stderr[-2000:]}")
  return json.loads(line[0][len("RESULT "):])


def main(argv):
  del argv
  if FLAGS.child:
    _child(json.loads(FLAGS.child))
    return
  rows = []
  print(f"host: {os.cpu_count()} cores, load {os.getloadavg()}")
  for model in FLAGS.models:
    base = None
    for n in map(int, FLAGS.devices):
      row = _run({"model": model, "devices": n, "batch": FLAGS.batch_size, "epochs": FLAGS.epochs})
      base = base or row["median_s"]
      row["speedup"] = base / row["median_s"]
      if model == "mult-vae" and n > 1:  # The same per-device work on one device, no all-reduce.
        alone = _run({"model": model, "devices": 1, "batch": FLAGS.batch_size // n,
                      "epochs": FLAGS.epochs})
        row["compute_s"] = alone["median_s"] / n
        row["communication_share"] = max(0.0, 1.0 - row["compute_s"] / row["median_s"])
      rows.append(row)
      print(f"{model:9s} {n} x {row['device']}: {row['median_s']:.3f} s/epoch, speedup "
            f"{row['speedup']:.2f}" + (f", communication share {row['communication_share']:.0%}"
                                       if "communication_share" in row else "")
            + f", peak host {row['peak_host_gb']:.2f} GB", flush=True)
  Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
  Path(FLAGS.out).write_text(json.dumps({"host_cores": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
  app.run(main)
