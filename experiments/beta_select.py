r"""Chooses Mult-VAE's β by annealing (Liang et al. 2018, §2.2.2), then retrains with it.

  python -m experiments.beta_select --config=experiments/configs/multvae_ml1m.py \
      --data_dir=../shared/data --workdir=workdirs/multvae-ml1m-beta

Run 1 (``workdir/anneal``) anneals β linearly from 0 toward 1 over
``--anneal_steps`` updates (default: the whole run, so β reaches 1 at the last
epoch).  The β of the epoch whose validation ``select_metric`` (NDCG@100) peaks,
read from that run's metrics.jsonl, is β* = min(1, updates / anneal_steps) at
the end of that epoch.  Run 2 (``workdir/final``) retrains with the same
schedule capped at β* (the paper's Mult-VAE^PR).  ``workdir/beta_select.json``
gets β*, the validation curve with its β values and both runs' results.  Both
runs resume like any other (same command again).  A failure is one ``error:``
line, as in experiments.main (`experiments.errors`).
"""

import json
from pathlib import Path

from absl import app, flags, logging

from experiments import errors, experiment_flags

FLAGS = flags.FLAGS
experiment_flags.define(config_help="experiments/configs/*.py file of a mult-vae run.",
                        workdir_help="Output directory: anneal/, final/, beta_select.json.",
                        model_help="Model name (default the config's; must be mult-vae).")
flags.DEFINE_integer("anneal_steps", 0, "Updates over which β goes from 0 to 1; 0: the whole run.")


def beta_at_epochs(metrics_path: Path, select_metric: str, batches_per_epoch: int,
                   anneal_steps: int) -> list[dict]:
  """One {"epoch", "beta", select_metric} per evaluated epoch of an annealing run.

  ``beta`` is the β of the epoch's last update: min(1, (epoch · batches - 1) / anneal_steps).
  """
  curve = []
  for line in metrics_path.read_text().splitlines():
    record = json.loads(line)
    if "validation" not in record:
      continue
    updates = record["epoch"] * batches_per_epoch
    beta = min(1.0, (updates - 1) / anneal_steps)
    curve.append({"epoch": record["epoch"], "beta": beta,
                  select_metric: record["validation"][select_metric]})
  if not curve:
    raise ValueError(f"{metrics_path} has no validation records")
  return curve


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  experiment_flags.join_processes()  # Multi-process runs and the compilation cache.
  from experiments import train
  from recjax.data import pipeline
  from recjax.data.registry import load_dataset
  from recjax.models import registry
  from recjax.train import sharding
  from recjax.train.config import TrainConfig
  from recjax.train.writer import write_json

  experiment = train.build_experiment(FLAGS.config, FLAGS.model, FLAGS.dataset, FLAGS.set,
                                      default_model="mult-vae", only_model="mult-vae")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  errors.check_workdir(FLAGS.workdir)
  workdir = Path(FLAGS.workdir)

  # Updates per epoch, as the runner counts them: the batches of the model's batch source at
  # the batch size rounded up to the devices.
  dataset = load_dataset(experiment["dataset"], data_dir=FLAGS.data_dir,
                         cache_dir=FLAGS.cache_dir, download=FLAGS.download)
  split, _ = pipeline.ranking_split(dataset, pipeline.DataConfig(**experiment.get("data", {})))
  train_config = TrainConfig(**experiment.get("train", {}))
  model = registry.get_model("mult-vae", experiment.get("model_config", {}))
  epochs = train_config.epochs or model.train_defaults["epochs"]
  batch_size = sharding.round_up_to_devices(train_config.batch_size,
                                            sharding.make_mesh(train_config.n_devices))
  batches_per_epoch = model.batch_source.epoch(split.train, None, batch_size, 1,
                                               train_config.seed)[0]
  anneal_steps = FLAGS.anneal_steps or epochs * batches_per_epoch
  select_metric = train_config.select_metric or train_config.metrics[-1]
  print(f"{batches_per_epoch} updates per epoch; β anneals 0 → 1 over {anneal_steps} updates")

  run = lambda cap, name: train.run_experiment(
      {**experiment, "model_config": {**experiment.get("model_config", {}),
                                      "total_anneal_steps": anneal_steps, "anneal_cap": cap}},
      str(workdir / name), data_dir=FLAGS.data_dir, cache_dir=FLAGS.cache_dir,
      download=FLAGS.download)
  anneal = run(1.0, "anneal")
  curve = beta_at_epochs(workdir / "anneal" / "metrics.jsonl", select_metric,
                         batches_per_epoch, anneal_steps)
  best = max(curve, key=lambda r: r[select_metric])
  beta = best["beta"]
  print(f"validation {select_metric} peaks at epoch {best['epoch']}: "
        f"{best[select_metric]:.4f} with β = {beta:.4f}; retraining with anneal_cap = {beta:.4f}")
  final = run(beta, "final")
  summary = {"beta": beta, "peak_epoch": best["epoch"], "select_metric": select_metric,
             "total_anneal_steps": anneal_steps, "batches_per_epoch": batches_per_epoch,
             "anneal_run": {k: anneal[k] for k in ("validation", "test", "best_epoch")},
             "final_run": {k: final[k] for k in ("validation", "test", "best_epoch")},
             "curve": curve}
  write_json(workdir / "beta_select.json", summary)
  print(json.dumps({k: summary[k] for k in ("beta", "peak_epoch", "total_anneal_steps")}))
  print(f"anneal run test: {anneal['test']}")
  print(f"final run (β cap {beta:.4f}) test: {final['test']}")


if __name__ == "__main__":
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
