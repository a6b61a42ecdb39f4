r"""Serving throughput: users/s for top-100 recommendations, recjax.serve beside implicit.

  python -m benchmarks.bench_recommend \
      --peer_python=$(../shared/tools/peer-venvs.sh implicit | cut -d' ' -f2)
  python -m benchmarks.bench_recommend --n_users=3000 --n_items=2000 --nnz=60000 \
      --factors=16 --n_batch_users=512 --n_all_users=1024 --n_single=10     # a quick run

What is measured (one run, one machine, the same threads for everybody):

* Data: `recjax.data.synthetic.synthetic_implicit` (seeded, Zipf item
  popularity, log-normal user activity), default 50,000 users x 20,000 items,
  1.5M clicks.
* WMF factors: implicit's CPU `AlternatingLeastSquares` (CG, `--als_iters`
  iterations, K = `--factors`) trained in the peer's venv on that matrix, or
  random N(0, 0.1²) factors without `--peer_python`.  The same U, V are
  exported as a recjax artifact (`recjax.train.artifact.export` of
  `get_model("wmf", {dim, a, b, reg})`) and `load`ed back.
  Semantics: implicit 0.7.3 uses the stored value x alpha as the confidence of
  a click and 1 elsewhere (C = alpha·r, not 1 + alpha·r: see
  `implicit/cpu/als.py`, `recalculate_user` scales the rows by alpha before
  `_least_squares`), so on a binary matrix recjax's WMF with a = alpha, b = 1,
  reg = λ solves the same per-user system; the top-100 check below proves it.
* EASE weights: a random [I, I] float32 B with a zero diagonal (scoring time
  does not depend on the values; `--ease_weights=solve` computes the real B
  with the host LAPACK solver, ~75-95 s at 20k items on 2 cores), exported and
  loaded the same way.  implicit has no EASE; only recjax paths are timed.

Paths (all return top-100 item ids and scores *on the host*, seen items
excluded):

* recjax `serve.recommend(tm, users, k=100)`: known users by raw id.  Every
  user is scored by folding in its training row through the model's own
  ``score``, i.e. WMF re-solves the user's factors against V with the dense
  `recjax.ops.als.fold_in_dense` (Yᵀdiag(c)Y over all I items: 2·B·I·K² FLOPs
  per batch) -- the semantics of implicit's ``recalculate_user=True``.  EASE
  computes the dense ``x @ B`` (2·B·I² FLOPs per batch).
* recjax `serve.recommend_all` (streamed): the generator is consumed for the
  first `--n_all_users` training users (batch_size 1024, its default).
* single-user latency: one user per call, median over `--n_single` distinct
  users (capped by `--single_budget_s`), as shipped (batch_size 256: a single
  user is padded to a 256-row batch) and with batch_size=1.
* implicit `model.recommend(userids, user_items[userids], N=100,
  filter_already_liked_items=True)` with recalculate_user=False (stored
  factors: one GEMM + top-k) and recalculate_user=True (fold-in, the
  recjax semantics); a scalar userid for the single-user latency.
* prototype (this file, not the library): the sparse fold-in.  A batch's rows
  are grouped by padded length (powers of two >= 8; row counts rounded up by
  `padded_rows`, 4 shapes per octave), and each group runs ONE jitted call
  that solves (b VᵀV + (a−b) Σ_{j∈x} v_j v_jᵀ + λI) u = a Σ_{j∈x} v_j from the
  user's observed items only (`recjax.ops.als.solve_bucket`, exact Cholesky,
  one batched factorization per call, blocked on before the next one: the
  deadlock guard of NOTES-jax-cpu.md); the [B, K] factors are assembled on
  the host and one jitted call per 256 rows scores u Vᵀ, excludes the seen items
  by a scatter of their (row, column) pairs (no dense [B, I] input or mask
  crosses to the device) and reduces to the top k.  For EASE the same
  grouping sums the rows of B of the observed items (a `fori_loop` over the
  padded slots, no [R, L, I] temporary) instead of the dense x @ B, with the
  exclusion and top-k per group.  Its factors are compared with
  `fold_in_dense` on the same batch and its top-100 with recjax.recommend's.

Timing (the house method of benchmarks/harness.py, applied to whole calls):
the first call of each path is timed apart ("first s": compilation of its
shapes plus one run), then `--n_repeats` timed calls, median quoted; the
answer is on the host when the clock stops (recjax's Recommendations lists;
implicit's numpy arrays).  The breakdown times the library's jitted pieces
with `harness.time_jitted` (inputs on device, compile apart, medians) and
the host-side steps of `recommend` with perf_counter medians.

Threads: `--threads` CPUs (default: all this process may use) are used by
both sides: this process's CPU affinity is set to the first `--threads`
allowed CPUs before jax is imported (XLA's CPU pool sizes itself from the
affinity) and the implicit subprocess inherits it, with OMP_NUM_THREADS =
`num_threads` = `--threads` and BLAS limited by threadpoolctl to
`--peer_blas_threads` (default 1, implicit's own advice: its top-k calls BLAS
from inside its OpenMP threads, and 2 BLAS threads made it 2-3x slower here).  The 1-minute load average is printed per section: the machine is
shared, and a load above the CPU count means contended figures.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging
import numpy as np
import scipy.sparse as sp

FLAGS = flags.FLAGS


def define_flags():
  """The binary's flags; defined only when run as a program (tests import the helpers)."""
  flags.DEFINE_integer("n_users", 50_000, "Users of the synthetic matrix.")
  flags.DEFINE_integer("n_items", 20_000, "Items (the catalog).")
  flags.DEFINE_integer("nnz", 1_500_000, "Clicks of the synthetic matrix.")
  flags.DEFINE_integer("seed", 0, "Seed of the data, factors and user samples.")
  flags.DEFINE_integer("factors", 64, "K of the WMF factors.")
  flags.DEFINE_float("alpha", 10.0, "Confidence of a click: implicit alpha = recjax a; b = 1.")
  flags.DEFINE_float("reg", 0.01, "λ (implicit regularization = recjax reg).")
  flags.DEFINE_integer("als_iters", 3, "implicit ALS iterations that make the factors.")
  flags.DEFINE_integer("k", 100, "Recommendations per user.")
  flags.DEFINE_integer("batch_size", 256, "recjax recommend's batch_size (its default).")
  flags.DEFINE_integer("all_batch_size", 1024, "recjax recommend_all's batch_size (its default).")
  flags.DEFINE_integer("n_batch_users", 2048, "Users of one timed batch call (random sample).")
  flags.DEFINE_integer("n_all_users", 4096, "Users consumed from recommend_all per timed run.")
  flags.DEFINE_integer("n_single", 50, "Single-user calls (distinct users) for the latency median.")
  flags.DEFINE_float("single_budget_s", 25.0, "Stop the single-user calls of a path after this "
                     "long (at least 5 calls).")
  flags.DEFINE_integer("n_repeats", 3, "Timed repeats of each batch call (median quoted).")
  flags.DEFINE_integer("n_check", 20, "Users whose top-k are compared across paths.")
  flags.DEFINE_integer("threads", None, "CPUs for both sides (default: all this process may use).")
  flags.DEFINE_integer("peer_blas_threads", 1, "BLAS threads of implicit (1: implicit's advice; "
                       "its top-k calls BLAS inside its OpenMP threads, and 2 BLAS threads made "
                       "topk 2-3x slower here).")
  flags.DEFINE_string("peer_python", None, "A python with implicit installed "
                      "(`../shared/tools/peer-venvs.sh implicit`); without it, random factors and "
                      "no implicit timings.")
  flags.DEFINE_list("models", ["wmf", "ease"], "Which recjax models to time.")
  flags.DEFINE_enum("ease_weights", "random", ["random", "solve"], "EASE B: random of the right "
                    "shape, or solved (sparse Gram + host LAPACK) from the matrix.")
  flags.DEFINE_integer("ease_items", None, "Score EASE on the first this-many items only "
                       "(default: the whole catalog).")
  flags.DEFINE_bool("prototype", True, "Time the sparse fold-in / sparse EASE prototype.")
  flags.DEFINE_bool("breakdown", True, "Time the pieces of recjax's batch step.")
  flags.DEFINE_string("workdir", None, "Where the artifacts go (default: a temporary directory).")
  flags.DEFINE_string("out", "benchmarks/results/bench_recommend.json", "JSON output path.")

# ----------------------------------------------------------------------------- peer (implicit)

_PEER_SCRIPT = r"""
import json, os, statistics, sys, time
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits, threadpool_info
import implicit
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.topk import topk

args = json.loads(sys.argv[1])
X = sp.load_npz(args["matrix"]).tocsr().astype(np.float32)
users = np.load(args["users"])
batch, all_users, single, check = (users[n] for n in ("batch", "all", "single", "check"))
n, reps, threads = args["k"], args["n_repeats"], args["threads"]
out = {"library": "implicit " + implicit.__version__, "numpy": np.__version__,
       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "num_threads": threads}
with threadpool_limits(args["blas_threads"], "blas"):
  out["threadpools"] = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
  model = AlternatingLeastSquares(factors=args["k_factors"], regularization=args["reg"],
                                  alpha=args["alpha"], iterations=args["iters"], use_cg=True,
                                  num_threads=threads, random_state=args["seed"],
                                  calculate_training_loss=False)
  if args["train"]:
    t0 = time.perf_counter()
    model.fit(X, show_progress=False)
    out["fit_s"] = time.perf_counter() - t0
    np.savez(args["factors"], U=model.user_factors, V=model.item_factors)
  else:
    f = np.load(args["factors"])
    model.user_factors, model.item_factors = np.array(f["U"]), np.array(f["V"])

  def call(u, rc):
    return model.recommend(u, X[u], N=n, filter_already_liked_items=True, recalculate_user=rc)

  def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0

  for rc in (False, True):
    tag = "recalc" if rc else "stored"
    out[tag + "_first_s"] = timed(lambda: call(batch, rc))
    out[tag + "_batch_s"] = statistics.median(timed(lambda: call(batch, rc)) for _ in range(reps))
    out[tag + "_all_s"] = statistics.median(timed(lambda: call(all_users, rc)) for _ in range(reps))
    for u in single[:2]:
      call(int(u), rc)
    out[tag + "_single_s"] = [timed(lambda: call(int(u), rc)) for u in single]
  # Breakdown of the fold-in path: the per-user sparse solves, then the GEMM + top-k.
  rows = X[batch]
  out["recalc_solve_s"] = statistics.median(
      timed(lambda: model.recalculate_user(batch, X[batch])) for _ in range(reps))
  folded = model.recalculate_user(batch, rows)
  out["topk_s"] = statistics.median(
      timed(lambda: topk(model.item_factors, folded, n, filter_query_items=rows,
                         num_threads=threads)) for _ in range(reps))
  ids_t, sc_t = call(check, True)
  ids_f, sc_f = call(check, False)
  np.savez(args["check_out"], ids_recalc=ids_t, scores_recalc=sc_t, ids_stored=ids_f,
           scores_stored=sc_f)
print("PEER " + json.dumps(out))
"""


def _peer(args: dict, threads: int) -> dict:
  env = dict(os.environ, OMP_NUM_THREADS=str(threads))
  load_before = os.getloadavg()[0]
  proc = subprocess.run([FLAGS.peer_python, "-c", _PEER_SCRIPT, json.dumps(args)],
                        capture_output=True, text=True, check=False, env=env)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("PEER ")]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"implicit subprocess failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
  out = json.loads(lines[-1][len("PEER "):])
  out["loadavg_1m"] = (load_before, os.getloadavg()[0])
  return out


# ----------------------------------------------------------------------------- helpers


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def _median_calls(fn, repeats: int) -> tuple[float, list[float]]:
  times = [_timed(fn) for _ in range(repeats)]
  return statistics.median(times), times


def _single_latencies(fn, users, budget_s: float) -> list[float]:
  """fn(user) per user (after 2 untimed calls on other users), until the budget is spent."""
  for u in users[-2:]:
    fn(u)
  times, start = [], time.perf_counter()
  for u in users:
    times.append(_timed(lambda: fn(u)))
    if len(times) >= 5 and time.perf_counter() - start > budget_s:
      break
  return times


def _overlap(a, b) -> float:
  return len(set(np.asarray(a).tolist()) & set(np.asarray(b).tolist())) / max(1, len(a))


def _next_pow2(n: int) -> int:
  return 1 << max(0, int(n) - 1).bit_length()


def padded_rows(n: int, minimum: int = 8) -> int:
  """n rounded up to a quarter-octave step: a multiple of next_pow2(n) / 8 (>= minimum).

  Pads at most 25% (~12% on average; a power of two would pad up to 2x, and the
  top-k over the catalog is paid per padded row) for 4 shapes per octave.
  """
  p = _next_pow2(max(n, minimum))
  step = max(minimum, p // 8)
  return max(minimum, -(-n // step) * step)


def length_buckets(rows: sp.csr_matrix, min_len: int = 8, min_rows: int = 8):
  """Groups csr rows by padded length for the sparse prototype.

  Lengths are padded to powers of two (>= min_len) and each group's row count
  by `padded_rows`, so one batch size compiles a bounded set of shapes, once.

  Yields:
    (row ids [n] into `rows`, cols int32 [R, L], mask bool [R, L]); padding
    slots and padding rows have mask False and column 0.
  """
  lengths = np.diff(rows.indptr)
  padded = np.maximum(min_len, np.array([_next_pow2(n) for n in lengths], np.int64))
  for length in np.unique(padded):
    ids = np.flatnonzero(padded == length)
    n_rows = padded_rows(len(ids), min_rows)
    lens = lengths[ids]
    cols = np.zeros((n_rows, length), np.int32)
    mask = np.zeros((n_rows, length), bool)
    which = np.repeat(np.arange(len(ids)), lens)
    pos = np.arange(len(which)) - np.repeat(np.cumsum(lens) - lens, lens)
    cols[which, pos] = rows.indices[np.repeat(rows.indptr[ids], lens) + pos]
    mask[which, pos] = True
    yield ids, cols, mask


def seen_pairs(rows: sp.csr_matrix, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """(row, column) of every stored entry, padded to a power of two (>= 256) with row n_rows."""
  n = rows.nnz
  size = max(256, _next_pow2(n))
  r = np.full(size, n_rows, np.int32)
  c = np.zeros(size, np.int32)
  r[:n] = np.repeat(np.arange(rows.shape[0], dtype=np.int32), np.diff(rows.indptr))
  c[:n] = rows.indices
  return r, c


# ----------------------------------------------------------------------------- main


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO.
  allowed = sorted(os.sched_getaffinity(0))
  threads = FLAGS.threads or len(allowed)
  if threads < len(allowed):
    os.sched_setaffinity(0, allowed[:threads])  # Before jax starts XLA's CPU thread pool.
  cpus = sorted(os.sched_getaffinity(0))
  blas_threads = FLAGS.peer_blas_threads

  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from benchmarks import harness  # pylint: disable=import-outside-toplevel
  import recjax.serve as serve  # pylint: disable=import-outside-toplevel
  from recjax.data import synthetic  # pylint: disable=import-outside-toplevel
  from recjax.models.registry import get_model  # pylint: disable=import-outside-toplevel
  from recjax.ops import als, ranking  # pylint: disable=import-outside-toplevel
  from recjax.train import artifact  # pylint: disable=import-outside-toplevel

  env = harness.environment()
  print(f"{env['device_kind']} x{env['n_devices']} ({env['platform']}), {env['cpu_count']} CPUs, "
        f"affinity {cpus}, jax {env['jax']} jaxlib {env['jaxlib']} numpy {env['numpy']} "
        f"python {env['python']}")
  print(f"threads: XLA pool from affinity ({len(cpus)} CPUs); implicit num_threads={threads}, "
        f"OMP_NUM_THREADS={threads}, BLAS threads={blas_threads}; load average "
        f"{os.getloadavg()[0]:.2f}")
  peak = harness.matmul_peak_gflops()
  print(f"float32 matmul peak (measured now): {peak:.0f} GFLOP/s")

  k = FLAGS.k
  rng = np.random.default_rng(FLAGS.seed)
  t0 = time.perf_counter()
  train = synthetic.synthetic_implicit(FLAGS.n_users, FLAGS.n_items, FLAGS.nnz, seed=FLAGS.seed)
  lengths = np.diff(train.indptr)
  n_users, n_items = train.shape
  print(f"synthetic {n_users} x {n_items}, nnz {train.nnz} ({time.perf_counter() - t0:.1f}s); "
        f"items per user: median {np.median(lengths):.0f}, p99 {np.percentile(lengths, 99):.0f}, "
        f"max {lengths.max()}")
  samples = {
      "batch": np.sort(rng.choice(n_users, min(FLAGS.n_batch_users, n_users), replace=False)),
      "all": np.arange(min(FLAGS.n_all_users, n_users)),
      "single": rng.choice(n_users, min(FLAGS.n_single, n_users), replace=False),
      "check": np.sort(rng.choice(n_users, min(FLAGS.n_check, n_users), replace=False)),
  }
  print(f"k={k}, K={FLAGS.factors}, batch call {len(samples['batch'])} users "
        f"(recommend batch_size {FLAGS.batch_size}), recommend_all {len(samples['all'])} users "
        f"(batch_size {FLAGS.all_batch_size}), {len(samples['single'])} single-user calls, "
        f"{FLAGS.n_repeats} repeats")

  tmp = tempfile.TemporaryDirectory()
  workdir = FLAGS.workdir or tmp.name
  os.makedirs(workdir, exist_ok=True)
  matrix_path = os.path.join(workdir, "train.npz")
  sp.save_npz(matrix_path, train, compressed=False)
  users_path = os.path.join(workdir, "users.npz")
  np.savez(users_path, **samples)
  factors_path = os.path.join(workdir, "factors.npz")
  check_path = os.path.join(workdir, "check.npz")

  records: list[dict] = []
  rows_out: list[tuple] = []  # (path, semantics, users/s, single ms, first s)

  def add(name, semantics, n_batch, batch_s, single_s=None, first_s=None, **extra):
    rec = {"name": name, "semantics": semantics, "batch_users": n_batch, "batch_median_s": batch_s,
           "users_per_s": n_batch / batch_s if batch_s else None,
           "single_median_ms": 1e3 * statistics.median(single_s) if single_s else None,
           "single_calls": len(single_s) if single_s else 0,
           "single_p10_p90_ms": ([1e3 * float(np.percentile(single_s, q)) for q in (10, 90)]
                                 if single_s else None),
           "first_call_s": first_s,
           "loadavg_1m": os.getloadavg()[0], **extra}
    records.append(rec)
    rows_out.append(rec)
    single = (f"{rec['single_median_ms']:9.2f} ms (p10 {rec['single_p10_p90_ms'][0]:.2f}, p90 "
              f"{rec['single_p10_p90_ms'][1]:.2f})" if single_s else f"{'':>12s}")
    ups = f"{rec['users_per_s']:10.0f}" if batch_s else f"{'':>10s}"
    first = f"{first_s:7.2f}" if first_s is not None else f"{'':>7s}"
    print(f"  {name:50s} {ups} users/s {single}  first {first} s  "
          f"(load {rec['loadavg_1m']:.2f})", flush=True)
    return rec

  # --------------------------------------------------------------------------- implicit
  peer = None
  if FLAGS.peer_python:
    print(f"\n[implicit] {'training' if 'wmf' in FLAGS.models else 'factors'} and timing in "
          f"{FLAGS.peer_python}", flush=True)
    peer = _peer({"matrix": matrix_path, "users": users_path, "factors": factors_path,
                  "check_out": check_path, "train": True, "k": k, "k_factors": FLAGS.factors,
                  "alpha": FLAGS.alpha, "reg": FLAGS.reg, "iters": FLAGS.als_iters,
                  "seed": FLAGS.seed, "n_repeats": FLAGS.n_repeats, "threads": threads,
                  "blas_threads": blas_threads}, threads)
    print(f"  {peer['library']}, ALS fit ({FLAGS.als_iters} CG iterations) {peer['fit_s']:.1f}s, "
          f"thread pools {peer['threadpools']}")
    nb, na = len(samples["batch"]), len(samples["all"])
    for tag, sem in (("stored", "stored factors"), ("recalc", "fold-in")):
      rc = tag == "recalc"
      add(f"implicit recommend recalculate_user={rc} (batch)", sem, nb, peer[f"{tag}_batch_s"],
          peer[f"{tag}_single_s"], peer[f"{tag}_first_s"], library=peer["library"])
      add(f"implicit recommend recalculate_user={rc} ({na} users)", sem, na, peer[f"{tag}_all_s"],
          library=peer["library"])
    print(f"  implicit breakdown ({nb} users): recalculate_user {1e3 * peer['recalc_solve_s']:.1f} "
          f"ms, topk (GEMM + select, filtered) {1e3 * peer['topk_s']:.1f} ms")
    factors = np.load(factors_path)
    U, V = np.array(factors["U"], np.float32), np.array(factors["V"], np.float32)
    factor_source = peer["library"] + f" ALS, {FLAGS.als_iters} iterations"
  else:
    U = (0.1 * rng.standard_normal((n_users, FLAGS.factors))).astype(np.float32)
    V = (0.1 * rng.standard_normal((n_items, FLAGS.factors))).astype(np.float32)
    factor_source = "random N(0, 0.1^2)"
  print(f"  WMF factors: {factor_source}; U {U.shape}, V {V.shape}")

  info = {"protocol": "strong", "input_values": "binary",
          "preprocessing": {"binarize_threshold": None}, "source": "benchmarks/bench_recommend"}
  user_ids = np.arange(n_users)
  comparisons: dict = {}

  def time_recjax(label: str, tm, semantics: str):
    """recommend (batch), recommend_all (streamed), single-user (batch_size 256 and 1)."""
    nb, na = len(samples["batch"]), len(samples["all"])
    batch_users = user_ids[samples["batch"]]
    call = lambda: serve.recommend(tm, batch_users, k=k, batch_size=FLAGS.batch_size)
    first = _timed(call)
    med, _ = _median_calls(call, FLAGS.n_repeats)
    add(f"recjax recommend {label} (batch)", semantics, nb, med, first_s=first)

    def consume():
      seen = 0
      for part in serve.recommend_all(tm, k=k, batch_size=FLAGS.all_batch_size):
        seen += len(part)
        if seen >= na:
          break
    first = _timed(consume)
    med, _ = _median_calls(consume, max(1, FLAGS.n_repeats - 1))
    add(f"recjax recommend_all {label} ({na} users)", semantics, na, med, first_s=first)

    for bs in (FLAGS.batch_size, 1):  # batch_size's shape is compiled already; 1's is new.
      fn = lambda u, bs=bs: serve.recommend(tm, [int(u)], k=k, batch_size=bs)
      first = _timed(lambda: fn(samples["single"][0])) if bs == 1 else None
      lat = _single_latencies(fn, list(samples["single"]), FLAGS.single_budget_s)
      add(f"recjax recommend {label}, 1 user, batch_size={bs}", semantics, 0, None, lat,
          first_s=first)

  def host_breakdown(tm, users):
    """Medians of the host-side steps of one `recommend` batch (the code of recjax.serve.query)."""
    reps = max(3, FLAGS.n_repeats)
    out = {}
    out["user_rows (raw id -> row dict)"] = _median_calls(lambda: serve.query.user_rows(tm, users), reps)[0]
    rows = tm.train[serve.query.user_rows(tm, users)]
    out["train[rows] slice"] = _median_calls(lambda: tm.train[np.arange(len(users))], reps)[0]
    out["candidates (item id dict)"] = _median_calls(lambda: serve.candidates(tm), reps)[0]

    def dense():
      x = np.zeros((FLAGS.batch_size, tm.n_items), np.float32)
      rows.toarray(out=x[:rows.shape[0]])
      return x, x != 0
    out["dense rows + exclude mask"] = _median_calls(dense, reps)[0]
    x, ex = dense()
    out["device_put inputs"] = _median_calls(
        lambda: jax.block_until_ready(jax.device_put((x, ex))), reps)[0]
    return out

  def prototype(tm, kind: str):
    """The sparse path (module doc): returns (run, factors_of, shapes).

    run(rows) -> (scores [n, k], raw item ids [n, k]) on the host.
    WMF: one jitted exact solve per length bucket from the observed items only
    (blocked on, so one batched Cholesky is in flight at a time), the [n, K]
    factors assembled on the host, then one jitted u Vᵀ + exclusion (scatter
    of the seen (row, column) pairs) + top-k per 256 rows (padded by
    `padded_rows`).  EASE: per length bucket, the sum of the observed items'
    rows of B (fori_loop over the padded slots) + exclusion + top-k.
    """
    n = tm.n_items
    shapes: set = set()
    rank_rows = 256  # Scores + top-k per 256 rows: 1024 rows at once ran ~2x slower per user.

    def exclusion(shape, r, c):
      return jnp.zeros(shape, bool).at[r, c].set(True, mode="drop")

    if kind == "wmf":
      cfg = tm.model.config
      v = tm.factors["V"]
      n_factors = v.shape[1]
      gram = jax.jit(lambda y: cfg.b * (y.T @ y))(v)
      solve_jit = jax.jit(lambda cols, mask, v, gram: als.solve_bucket(
          v, gram, cols, mask, a=cfg.a, b=cfg.b, reg=cfg.reg, solver="cholesky"))
      rank_jit = jax.jit(lambda u, r, c, v: ranking.top_k_excluding(
          u @ v.T, exclusion((u.shape[0], n), r, c), k))

      def factors_of(row_ids, n_pad=None):
        part = tm.train[row_ids]
        u = np.zeros((n_pad or len(row_ids), n_factors), np.float32)
        for ids, cols, mask in length_buckets(part):
          shapes.add(("solve",) + cols.shape)
          u[ids] = np.asarray(solve_jit(cols, mask, v, gram))[:len(ids)]  # blocks
        return u, part

      def run(row_ids):
        u, part = factors_of(row_ids)
        values = np.empty((len(row_ids), k), np.float32)
        cols_out = np.empty((len(row_ids), k), np.int64)
        for start in range(0, len(row_ids), rank_rows):  # [rank_rows, I] scores stay in cache.
          stop = min(start + rank_rows, len(row_ids))
          n_pad = padded_rows(stop - start, minimum=1)
          uu = np.zeros((n_pad, n_factors), np.float32)
          uu[:stop - start] = u[start:stop]
          r, c = seen_pairs(part[start:stop], n_pad)
          shapes.add(("rank", n_pad, len(r)))
          vals, idx = jax.device_get(rank_jit(uu, r, c, v))
          values[start:stop], cols_out[start:stop] = vals[:stop - start], idx[:stop - start]
        return values, tm.item_ids[cols_out]

      return run, lambda row_ids: factors_of(row_ids)[0], shapes

    w = tm.factors["weights"]

    def ease_bucket(cols, mask, w):
      def body(l, acc):
        return acc + jnp.where(mask[:, l, None], w[cols[:, l]], 0.0)
      scores = jax.lax.fori_loop(0, cols.shape[1], body, jnp.zeros((cols.shape[0], n), w.dtype))
      rows_ = jnp.arange(cols.shape[0])[:, None]
      return ranking.top_k_excluding(
          scores, exclusion(scores.shape, rows_, jnp.where(mask, cols, n)), k)

    ease_jit = jax.jit(ease_bucket)

    def run(row_ids):
      part = tm.train[row_ids]
      values = np.empty((len(row_ids), k), np.float32)
      cols_out = np.empty((len(row_ids), k), np.int64)
      pending = []
      for ids, cols, mask in length_buckets(part):
        shapes.add(cols.shape)
        pending.append((ids, ease_jit(cols, mask, w)))  # No LAPACK: all dispatched at once.
      for ids, out in pending:
        vals, idx = jax.device_get(out)
        values[ids], cols_out[ids] = vals[:len(ids)], idx[:len(ids)]
      return values, tm.item_ids[cols_out]

    return run, None, shapes

  def time_prototype(label, tm, kind, semantics):
    run, factors_of, shapes = prototype(tm, kind)
    nb, na = len(samples["batch"]), len(samples["all"])

    def batched(users, bs):
      out = [run(users[s:s + bs]) for s in range(0, len(users), bs)]
      return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])
    first = _timed(lambda: batched(samples["batch"], FLAGS.batch_size))
    med, _ = _median_calls(lambda: batched(samples["batch"], FLAGS.batch_size), FLAGS.n_repeats)
    add(f"prototype sparse {label} (batch)", semantics, nb, med, first_s=first)
    first = _timed(lambda: batched(samples["all"], FLAGS.all_batch_size))
    med, _ = _median_calls(lambda: batched(samples["all"], FLAGS.all_batch_size),
                           max(1, FLAGS.n_repeats - 1))
    add(f"prototype sparse {label} ({na} users)", semantics, na, med, first_s=first)
    lat = _single_latencies(lambda u: run(np.array([u])), list(samples["single"]),
                            FLAGS.single_budget_s)
    add(f"prototype sparse {label}, 1 user", semantics, 0, None, lat)
    print(f"    prototype compiled {len(shapes)} shapes (solve/score buckets and batch sizes)")
    return run, factors_of

  # --------------------------------------------------------------------------- WMF
  if "wmf" in FLAGS.models:
    print(f"\n[recjax WMF] K={FLAGS.factors}, a={FLAGS.alpha}, b=1, reg={FLAGS.reg}", flush=True)
    model = get_model("wmf", {"dim": FLAGS.factors, "a": FLAGS.alpha, "b": 1.0,
                              "reg": FLAGS.reg})
    wd = os.path.join(workdir, "wmf")
    t_export = _timed(lambda: artifact.export(wd, model=model, params={},
                                              factors={"U": U, "V": V}, train=train,
                                              item_ids=np.arange(n_items), user_ids=user_ids,
                                              info=info))
    t0 = time.perf_counter()
    tm = artifact.load(wd)
    print(f"  export {t_export:.1f}s, load {time.perf_counter() - t0:.1f}s, mesh "
          f"{tm.mesh.devices.size} device(s), fold_in_chunk {tm.model.config.fold_in_chunk}")
    time_recjax("WMF", tm, "fold-in")

    # Correctness: recjax's top-k vs implicit's recalculate_user=True on the same users.
    ours = serve.recommend(tm, user_ids[samples["check"]], k=k)
    check = {"recjax_vs_implicit_recalc": None}
    if peer is not None:
      theirs = np.load(check_path)
      ov = [_overlap(a, b) for a, b in zip(ours.items, theirs["ids_recalc"])]
      ov_stored = [_overlap(a, b) for a, b in zip(ours.items, theirs["ids_stored"])]
      score_diff = max(float(np.max(np.abs(np.sort(s)[::-1] - np.sort(t)[::-1])))
                       for s, t in zip(ours.scores, theirs["scores_recalc"]))
      scale = max(float(np.max(np.abs(t))) for t in theirs["scores_recalc"])
      exact = sum(np.array_equal(a, b) for a, b in zip(ours.items, theirs["ids_recalc"]))
      check.update(recjax_vs_implicit_recalc={"mean": float(np.mean(ov)), "min": float(np.min(ov))},
                   identical_rankings=int(exact), max_abs_score_diff=score_diff,
                   max_abs_score=scale,
                   recjax_vs_implicit_stored={"mean": float(np.mean(ov_stored)),
                                              "min": float(np.min(ov_stored))})
      print(f"  check ({len(ov)} users): top-{k} overlap with implicit recalculate_user=True "
            f"mean {np.mean(ov):.4f}, min {np.min(ov):.4f}; identical rankings {exact}/{len(ov)}; "
            f"max |score diff| (sorted) {score_diff:.2e} (scores up to {scale:.3f}); "
            f"overlap with recalculate_user=False (stored U, one half-sweep older) mean "
            f"{np.mean(ov_stored):.4f}")
    comparisons["wmf"] = check

    if FLAGS.breakdown:
      print(f"  breakdown of one recommend batch (B={FLAGS.batch_size}, I={n_items}, "
            f"K={FLAGS.factors}), jitted pieces via harness.time_jitted:", flush=True)
      B = FLAGS.batch_size
      part = train[samples["batch"][:B]]
      x = np.zeros((B, n_items), np.float32)
      part.toarray(out=x[:part.shape[0]])
      v = tm.factors["V"]
      cfg = tm.model.config
      c = (x > 0).astype(np.float32)
      pieces = [
          ("masked_grams (Yᵀdiag(c)Y, scan of 512 items)",
           functools.partial(als.masked_grams, item_chunk=cfg.fold_in_chunk), (c, v),
           2.0 * B * n_items * FLAGS.factors ** 2),
          ("fold_in_dense (grams + one batched Cholesky)",
           functools.partial(als.fold_in_dense, a=cfg.a, b=cfg.b, reg=cfg.reg,
                             item_chunk=cfg.fold_in_chunk), (v, x),
           2.0 * B * n_items * FLAGS.factors ** 2),
          ("scores u Vᵀ", lambda u, v: u @ v.T,
           (np.asarray(U[:B]), v), 2.0 * B * n_items * FLAGS.factors),
          (f"top_k_excluding k={k} over {n_items}",
           lambda s, e: ranking.top_k_excluding(s, e, k),
           (np.random.default_rng(0).standard_normal((B, n_items), dtype=np.float32), x != 0),
           None),
          ("whole step: score + exclusion + top-k",
           lambda p, f, xx, e: ranking.top_k_excluding(
               tm.model.score(p, f, xx).astype(jnp.float32), e, k),
           (tm.params, tm.factors, x, x != 0), None),
      ]
      bd = []
      for name, fn, fargs, flops in pieces:
        rec = harness.time_jitted(fn, *fargs, n_runs=max(3, FLAGS.n_repeats), n_warmup=1,
                                  name=name)
        rec["gflops"] = flops / rec["median_s"] / 1e9 if flops else None
        bd.append(rec)
        gf = f"{rec['gflops']:6.1f} GFLOP/s ({100 * rec['gflops'] / peak:3.0f}% of peak)" if flops else ""
        print(f"    {name:48s} {1e3 * rec['median_s']:9.1f} ms  compile {rec['compile_s']:5.2f}s  {gf}")
      for name, s in host_breakdown(tm, user_ids[samples["batch"][:B]]).items():
        bd.append({"name": "host: " + name, "median_s": s})
        print(f"    host: {name:42s} {1e3 * s:9.1f} ms")
      records.append({"name": "wmf breakdown", "pieces": bd})

    if FLAGS.prototype:
      print("  prototype: sparse fold-in (observed items only, length buckets)", flush=True)
      run, factors_of = time_prototype("fold-in WMF", tm, "wmf", "fold-in")
      B = FLAGS.batch_size
      rows = samples["batch"][:B]
      part = train[rows]
      x = np.zeros((len(rows), n_items), np.float32)
      part.toarray(out=x)
      cfg = tm.model.config
      dense_u = np.asarray(jax.jit(functools.partial(
          als.fold_in_dense, a=cfg.a, b=cfg.b, reg=cfg.reg, item_chunk=cfg.fold_in_chunk))(
              tm.factors["V"], x))
      sparse_u = factors_of(rows)
      rel = float(np.max(np.abs(sparse_u - dense_u)) / np.max(np.abs(dense_u)))
      _, proto_ids = run(samples["check"])
      ov = [_overlap(a, b) for a, b in zip(ours.items, proto_ids)]
      comparisons["wmf"].update(prototype_factor_max_rel_diff=rel,
                                prototype_vs_recjax_overlap={"mean": float(np.mean(ov)),
                                                             "min": float(np.min(ov))})
      msg = ""
      if peer is not None:
        theirs = np.load(check_path)
        ovp = [_overlap(a, b) for a, b in zip(proto_ids, theirs["ids_recalc"])]
        comparisons["wmf"]["prototype_vs_implicit_recalc_overlap"] = float(np.mean(ovp))
        msg = f", vs implicit recalculate_user=True mean {np.mean(ovp):.4f}"
      print(f"    check: factors vs fold_in_dense on {len(rows)} users: max |diff| / max |u| "
            f"{rel:.2e}; top-{k} overlap with recjax.recommend mean {np.mean(ov):.4f}, min "
            f"{np.min(ov):.4f}{msg}")
    del tm

  # --------------------------------------------------------------------------- EASE
  if "ease" in FLAGS.models:
    n_e = min(FLAGS.ease_items or n_items, n_items)
    train_e = train[:, :n_e].tocsr() if n_e < n_items else train
    print(f"\n[recjax EASE] I={n_e}, weights: {FLAGS.ease_weights}", flush=True)
    t0 = time.perf_counter()
    if FLAGS.ease_weights == "solve":
      from recjax.ops import ease as ease_ops  # pylint: disable=import-outside-toplevel
      w = ease_ops.ease_weights_host(ease_ops.sparse_gram(train_e), 500.0, overwrite=True)
    else:
      w = rng.standard_normal((n_e, n_e), dtype=np.float32)
      w *= 0.01
      np.fill_diagonal(w, 0.0)
    print(f"  B {w.shape} {w.dtype} in {time.perf_counter() - t0:.1f}s "
          f"({'solved' if FLAGS.ease_weights == 'solve' else 'random, zero diagonal'})")
    wd = os.path.join(workdir, "ease")
    t_export = _timed(lambda: artifact.export(wd, model=get_model("ease", {"l2": 500.0}),
                                              params={}, factors={"weights": w}, train=train_e,
                                              item_ids=np.arange(n_e), user_ids=user_ids,
                                              info=info))
    del w
    t0 = time.perf_counter()
    tm = artifact.load(wd)
    print(f"  export {t_export:.1f}s, load {time.perf_counter() - t0:.1f}s")
    time_recjax("EASE", tm, "x @ B")
    ours = serve.recommend(tm, user_ids[samples["check"]], k=k)
    if FLAGS.breakdown:
      B = FLAGS.batch_size
      part = train_e[samples["batch"][:B]]
      x = np.zeros((B, n_e), np.float32)
      part.toarray(out=x[:part.shape[0]])
      rec = harness.time_jitted(lambda xx, ww: xx @ ww, x, tm.factors["weights"],
                                n_runs=max(3, FLAGS.n_repeats), n_warmup=1, name="EASE x @ B")
      rec["gflops"] = 2.0 * B * n_e * n_e / rec["median_s"] / 1e9
      records.append({"name": "ease breakdown", "pieces": [rec]})
      print(f"  breakdown: x @ B [{B}, {n_e}] x [{n_e}, {n_e}] {1e3 * rec['median_s']:.1f} ms, "
            f"{rec['gflops']:.1f} GFLOP/s ({100 * rec['gflops'] / peak:.0f}% of peak)")
    if FLAGS.prototype:
      print("  prototype: sparse x @ B (sum of the observed items' rows of B)", flush=True)
      run, _ = time_prototype("x @ B EASE", tm, "ease", "x @ B")
      _, proto_ids = run(samples["check"])
      ov = [_overlap(a, b) for a, b in zip(ours.items, proto_ids)]
      comparisons["ease"] = {"prototype_vs_recjax_overlap": {"mean": float(np.mean(ov)),
                                                             "min": float(np.min(ov))}}
      print(f"    check: top-{k} overlap with recjax.recommend mean {np.mean(ov):.4f}, min "
            f"{np.min(ov):.4f}")
    del tm

  # --------------------------------------------------------------------------- summary
  print(f"\n{'path':58s} {'semantics':>14s} {'users/s':>9s} {'1 user ms':>10s} {'first s':>8s}")
  for r in rows_out:
    ups = f"{r['users_per_s']:9.0f}" if r["users_per_s"] else f"{'':>9s}"
    ms = f"{r['single_median_ms']:10.2f}" if r["single_median_ms"] else f"{'':>10s}"
    first = f"{r['first_call_s']:8.2f}" if r["first_call_s"] is not None else f"{'':>8s}"
    print(f"{r['name']:58s} {r['semantics']:>14s} {ups} {ms} {first}")
  ratios = {}
  if peer is not None:
    by = {r["name"]: r for r in rows_out}
    na = len(samples["all"])
    ref_b = by["implicit recommend recalculate_user=True (batch)"]
    ref_a = by[f"implicit recommend recalculate_user=True ({na} users)"]
    pairs = [(n, ref_b) for n in ("recjax recommend WMF (batch)", "prototype sparse fold-in WMF (batch)")]
    pairs += [(n, ref_a) for n in (f"recjax recommend_all WMF ({na} users)",
                                   f"prototype sparse fold-in WMF ({na} users)")]
    print("\nrecjax / implicit, same semantics (fold-in = recalculate_user=True):")
    for n, ref in pairs:
      if n in by:
        ratio = by[n]["users_per_s"] / ref["users_per_s"]
        ratios[n] = ratio
        print(f"  {n:50s} throughput {ratio:8.4f}x  ({by[n]['users_per_s']:.0f} vs "
              f"{ref['users_per_s']:.0f} users/s)")
    for n in ("recjax recommend WMF, 1 user, batch_size=256",
              "recjax recommend WMF, 1 user, batch_size=1", "prototype sparse fold-in WMF, 1 user"):
      if n in by:
        ref = by["implicit recommend recalculate_user=True (batch)"]
        ratio = by[n]["single_median_ms"] / ref["single_median_ms"]
        ratios[n + " latency"] = ratio
        print(f"  {n:50s} latency {ratio:8.1f}x  ({by[n]['single_median_ms']:.2f} vs "
              f"{ref['single_median_ms']:.2f} ms)")
  print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (CPUs used: {len(cpus)})")
  path = harness.write_json(
      FLAGS.out, records, matmul_peak_gflops=peak, shape=[n_users, n_items], nnz=int(train.nnz),
      k=k, factors=FLAGS.factors, alpha=FLAGS.alpha, reg=FLAGS.reg, factor_source=factor_source,
      threads=threads, cpus=cpus, peer_blas_threads=blas_threads, batch_size=FLAGS.batch_size,
      all_batch_size=FLAGS.all_batch_size, checks=comparisons, ratios=ratios,
      peer={k_: v_ for k_, v_ in (peer or {}).items() if not k_.endswith("single_s")},
      ease_weights=FLAGS.ease_weights, command=" ".join([sys.executable] + sys.argv),
      host=platform.node())
  print(f"wrote {path}")
  tmp.cleanup()


if __name__ == "__main__":
  define_flags()
  app.run(main)
