r"""Benchmark of the ranking-evaluation kernel: top-K with exclusions plus metric sums.

Times the jitted per-batch kernel of `recjax.eval.ranking` (without the model)
on random scores over an ML-20M-sized catalog, unchunked and chunked, then one
end-to-end `evaluate_ranking` (host densification of csr rows, a rank-64
scorer, the kernel) over `--n_users` users.

  python -m benchmarks.bench_eval [--n_items=20108 --batch_size=500 --k=100 \
      --item_chunk=1024,4096 --out=benchmarks/results/bench_eval.json]
"""

from __future__ import annotations

import functools
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from absl import app, flags

from benchmarks import harness
from recjax.eval import ranking as eval_ranking
from recjax.ops import ranking as ranking_ops

_N_USERS = flags.DEFINE_integer("n_users", 10_000, "Users in the end-to-end evaluation.")
_N_ITEMS = flags.DEFINE_integer("n_items", 20_108, "Catalog size (ML-20M after filtering).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 500, "Users per batch.")
_K = flags.DEFINE_integer("k", 100, "Largest cutoff (top-K); metrics recall@20, recall@50, ndcg@K.")
_ITEM_CHUNK = flags.DEFINE_list("item_chunk", ["1024", "4096"],
                                "Chunk sizes for the chunked top-K (each is timed).")
_N_RUNS = flags.DEFINE_integer("n_runs", 10, "Timed calls per variant.")
_RANK = flags.DEFINE_integer("rank", 64, "Rank of the scorer in the end-to-end evaluation.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_eval.json", "JSON output path.")

_FOLD_IN_DENSITY = 0.003  # ~60 fold-in items per user over 20k items, as in ML-20M.
_HELD_OUT_DENSITY = 0.0008  # ~16 held-out items per user.


def eval_kernel(scores, exclude, held_out, n_held_out, row_mask, *, metrics, k, item_chunk):
  """The per-batch work of `evaluate_ranking` after scoring."""
  _, top = ranking_ops.top_k_excluding(scores, exclude, k, item_chunk)
  return ranking_ops.ranking_metric_sums(top, held_out, row_mask, metrics, n_held_out)


def random_binary_csr(rng, n_rows, n_cols, density):
  """A float32 0/1 csr with about `density` nonzeros (scipy's sp.random takes ~15 s here)."""
  keys = np.unique(rng.integers(0, n_rows * n_cols, size=int(n_rows * n_cols * density)))
  rows, cols = np.divmod(keys, n_cols)
  return sp.csr_matrix((np.ones(len(keys), np.float32), (rows, cols)), shape=(n_rows, n_cols))


def low_rank_scores(factors, inputs):
  """inputs @ V @ Vᵀ: a cheap stand-in model for the end-to-end run."""
  return (inputs @ factors) @ factors.T


def main(argv):
  del argv
  batch, n_items, k = _BATCH_SIZE.value, _N_ITEMS.value, _K.value
  metrics = ("recall@20", "recall@50", f"ndcg@{k}")
  rng = np.random.default_rng(0)
  scores = rng.standard_normal((batch, n_items), dtype=np.float32)
  exclude = rng.random((batch, n_items)) < _FOLD_IN_DENSITY
  held_out = (rng.random((batch, n_items)) < _HELD_OUT_DENSITY) & ~exclude
  n_held_out = held_out.sum(axis=1, dtype=np.int32)
  row_mask = np.ones((batch,), bool)
  bytes_read = scores.nbytes + exclude.nbytes + held_out.nbytes

  env = harness.environment()
  print(f"{env['device_kind']} x{env['n_devices']} ({env['platform']}), "
        f"{env['cpu_count']} CPUs, jax {env['jax']}, numpy {env['numpy']}")
  print(f"batch {batch} x {n_items} items, top-{k}, metrics {', '.join(metrics)}")

  chunks = [None] + [int(c) for c in _ITEM_CHUNK.value if int(c) > 0]
  records = []
  for chunk in chunks:
    fn = functools.partial(eval_kernel, metrics=metrics, k=k, item_chunk=chunk)
    record = harness.time_jitted(fn, scores, exclude, held_out, n_held_out, row_mask,
                                 n_runs=_N_RUNS.value, name=f"kernel chunk={chunk}")
    record.update(item_chunk=chunk, batch_size=batch, n_items=n_items, k=k,
                  users_per_s=batch / record["median_s"],
                  input_gb_per_s=bytes_read / record["median_s"] / 1e9)
    records.append(record)

  # End to end: csr rows -> dense batches -> scorer -> kernel, `n_users` users.
  n_users = _N_USERS.value
  fold_in = random_binary_csr(rng, n_users, n_items, _FOLD_IN_DENSITY)
  held = random_binary_csr(rng, n_users, n_items, _HELD_OUT_DENSITY)
  held = held - held.multiply(fold_in)  # Held-out items are never fold-in items.
  held.eliminate_zeros()
  eval_set = types.SimpleNamespace(fold_in=fold_in, held_out=held, users=np.arange(n_users))
  factors = jax.device_put(
      jax.random.normal(jax.random.key(0), (n_items, _RANK.value), jnp.float32) / 8)
  for chunk in (None, chunks[-1]):
    run = functools.partial(eval_ranking.evaluate_ranking, low_rank_scores, factors, eval_set,
                            metrics, batch, chunk)
    start = time.perf_counter()
    run()  # Compiles.
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    median = float(np.median(times))
    n_batches = -(-n_users // batch)
    records.append({
        "name": f"evaluate_ranking end-to-end chunk={chunk}", "item_chunk": chunk,
        "batch_size": batch, "n_items": n_items, "k": k, "n_users": n_users,
        "rank": _RANK.value, "first_call_s": first, "median_s": median, "min_s": min(times),
        "max_s": max(times), "n_runs": len(times), "seconds_per_batch": median / n_batches,
        "users_per_s": n_users / median,
    })

  print()
  print(f"{'variant':<40} {'compile s':>9} {'1st call s':>10} {'s/batch':>9} {'users/s':>9} "
        f"{'input GB/s':>10}")
  for r in records:
    per_batch = r.get("seconds_per_batch", r["median_s"])
    compile_s = f"{r['compile_s']:.2f}" if "compile_s" in r else "-"
    first = f"{r['first_call_s']:.2f}" if "first_call_s" in r else "-"
    gbs = f"{r['input_gb_per_s']:.2f}" if "input_gb_per_s" in r else "-"
    print(f"{r['name']:<40} {compile_s:>9} {first:>10} {per_batch:>9.4f} "
          f"{r['users_per_s']:>9.0f} {gbs:>10}")
  print(f"kernel: median of {_N_RUNS.value} runs on device-resident inputs (input GB/s: scores, "
        f"exclusion and held-out bytes read per second); end-to-end: median of 3 full "
        f"evaluations of {n_users} users, 1st call includes compilation.")
  path = harness.write_json(_OUT.value, records, flags={
      "n_users": n_users, "n_items": n_items, "batch_size": batch, "k": k,
      "item_chunk": chunks[1:], "rank": _RANK.value})
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
