"""Runs a sequence model through experiments.train on seeded synthetic event logs.

Used by tests/test_sequence_runner.py, in process and in subprocesses that
tests kill at exact points with RECJAX_TEST_KILL_AT (see recjax/train/writer.py):

  python tests/run_sequence_toy.py WORKDIR MODEL DATA_CSV [--epochs E]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small settings per model (the RNNs: tiny D and windows; the HMM: few states).
SMALL = {"c-gru": ["dim=8", "window=16", "batch_size=8", "patience=4"],
         "p-gru": ["dim=8", "window=16", "batch_size=8"],
         "c-tanh": ["dim=8", "window=16", "batch_size=8"],
         "hmm": ["states=4"], "mf-logcount": ["dim=4"]}
NO_VALIDATION = ("uniform", "unigram", "bigram", "hmm", "mf-logcount")


def write_events(path: Path, users: int = 30, items: int = 25, seed: int = 0) -> Path:
  """user,item,rating,timestamp events: each user cycles through 4 items of their own, 10% noise."""
  rng = np.random.default_rng(seed)
  lines = ["user,item,rating,timestamp"]
  for u in range(users):
    base = rng.integers(0, items, 4)
    for t in range(int(rng.integers(8, 60))):
      i = base[t % 4] if rng.random() < 0.9 else rng.integers(0, items)
      lines.append(f"u{u},i{i},1,{1000 + t}")
  path.write_text("\n".join(lines) + "\n")
  return path


def run(workdir, model: str, data, epochs: int = 3, log=print, extra=()):
  from experiments import train as exp_train
  protocol = "sequence-tail-novalid" if model in NO_VALIDATION else "sequence-tail"
  exp = exp_train.build_experiment(model=model, dataset=str(data), overrides=[
      f"protocol={protocol}", "binarize_threshold=none", "min_user_count=none",
      "metrics=error,neg_error", "progress=false", "checkpoint_every_s=0", f"epochs={epochs}",
      *SMALL.get(model, []), *extra])
  return exp_train.run_experiment(exp, str(workdir), log=log)


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("model")
  parser.add_argument("data")
  parser.add_argument("--epochs", type=int, default=3)
  args = parser.parse_args()
  results = run(args.workdir, args.model, args.data, args.epochs)
  print("RESULTS " + json.dumps({"validation": results["validation"], "test": results["test"]}))
