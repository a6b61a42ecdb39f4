"""Runs the toy gradient model through the runner on seeded synthetic data.

Used by tests/test_runner.py in subprocesses (for SIGKILL/resume and for
several CPU devices, which must be configured before jax starts):

  python tests/run_toy.py WORKDIR [--devices N] [--epochs E] [--batch B] [--eval_batch B]

An OSError (a refused write: no space, read-only workdir) ends it as the CLI
does: one ``error:`` line on stderr and exit status 1.  tests/test_durability.py
kills it at exact points with RECJAX_TEST_KILL_AT (see recjax/train/writer.py).
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--host_devices", type=int, default=1)
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--eval_batch", type=int, default=33)
parser.add_argument("--patience", type=int, default=0)
args = parser.parse_args()

if args.host_devices > 1:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={args.host_devices}")
  os.environ["JAX_PLATFORMS"] = "cpu"  # The multi-device check is about CPU devices, also on a GPU host.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import toy_model  # noqa: E402
from recjax.train.runner import TrainConfig, train_and_evaluate  # noqa: E402


if __name__ == "__main__":
  config = TrainConfig(epochs=args.epochs, batch_size=args.batch, eval_batch_size=args.eval_batch,
                       n_devices=args.devices, patience=args.patience, progress=False,
                       checkpoint_every_s=0.0,  # Every epoch: the kill test needs one mid-run.
                       metrics=("recall@20", "ndcg@100", "map@50"))
  try:
    results = train_and_evaluate(toy_model.make(), toy_model.make_split(), config, args.workdir)
  except OSError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print("RESULTS " + json.dumps({"validation": results["validation"], "test": results["test"]}))
