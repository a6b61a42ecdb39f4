"""Trains several model families through the runner, in one process or as one of several.

Used by tests/test_multiprocess.py, in subprocesses (one per JAX process):

  JAX_NUM_CPU_DEVICES=4 python tests/run_multiprocess.py OUT_DIR
  python -m experiments.launch --processes=2 --cpu_devices=2 -- \
      python tests/run_multiprocess.py OUT_DIR

It joins the multi-process run the environment describes (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID; nothing with one process), then trains each
model of ``--models`` on small seeded synthetic data into OUT_DIR/<case> on a
mesh of every device of every process, and (process 0) prints one line
``RESULTS {case: results.json's test metrics}``.  With RECJAX_TEST_KILL_AT in
the environment of one process, that process is SIGKILLed at that point
(recjax/train/writer.py).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # CPU devices, also on a GPU host.

from recjax.train import distributed  # noqa: E402

CASES = {  # case: (model, config overrides, epochs[, TrainConfig overrides])
    "ease": ("ease", {"l2": 50.0}, 1),
    # The item axis split over 2 devices (each process holds one item shard of each layer):
    # must give the replicated Mult-VAE's metrics.
    "mult-vae-items": ("mult-vae", {"hidden_dims": (24,), "latent_dim": 8}, 2,
                       {"model_shards": 2}),
    "wmf-cholesky": ("wmf", {"dim": 8, "solver": "cholesky"}, 2),
    "wmf-cg": ("wmf", {"dim": 8, "solver": "cg"}, 2),
    "mult-vae": ("mult-vae", {"hidden_dims": (24,), "latent_dim": 8}, 2),
    "cdl": ("cdl", {"dim": 8, "hidden": (16,), "pretrain_epochs": 1}, 2),
}


def _data(case: str):
  """A small seeded implicit matrix, split as the case's family is evaluated, with content."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import scipy.sparse as sp  # pylint: disable=import-outside-toplevel
  from recjax.data import splits, synthetic  # pylint: disable=import-outside-toplevel
  matrix = synthetic.synthetic_implicit(n_users=160, n_items=60, nnz=2400, seed=3, n_clusters=4,
                                        cluster_strength=0.8)
  if case != "cdl":
    return splits.strong_generalization(matrix, n_heldout_users=40, seed=4), {}
  rng = np.random.default_rng(5)
  content = sp.random(matrix.shape[1], 30, density=0.2, format="csr", random_state=rng,
                      dtype=np.float32)
  train, test = splits.p_items_per_user(matrix, 3, seed=6)
  return splits.weak_generalization_split(train, test), {"item_content": content}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--models", default=",".join(CASES))  # The cases to run, in order.
  args = parser.parse_args()
  distributed.initialize()
  import jax  # pylint: disable=import-outside-toplevel
  from recjax.models.registry import get_model  # pylint: disable=import-outside-toplevel
  from recjax.train.runner import TrainConfig, train_and_evaluate  # noqa: E402
  import time  # pylint: disable=import-outside-toplevel
  results = {}
  for case in args.models.split(","):
    t0 = time.perf_counter()
    name, overrides, epochs, *train = CASES[case]
    split, side = _data(case)
    model = get_model(name, overrides)
    config = TrainConfig(epochs=epochs, batch_size=32, eval_batch_size=64,
                         n_devices=len(jax.devices()), progress=False, checkpoint_every_s=0.0,
                         metrics=("recall@20", "ndcg@20"), **(train[0] if train else {}))
    out = train_and_evaluate(model, split, config, os.path.join(args.out, case), side=side,
                             log=lambda *a: None)
    results[case] = out["test"]
    if distributed.is_primary():
      print(f"{case}: {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
  if distributed.is_primary():
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
  main()
