r"""C-GRU training events/s and validation time against the matmul roofline, old code beside new.

  python -m benchmarks.bench_crnn [--old_tree=/tmp/crnn_old] [--cpus=0] [--rounds=2]

The data is a seeded synthetic sequence set of Amazon-Beauty size (default
22,363 users, 46,000 items, Zipf(0.8) item popularity, training prefixes of
1 + Geometric(1/4.6) events, mean 5.6, and a 3-event validation tail per
user); ``--dataset=<name>`` uses a real set's `sequence_split` instead.  The
model is the c-gru of experiments/configs/crnn_ml100k.py (D = 32, dropout
0.2, RMSprop 5e-3, 128-event windows, 16 users per step, full softmax).

Each measurement runs in a worker process pinned to `--cpus` (one core by
default): the runner's jitted, donating train step (`runner.make_train_step`)
steps through the first `--steps` windows of an epoch of
`SequenceWindows` batches, after one step on each window width so that
compilation is timed apart; events/s = real (non-padding) events / time.
The output layer's work is counted as 6·D·I FLOPs per event (logits, the
gradient with respect to h and the gradient of W_out: three [events, D] x
[D, I]-sized products), and divided by the roofline: the median GFLOP/s of a
jitted 2048² float32 matmul in the same worker.  Validation is the runner's
`evaluate_sequence` of the validation tails with the model's ``score``
(256 users per batch), timed twice (the first with its compilations).  With
``--old_tree`` (a checkout of an older commit, e.g. ``git worktree add
/tmp/crnn_old 6227708``) the same worker also runs with that tree first on
``sys.path``, alternating old and new for `--rounds` rounds; load averages
are recorded with every figure.  JSON goes to benchmarks/results/bench_crnn.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "", "A real dataset instead of the synthetic one (e.g. toys).")
flags.DEFINE_string("data_dir", "../shared/data", "Where datasets are looked up first.")
flags.DEFINE_integer("users", 22363, "Synthetic users.")
flags.DEFINE_integer("items", 46000, "Synthetic items.")
flags.DEFINE_float("mean_events", 5.6, "Synthetic mean training events per user.")
flags.DEFINE_integer("steps", 300, "Timed training windows.")
flags.DEFINE_integer("valid_users", 0, "Validation users (0: all).")
flags.DEFINE_integer("rounds", 2, "Rounds of (old, new) workers.")
flags.DEFINE_string("cpus", "0", "CPU cores a worker is pinned to (comma list).")
flags.DEFINE_string("old_tree", "", "A checkout of the old code to time beside this tree.")
flags.DEFINE_string("out", "benchmarks/results/bench_crnn.json", "JSON output.")
flags.DEFINE_bool("worker", False, "Internal: run one measurement, print JSON.")


def _data():
  import numpy as np
  from recjax.data import sequences
  if FLAGS.dataset:
    from recjax.data import registry
    split = sequences.sequence_split(
        registry.load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir).interactions)
    return split.fit, split.valid, split.n_items
  rng = np.random.default_rng(0)
  pop = 1.0 / np.arange(1, FLAGS.items + 1) ** 0.8
  pop /= pop.sum()
  lengths = rng.geometric(1.0 / (FLAGS.mean_events - 1.0), size=FLAGS.users) + 1 + 3
  items = rng.choice(FLAGS.items, size=int(lengths.sum()), p=pop).astype(np.int32)
  seqs = np.split(items, np.cumsum(lengths)[:-1])
  return [s[:-3] for s in seqs], [s[-3:] for s in seqs], FLAGS.items


def _worker():
  os.sched_setaffinity(0, [int(c) for c in FLAGS.cpus.split(",")])  # Before XLA sizes its pools.
  import jax
  import jax.numpy as jnp
  import numpy as np
  from recjax.data import sequences
  from recjax.eval.sequence import evaluate_sequence
  from recjax.models import crnn
  from recjax.train import runner

  fit, valid, n_items = _data()
  n_users = len(fit)
  config = crnn.Config(dim=32, dropout=0.2, learning_rate=5e-3, window=128)
  model = crnn.make(config)
  params = crnn.init(jax.random.key(0), n_users, n_items, config)
  state = model.optimizer.init(params)
  pairs = model.prepare(None, fit)["pairs"]
  _, windows = model.batch_source.epoch(None, {"pairs": pairs}, 16, 0, 0)
  batches = [{k: jnp.asarray(v) for k, v in b.items()} for _, b in zip(range(FLAGS.steps), windows)]
  step = runner.make_train_step(model)
  phase = {"epoch": jnp.int32(1), "step": jnp.int32(0)}
  t0 = time.perf_counter()
  for width in sorted({b["inputs"].shape[1] for b in batches}):
    b = next(b for b in batches if b["inputs"].shape[1] == width)
    params, state, *_ = step(params, state, {}, b, jax.random.key(0), phase)
  jax.block_until_ready(params)
  compile_s = time.perf_counter() - t0

  x = jnp.ones((2048, 2048), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  jax.block_until_ready(matmul(x))
  mm = []
  for _ in range(10):
    t = time.perf_counter()
    jax.block_until_ready(matmul(x))
    mm.append(time.perf_counter() - t)
  roofline = 2 * 2048 ** 3 / statistics.median(mm) / 1e9

  events = float(sum(float(b["events"].sum()) for b in batches))
  t0 = time.perf_counter()
  for k, b in enumerate(batches):
    params, state, *_ = step(params, state, {}, b, jax.random.key(k + 1), phase)
  jax.block_until_ready(params)
  train_s = time.perf_counter() - t0
  events_per_s = events / train_s
  flops_per_event = 6 * config.dim * n_items
  total_events = float(pairs["mask"].sum())

  rows = np.arange(n_users) if not FLAGS.valid_users else np.arange(FLAGS.valid_users)
  eval_set = sequences.SequenceEvalSet(
      histories=[fit[r] for r in rows], tails=[valid[r] for r in rows], users=rows,
      held_out=sequences.count_matrix([valid[r] for r in rows], n_items))
  valid_s, error = [], None
  for _ in range(2):
    t0 = time.perf_counter()
    error = evaluate_sequence(lambda st, b: model.score(st, {}, b), params, eval_set,
                              batch_size=256)["error"]
    valid_s.append(time.perf_counter() - t0)
  epoch_train_s = total_events / events_per_s
  return {
      "users": n_users, "items": n_items, "train_events_per_epoch": total_events,
      "timed_windows": len(batches), "timed_events": events,
      "slots_per_event": sum(b["events"].size for b in batches) / events,
      "compile_s": compile_s, "train_s": train_s, "events_per_s": events_per_s,
      "output_flops_per_event": flops_per_event,
      "output_gflops": events_per_s * flops_per_event / 1e9,
      "roofline_gflops": roofline,
      "roofline_events_per_s": roofline * 1e9 / flops_per_event,
      "fraction_of_roofline": events_per_s * flops_per_event / 1e9 / roofline,
      "valid_users": len(rows), "valid_first_s": valid_s[0], "valid_s": valid_s[1],
      "valid_error": error, "epoch_train_s_estimate": epoch_train_s,
      "valid_share_of_epoch": valid_s[1] / (valid_s[1] + epoch_train_s),
      "loadavg": os.getloadavg()}


def _run_worker(tree: str) -> dict:
  env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
  argv = [a for a in sys.argv[1:] if not a.startswith(("--old_tree", "--out", "--rounds"))]
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", *argv]
  done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
  lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
  if done.returncode or not lines:
    raise RuntimeError(f"worker in {tree} failed:\n{done.stderr[-3000:]}")
  return json.loads(lines[-1])


def main(argv):
  del argv
  if FLAGS.worker:
    print(json.dumps(_worker()))
    return
  from benchmarks import harness
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  trees = ([("old", os.path.abspath(FLAGS.old_tree))] if FLAGS.old_tree else []) + [("new", here)]
  records = []
  for r in range(FLAGS.rounds):
    for label, tree in trees:
      rec = _run_worker(tree)
      rec.update(code=label, tree=tree, round=r, cpus=FLAGS.cpus,
                 dataset=FLAGS.dataset or "synthetic-beauty")
      records.append(rec)
      print(f"round {r} {label:>3}: {rec['events_per_s']:8.0f} events/s "
            f"({rec['output_gflops']:5.1f} GFLOP/s output layer = "
            f"{rec['fraction_of_roofline']:.2f} of roofline {rec['roofline_gflops']:.0f}); "
            f"compile {rec['compile_s']:.1f} s; validation {rec['valid_s']:.1f} s "
            f"(E = {rec['valid_error']:.4f}), {100 * rec['valid_share_of_epoch']:.0f}% of an "
            f"epoch of {rec['epoch_train_s_estimate']:.0f} s training; load {rec['loadavg'][0]:.1f}",
            flush=True)
  print("wrote", harness.write_json(FLAGS.out, records))


if __name__ == "__main__":
  app.run(main)
