r"""Training throughput of the collaborative GRU: events per second, compile timed apart.

  python -m benchmarks.bench_crnn --dataset=yelp --data_dir=../shared/data

One truncated-BPTT step as the runner jits it (`runner.make_train_step` of the
c-gru model: a window of `window` events for `batch_users` users, per-user
recurrent rows gathered and updated) is compiled with `lower().compile()`, warmed up, then run `n_runs` times chaining the state (the
step donates it); the median step time gives events/s = real (non-padding)
events in the window batch / time.  Done with the full softmax and with a
sampled softmax (`--sampled` uniform negatives).  The batches are real windows
of the dataset's training prefixes (the users with the most events, so windows
are full).  JSON goes to benchmarks/results/bench_crnn.json.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import harness
from recjax.data import registry
from recjax.data.sequences import next_item_pairs, sequence_split
from recjax.models import crnn
from recjax.train import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "yelp", "Dataset (the largest time-ordered set by events: yelp).")
flags.DEFINE_string("data_dir", "../shared/data", "Where datasets are looked up first.")
flags.DEFINE_integer("dim", 32, "Hidden units D.")
flags.DEFINE_integer("batch_users", 64, "Users per step.")
flags.DEFINE_integer("window", 128, "Window length.")
flags.DEFINE_integer("sampled", 512, "Negatives of the sampled softmax.")
flags.DEFINE_integer("n_runs", 5, "Timed steps.")
flags.DEFINE_string("out", "benchmarks/results/bench_crnn.json", "JSON output.")


def _time_steps(model, params, state, batch, n_runs):
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  key = jax.random.key(0)
  phase = {"epoch": jnp.int32(1), "step": jnp.int32(0)}
  t0 = time.perf_counter()
  compiled = runner.make_train_step(model).lower(params, state, {}, batch, key, phase).compile()
  compile_s = time.perf_counter() - t0
  for k in range(2):
    params, state, *_ = compiled(params, state, {}, batch, jax.random.fold_in(key, k), phase)
  jax.block_until_ready(params)
  times = []
  for k in range(n_runs):
    start = time.perf_counter()
    params, state, *_ = compiled(params, state, {}, batch, jax.random.fold_in(key, 10 + k), phase)
    jax.block_until_ready(params)
    times.append(time.perf_counter() - start)
  events = float(np.asarray(batch["events"]).sum())
  med = statistics.median(times)
  return {"compile_s": compile_s, "median_step_s": med, "min_step_s": min(times),
          "events_per_step": events, "events_per_second": events / med}


def main(argv):
  del argv
  inter = registry.load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir).interactions
  split = sequence_split(inter)
  empty = [np.zeros(0, np.int32)] * split.n_users
  pairs = next_item_pairs(split.fit, empty, FLAGS.window)
  top = np.argsort(-pairs["mask"].sum(1), kind="stable")[:FLAGS.batch_users]
  cols = slice(0, FLAGS.window)
  batch = {"users": top.astype(np.int32), "inputs": pairs["inputs"][top, cols],
           "targets": pairs["targets"][top, cols], "events": pairs["mask"][top, cols],
           "reset": np.ones(len(top), bool), "mask": np.ones(len(top), bool)}
  env = harness.environment()
  print({k: env[k] for k in list(env)[:6]})
  print(f"{FLAGS.dataset}: {split.n_users} users, {split.n_items} items; batch "
        f"{FLAGS.batch_users} x {FLAGS.window}, D = {FLAGS.dim}")
  records = []
  for sampled in (0, FLAGS.sampled):
    config = crnn.Config(dim=FLAGS.dim, window=FLAGS.window, sampled=sampled)
    model = crnn.make(config)
    params = crnn.init(jax.random.key(0), split.n_users, split.n_items, config)
    state = model.optimizer.init(params)
    rec = _time_steps(model, params, state, batch, FLAGS.n_runs)
    rec.update(name="c-gru train_step", batch_users=FLAGS.batch_users, softmax="full" if not sampled else f"sampled-{sampled}",
               dataset=FLAGS.dataset, n_users=split.n_users, n_items=split.n_items,
               config=dataclasses.asdict(config))
    records.append(rec)
    print(f"{rec['softmax']:>12}: compile {rec['compile_s']:.1f}s, step {rec['median_step_s'] * 1e3:.1f}"
          f" ms, {rec['events_per_second']:.0f} events/s")
  print("wrote", harness.write_json(FLAGS.out, records))


if __name__ == "__main__":
  app.run(main)
