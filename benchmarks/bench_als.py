r"""Weighted implicit ALS: seconds per iteration of `recjax.ops.als.half_sweep`, beside implicit.

  python -m benchmarks.bench_als                        # ML-20M-sized, K=64,200, cg+cholesky
  python -m benchmarks.bench_als --small                # 20,000 x 4,000, 1M nnz
  python -m benchmarks.bench_als --data=gowalla --data_dir=../shared/data
  python -m benchmarks.bench_als \
      --peer_python=$(../shared/tools/peer-venvs.sh implicit | cut -d' ' -f2)
  python -m benchmarks.bench_als --layouts=1x2,2x1 --peer_threads=2 --peer_python=...
      # both cores: 2 CPU devices in one process, and 2 processes x 1 device

Layouts (`--layouts`, processes x devices per process): "1x1" is one device;
"1x2" is one process with 2 CPU devices (``jax_num_cpu_devices``) and a 1-D
mesh over them; "2x1" is two processes of one device each, joined by
``jax.distributed`` (gloo CPU collectives, coordinator on 127.0.0.1 at a free
port), one global mesh over both.  On a mesh each chunk's rows are split over
the devices (`half_sweep(mesh=...)`).  In "2x1" both processes run the same
sweeps; process 0's times are reported and the memory figure is the sum of the
two processes' peaks.  Use ``--peer_threads`` equal to the cores the layout
uses for a side-by-side comparison.

One ALS iteration is the user half-sweep (U against fixed V) followed by the
item half-sweep (V against the new U).  Each (K, solver) configuration runs in
its own subprocess of this script (the hidden `--child` mode), so its memory
peak is its own; the implicit configurations run in a subprocess of the peer's
python.  Both sides read the SAME matrix (binarized, saved as .npz, users x
items csr — the orientation of implicit 0.7's `fit(user_items)`) and start from
the SAME initial factors (uniform [0, 0.01), seeded, saved as .npz), and both
do 1 + n_iters iterations.

The model (identical on both sides).  implicit 0.7.3 multiplies the csr by
`alpha` and uses the stored value itself as the confidence of an observed
entry: A = YᵀY + λI + Σ_obs (C_ui - 1) y yᵀ, rhs = Σ_obs C_ui y, i.e.
C_ui = alpha·r_ui with weight 1 on unobserved entries — not 1 + alpha·r_ui.  On
the binarized matrix that is recjax's a = alpha, b = 1, reg = λ.  As a check
that the two really solve the same problem, the weighted loss
(`als.implicit_objective`, float64 on the host) of both final factor pairs is
printed; from identical starting points the exact (Cholesky) solvers should
agree to float32 round-off, the CG ones (same 3 warm-started steps) closely.

Timing.  recjax: the first iteration (which includes the compilation of every
bucket shape) apart from the median of the `n_iters` later ones; each half
sweep blocks on its result (`half_sweep` blocks per chunk).  The factors are on
the device before timing; the buckets are built once on the host before the
iterations (timed apart: "buckets s") and `half_sweep` copies each chunk's
index arrays to the device inside the iteration, as the library does.
implicit: one `fit(iterations=1 + n_iters)`; the per-iteration seconds come
from fit's own `callback(iteration, elapsed, loss)`, which times the two
solver calls of each iteration and excludes fit's once-per-fit preparation
(scaling by alpha, the transpose), which is reported apart as "fit setup s"
(= fit wall time - sum of iterations).  implicit runs with num_threads=2
(OpenMP) and BLAS limited to one thread by `threadpoolctl`, as it recommends.

Memory.  The peak resident set of each configuration's process, from VmHWM in
/proc/self/status.  `resource.getrusage(...).ru_maxrss` is recorded too but is
NOT the figure compared: on Linux a child started by `subprocess` inherits the
parent's high-water mark into ru_maxrss across exec (a child of a parent
holding 2 GB reports 2 GB while its VmHWM is 13 MB), so ru_maxrss of a child
of this (matrix-holding) parent overstates it.  The resident set right after
imports + loading the matrix ("base GB") is printed to separate the cost of
the runtime (jax's is a few hundred MB) from that of the solver.

The issue's target, printed per (K, solver) row as PASS/FAIL: recjax "cg" ≤
implicit CG seconds, recjax "cholesky" (exact) ≤ implicit Cholesky
(use_cg=False) seconds, using the medians of the later iterations, and recjax
peak ≤ 2 × implicit peak.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import numpy as np
import scipy.sparse as sp

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "synthetic", ["synthetic", "gowalla"], "Which matrix.")
flags.DEFINE_string("data_dir", "../shared/data", "Data root for --data=gowalla.")
flags.DEFINE_bool("small", False, "Synthetic 20,000 x 4,000 with 1M non-zeros (a quick run).")
flags.DEFINE_list("factors", ["64", "200"], "Latent dimensions K.")
flags.DEFINE_list("solvers", ["cg", "cholesky"], "recjax solvers (implicit: use_cg=True/False).")
flags.DEFINE_float("alpha", 10.0, "Confidence of an observed entry: a = alpha (implicit's "
                   "C = alpha * r on a binary matrix), b = 1.")
flags.DEFINE_float("reg", 0.01, "L2 penalty λ.")
flags.DEFINE_integer("cg_steps", 3, "CG steps per row per half sweep (implicit's default).")
flags.DEFINE_integer("n_iters", 3, "Timed iterations after the first.")
flags.DEFINE_float("bucket_growth", 1.25, "Ratio of successive padded row lengths of the buckets.")
flags.DEFINE_integer("max_bytes_per_call", 256 << 20, "half_sweep's per-call memory budget "
                     "(rows per call per bucket from its length; 0 = whole buckets).")
flags.DEFINE_integer("rows_per_call", None, "half_sweep's rows_per_call, capped at each "
                     "bucket's row count (default: whole bucket, or the byte budget's).")
flags.DEFINE_integer("cache_bytes", 1 << 20, "half_sweep's cache_bytes: gathered-factor bytes "
                     "of the row blocks solved one at a time inside a call (0 = one block).")
flags.DEFINE_list("layouts", ["1x1"], "recjax layouts, processes x CPU devices per process: "
                  "1x1, 1x2 (one process, 2 devices), 2x1 (2 processes, jax.distributed).")
flags.DEFINE_integer("peer_threads", 2, "implicit's num_threads (OpenMP); 1 for a one-core "
                     "comparison under `taskset -c 0`.")
flags.DEFINE_string("peer_python", None, "A python with implicit installed "
                    "(`../shared/tools/peer-venvs.sh implicit`).")
flags.DEFINE_bool("objective", True, "Compute the loss of both final factor pairs.")
flags.DEFINE_integer("child_timeout", 3600, "Seconds before a configuration is killed (a hang "
                     "of batched LAPACK, see NOTES-jax-cpu.md, would show up here).")
flags.DEFINE_string("out", "benchmarks/results/bench_als.json", "JSON output path.")
# Hidden: one recjax configuration, run by the parent in a subprocess.
flags.DEFINE_bool("child", False, "Internal: run one recjax configuration and print RESULT json.")
flags.DEFINE_string("child_args", None, "Internal: json arguments of --child.")

_SMALL = (20_000, 4_000, 1_000_000)


def _proc_status_gb(key: str) -> float:
  """A kB field of /proc/self/status (VmRSS, VmHWM) in GB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) / 2**20
  return float("nan")


# ----------------------------------------------------------------------------- peer (implicit)

_PEER_SCRIPT = r"""
import json, resource, sys, time
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits
import implicit
from implicit.cpu.als import AlternatingLeastSquares

def status_gb(key):
  for line in open("/proc/self/status"):
    if line.startswith(key + ":"):
      return int(line.split()[1]) / 2**20

args = json.loads(sys.argv[1])
m = sp.load_npz(args["matrix"]).tocsr().astype(np.float32)
init = np.load(args["init"])
base = status_gb("VmRSS")
model = AlternatingLeastSquares(factors=args["k"], regularization=args["reg"], alpha=args["alpha"],
                                use_cg=args["use_cg"], iterations=1 + args["n_iters"],
                                num_threads=args["threads"], calculate_training_loss=False,
                                random_state=0)
model.cg_steps = args["cg_steps"]
model.user_factors = np.array(init["U"], np.float32)
model.item_factors = np.array(init["V"], np.float32)
times = []
with threadpool_limits(1, "blas"):
  t0 = time.perf_counter()
  model.fit(m, show_progress=False, callback=lambda it, elapsed, loss: times.append(elapsed))
  fit_s = time.perf_counter() - t0
peak = status_gb("VmHWM")
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
np.savez(args["factors_out"], U=model.user_factors, V=model.item_factors)
print("RESULT " + json.dumps({"library": "implicit " + implicit.__version__, "iter_s": times,
                              "fit_s": fit_s, "base_gb": base, "peak_gb": peak,
                              "ru_maxrss_gb": maxrss}))
"""


def _run(cmd: list[str], timeout: int) -> dict:
  """Runs a configuration; returns its RESULT json or {"error": ...}.

  The 1-minute load average before and after is stored with it: the machine is
  shared, and a load above the 2 cores means the figures are contended.
  """
  load_before = os.getloadavg()[0]
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout}s"}
  load = {"loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]}
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  if out.returncode != 0 or not lines:
    return {"error": f"rc={out.returncode}: {out.stderr[-3000:]}", **load}
  return {**json.loads(lines[-1][len("RESULT "):]), **load}


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _run_layout(child: dict, processes: int) -> dict:
  """One recjax configuration in `processes` processes (jax.distributed when > 1).

  Process 0's record is returned; with several processes, ``peak_gb`` and
  ``base_gb`` are the sums over them (each one's peak under ``peaks_gb``).
  """
  cmd = lambda args: [sys.executable, "-m", "benchmarks.bench_als", "--child",
                      f"--child_args={json.dumps(args)}"]
  if processes == 1:
    return _run(cmd(child), FLAGS.child_timeout)
  port = _free_port()
  with concurrent.futures.ThreadPoolExecutor(processes) as pool:
    futures = [pool.submit(_run, cmd(dict(child, processes=processes, process_id=i, port=port)),
                           FLAGS.child_timeout) for i in range(processes)]
    recs = [f.result() for f in futures]
  bad = [r for r in recs if "error" in r]
  if bad:
    return bad[0]
  return {**recs[0], "peaks_gb": [r["peak_gb"] for r in recs],
          "peak_gb": sum(r["peak_gb"] for r in recs), "base_gb": sum(r["base_gb"] for r in recs)}


def _add_objective(rec: dict, path: str, matrix) -> None:
  """The weighted loss of the factors a configuration wrote (when --objective)."""
  if FLAGS.objective and os.path.exists(path):
    from recjax.ops import als  # pylint: disable=import-outside-toplevel
    f = np.load(path)
    rec["objective"] = als.implicit_objective(f["U"], f["V"], matrix, a=FLAGS.alpha, b=1.0,
                                              reg_x=FLAGS.reg, reg_y=FLAGS.reg, chunk=1 << 18)


def _summarize(rec: dict) -> dict:
  """Adds first_s and median_s (of the later iterations) to a child's record."""
  if "error" in rec:
    return rec
  t = rec["iter_s"]
  rec["first_s"] = t[0]
  rec["median_s"] = statistics.median(t[1:]) if len(t) > 1 else t[0]
  return rec


# ----------------------------------------------------------------------------- recjax child


def _child(args: dict) -> None:
  """One recjax configuration; prints RESULT json (run in its own process)."""
  import jax  # pylint: disable=import-outside-toplevel
  if args.get("n_devices", 1) > 1:
    jax.config.update("jax_num_cpu_devices", args["n_devices"])
  if args.get("processes", 1) > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args['port']}",
                               num_processes=args["processes"], process_id=args["process_id"])
  from recjax.data import batching  # pylint: disable=import-outside-toplevel
  from recjax.ops import als  # pylint: disable=import-outside-toplevel
  from recjax.train.sharding import make_mesh  # pylint: disable=import-outside-toplevel

  m = sp.load_npz(args["matrix"]).tocsr()
  init = np.load(args["init"])
  u0, v0 = np.array(init["U"], np.float32), np.array(init["V"], np.float32)
  jax.block_until_ready(jax.numpy.zeros(1))  # start the backend before the baseline
  base = _proc_status_gb("VmRSS")
  t0 = time.perf_counter()
  sides = als.bucketed_sides(m, args.get("bucket_growth", 2.0))
  user_buckets, item_buckets = sides["users"], sides["items"]
  buckets_s = time.perf_counter() - t0
  del m
  kw = dict(a=args["a"], b=1.0, reg=args["reg"], solver=args["solver"],
            cg_steps=args["cg_steps"], rows_per_call=args["rows_per_call"],
            max_bytes_per_call=args.get("max_bytes_per_call") or None,
            cache_bytes=args.get("cache_bytes") or None,
            mesh=make_mesh(jax.device_count()) if jax.device_count() > 1 else None)
  if args.get("processes", 1) > 1:  # half_sweep places them on the global mesh.
    u, v = u0, v0
  else:
    u, v = jax.block_until_ready(jax.device_put((u0, v0)))
  del u0, v0
  iter_s, u_s, v_s = [], [], []
  for _ in range(1 + args["n_iters"]):
    t0 = time.perf_counter()
    u = jax.block_until_ready(als.half_sweep(u, v, user_buckets, **kw))
    t1 = time.perf_counter()
    v = jax.block_until_ready(als.half_sweep(v, u, item_buckets, **kw))
    t2 = time.perf_counter()
    u_s.append(t1 - t0)
    v_s.append(t2 - t1)
    iter_s.append(t2 - t0)
  peak = _proc_status_gb("VmHWM")
  maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  if jax.process_index() == 0:
    np.savez(args["factors_out"], U=np.asarray(u), V=np.asarray(v))
  print("RESULT " + json.dumps({
      "library": f"recjax (jax {jax.__version__})", "iter_s": iter_s, "user_half_s": u_s,
      "item_half_s": v_s, "buckets_s": buckets_s,
      "padding_ratio_users": batching.padding_ratio(user_buckets),
      "padding_ratio_items": batching.padding_ratio(item_buckets),
      "padding_ratio": (sum(b.mask.size for b in user_buckets + item_buckets)
                        / max(1, 2 * sum(int(b.mask.sum()) for b in user_buckets)) - 1.0),
      "n_buckets": [len(user_buckets), len(item_buckets)],
      "compiled_chunks": int(als.TRACE_COUNTS["implicit_chunk"]),
      "base_gb": base, "peak_gb": peak, "ru_maxrss_gb": maxrss}))


# ----------------------------------------------------------------------------- parent


def _load_matrix() -> tuple[sp.csr_matrix, str]:
  from recjax.data import synthetic  # pylint: disable=import-outside-toplevel

  if FLAGS.data == "gowalla":
    from recjax.data import registry  # pylint: disable=import-outside-toplevel
    m = registry.load_dataset("gowalla", data_dir=FLAGS.data_dir).interactions.to_csr()
    name = "gowalla"
  elif FLAGS.small:
    m = synthetic.synthetic_implicit(*_SMALL, seed=0, min_user_items=5, item_alpha=0.8,
                                     user_sigma=1.2)
    name = "synthetic-small"
  else:
    m = synthetic.ml20m_like(seed=0)
    name = "synthetic-ml20m"
  m = sp.csr_matrix(m, dtype=np.float32)
  m.sum_duplicates()
  m.sort_indices()
  m.data[:] = 1.0  # binarize: both models see r = 1 on every stored entry
  return m, name


def _fmt(x, spec):
  return format(x, spec) if isinstance(x, (int, float)) else str(x)


def main(argv):
  del argv
  if FLAGS.child:
    _child(json.loads(FLAGS.child_args))
    return
  from benchmarks import harness  # pylint: disable=import-outside-toplevel

  env = harness.environment()
  print(f"{env['device_kind']} x{env['n_devices']} ({env['platform']}), {env['cpu_count']} CPUs, "
        f"jax {env['jax']}")
  peak_gflops = harness.matmul_peak_gflops()
  print(f"float32 matmul peak (measured now): {peak_gflops:.0f} GFLOP/s")
  t0 = time.perf_counter()
  matrix, name = _load_matrix()
  print(f"{name}: {matrix.shape[0]} x {matrix.shape[1]}, nnz {matrix.nnz} "
        f"({time.perf_counter() - t0:.1f}s)")
  print(f"model: C = {FLAGS.alpha:g} on observed, 1 elsewhere (a={FLAGS.alpha:g}, b=1), "
        f"reg={FLAGS.reg:g}, cg_steps={FLAGS.cg_steps}, 1 + {FLAGS.n_iters} iterations, "
        f"rows_per_call={FLAGS.rows_per_call}")
  ks = [int(k) for k in FLAGS.factors]
  extra = {"matmul_peak_gflops": peak_gflops, "data": name, "shape": list(matrix.shape),
           "nnz": int(matrix.nnz), "alpha": FLAGS.alpha, "a": FLAGS.alpha, "b": 1.0,
           "reg": FLAGS.reg, "cg_steps": FLAGS.cg_steps, "n_iters": FLAGS.n_iters,
           "rows_per_call": FLAGS.rows_per_call, "peer_python": FLAGS.peer_python,
           "memory_figure": "VmHWM of the configuration's process"}
  records = []
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    mpath = os.path.join(tmp, "matrix.npz")
    sp.save_npz(mpath, matrix, compressed=False)
    for k in ks:
      rng = np.random.default_rng(0)
      ipath = os.path.join(tmp, f"init{k}.npz")
      init = {"U": rng.random((matrix.shape[0], k), np.float32) * np.float32(0.01),
              "V": rng.random((matrix.shape[1], k), np.float32) * np.float32(0.01)}
      np.savez(ipath, **init)
      for solver in FLAGS.solvers:
        common = {"matrix": mpath, "init": ipath, "k": k, "reg": FLAGS.reg,
                  "cg_steps": FLAGS.cg_steps, "n_iters": FLAGS.n_iters}
        peer, peer_out = None, os.path.join(tmp, f"implicit_{k}_{solver}.npz")
        if FLAGS.peer_python:
          pargs = dict(common, alpha=FLAGS.alpha, use_cg=solver == "cg", factors_out=peer_out,
                       threads=FLAGS.peer_threads)
          peer = _summarize(_run([FLAGS.peer_python, "-c", _PEER_SCRIPT, json.dumps(pargs)],
                                 FLAGS.child_timeout))
          peer.update(side="implicit", k=k, solver=solver, threads=FLAGS.peer_threads)
          if "error" not in peer:
            peer["fit_setup_s"] = peer["fit_s"] - sum(peer["iter_s"])
            _add_objective(peer, peer_out, matrix)
          records.append(peer)
          if "error" in peer:
            print(f"implicit K={k} {solver}: FAILED {peer['error']}")
          else:
            print(f"implicit K={k} {solver} ({FLAGS.peer_threads} threads): first "
                  f"{peer['first_s']:.2f}s, median {peer['median_s']:.2f}s, fit setup "
                  f"{peer['fit_setup_s']:.2f}s, peak {peer['peak_gb']:.2f} GB (base "
                  f"{peer['base_gb']:.2f}), loss {peer.get('objective', float('nan')):.6g}, "
                  f"load {peer['loadavg_1m_before']:.1f} -> {peer['loadavg_1m_after']:.1f}",
                  flush=True)
        for layout in FLAGS.layouts:
          processes, devices = (int(x) for x in layout.split("x"))
          ours_out = os.path.join(tmp, f"recjax_{k}_{solver}_{layout}.npz")
          child = dict(common, a=FLAGS.alpha, solver=solver, rows_per_call=FLAGS.rows_per_call,
                       max_bytes_per_call=FLAGS.max_bytes_per_call,
                       bucket_growth=FLAGS.bucket_growth, cache_bytes=FLAGS.cache_bytes,
                       n_devices=devices, factors_out=ours_out)
          ours = _summarize(_run_layout(child, processes))
          ours.update(side="recjax", k=k, solver=solver, layout=layout)
          if "error" not in ours:
            _add_objective(ours, ours_out, matrix)
          records.append(ours)
          if "error" in ours:
            print(f"recjax K={k} {solver} {layout}: FAILED {ours['error']}")
          else:
            u_med = statistics.median(ours["user_half_s"][1:] or ours["user_half_s"])
            v_med = statistics.median(ours["item_half_s"][1:] or ours["item_half_s"])
            print(f"recjax K={k} {solver} {layout}: first {ours['first_s']:.2f}s, "
                  f"median {ours['median_s']:.2f}s (user {u_med:.2f}s + item {v_med:.2f}s),"
                  f" buckets {ours['buckets_s']:.2f}s, padding {ours['padding_ratio']:.2f},"
                  f" peak {ours['peak_gb']:.2f} GB (base {ours['base_gb']:.2f}),"
                  f" {ours['compiled_chunks']} compiled chunk shapes,"
                  f" loss {ours.get('objective', float('nan')):.6g},"
                  f" load {ours['loadavg_1m_before']:.1f} -> {ours['loadavg_1m_after']:.1f}",
                  flush=True)
          rows.append((k, f"{solver} {layout}", ours, peer))
        harness.write_json(FLAGS.out, records, **extra)  # after every configuration

  # The side-by-side table.
  print()
  head = (f"{'K':>4} {'solver':12} {'recjax 1st s':>12} {'recjax s/it':>11} {'buckets s':>9} "
          f"{'pad':>5} {'recjax GB':>9}")
  if FLAGS.peer_python:
    head += (f" | {'implicit s/it':>13} {'impl GB':>7} | {'time ratio':>10} {'mem ratio':>9} "
             f"{'time':>4} {'mem':>4} {'target':>6}")
  print(head)
  print("-" * len(head))
  verdicts = []
  for k, solver, ours, peer in rows:
    ok = "error" not in ours
    line = (f"{k:>4} {solver:12} {_fmt(ours.get('first_s', 'FAIL'), '12.2f'):>12} "
            f"{_fmt(ours.get('median_s', 'FAIL'), '11.2f'):>11} "
            f"{_fmt(ours.get('buckets_s', '-'), '9.2f'):>9} "
            f"{_fmt(ours.get('padding_ratio', '-'), '5.2f'):>5} "
            f"{_fmt(ours.get('peak_gb', '-'), '9.2f'):>9}")
    if peer is not None:
      pok = "error" not in peer
      if ok and pok:
        tr = peer["median_s"] / ours["median_s"]
        mr = ours["peak_gb"] / peer["peak_gb"]
        t_pass, m_pass = ours["median_s"] <= peer["median_s"], mr <= 2.0
        verdict = {"k": k, "solver": solver, "time_ratio_implicit_over_recjax": tr,
                   "memory_ratio_recjax_over_implicit": mr, "time_pass": t_pass,
                   "memory_pass": m_pass, "pass": t_pass and m_pass}
        line += (f" | {peer['median_s']:13.2f} {peer['peak_gb']:7.2f} | {tr:9.2f}x {mr:8.2f}x "
                 f"{'PASS' if t_pass else 'FAIL':>4} {'PASS' if m_pass else 'FAIL':>4} "
                 f"{'PASS' if t_pass and m_pass else 'FAIL':>6}")
      else:
        verdict = {"k": k, "solver": solver, "pass": False, "error": True}
        line += (f" | {_fmt(peer.get('median_s', 'FAIL'), '13.2f'):>13} "
                 f"{_fmt(peer.get('peak_gb', '-'), '7.2f'):>7} | {'-':>10} {'-':>9} "
                 f"{'-':>4} {'-':>4} {'FAIL':>6}")
      verdicts.append(verdict)
    print(line)
  if FLAGS.peer_python:
    print("time ratio = implicit s/it / recjax s/it (>= 1: recjax as fast or faster); "
          "mem ratio = recjax peak / implicit peak (target <= 2); s/it = median of the "
          f"{FLAGS.n_iters} iterations after the first; peaks are VmHWM per process.")
    extra["verdicts"] = verdicts
  path = harness.write_json(FLAGS.out, records, **extra)
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
