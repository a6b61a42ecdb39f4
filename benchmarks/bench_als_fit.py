r"""Time to a trained WMF model: a whole fit, launch to factors, recjax beside implicit.

  python -m benchmarks.bench_als_fit \
      --peer_python=$(../shared/tools/peer-venvs.sh implicit | cut -d' ' -f2)
  python -m benchmarks.bench_als_fit --cores=0,1 ...     # both cores (implicit: 2 threads)

What is timed.  Each fit is one fresh process, started under ``taskset -c
<cores>`` (both libraries on the same cores; implicit with one OpenMP thread per
core, BLAS at one thread), and the figure is the wall time from launching it to
its exit after writing the trained factors (``np.savez``): interpreter start,
imports (jax's runtime, or implicit), reading the matrix, the bucketing,
compilation and the `--iterations` ALS iterations all count.  Inside, each
child also reports its phases (import, load, prepare, first iteration, the
median of the later ones).

Both sides fit the same binarized matrix (gowalla from the registry by
default, users x items csr saved as .npz) from the same initial factors
(uniform [0, 0.01), seeded) with the same model: confidence a = `alpha` on
clicks and 1 elsewhere (implicit's C = alpha·r on a binary matrix), λ =
`reg`, 3 CG steps (``cg``) or the exact solve (``cholesky``; implicit
``use_cg=False``).  recjax runs the WMF model itself (`recjax.models.wmf`:
``prepare`` then ``block_step`` per iteration, its default per-call memory
budget), so what is timed is the library's path.  The loss of both final factor
pairs is printed (`als.implicit_objective`).

recjax variants (rows of the table):

* ``buckets=all``: the default bucketing (every length of `bucket_growth`,
  46 chunk shapes on gowalla), no persistent compilation cache;
* ``buckets=N``: ``max_buckets=N`` per side (`als_sweep.fewest_slot_edges`);
* ``... cache cold`` / ``cache warm``: JAX's persistent compilation cache in a
  fresh folder (the first run compiles and writes it) and then the same
  command again (it reads the executables back: the figure for every run after
  the first on a machine).  The cache is JAX's own: ``jax_compilation_cache_dir``
  (here through ``JAX_COMPILATION_CACHE_DIR``), with
  ``jax_persistent_cache_min_compile_time_secs=0`` and
  ``..._min_entry_size_bytes=0`` so that every chunk program is kept.

Memory: the peak resident set (VmHWM) of each fit's process.  The issue's
target compares memory "beyond the JAX runtime itself": recjax's peak minus
the resident set right after importing jax and starting its CPU backend
("runtime GB", before any data) against implicit's whole peak; PASS when
that is <= 2x.  Time: PASS when recjax's launch-to-factors wall time <= implicit's.
The machine is shared: the 1-minute load average before and after each fit is
stored; run it when the machine is quiet, and read the ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import numpy as np
import scipy.sparse as sp

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "gowalla", "Registry name of the dataset.")
flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_list("configs", ["64:cg", "200:cholesky"], "K:solver pairs to fit.")
flags.DEFINE_integer("iterations", 15, "ALS iterations of a fit.")
flags.DEFINE_float("alpha", 10.0, "Confidence on clicks (a; implicit's alpha), b = 1.")
flags.DEFINE_float("reg", 0.01, "λ.")
flags.DEFINE_float("bucket_growth", 1.25, "WMF's bucket_growth.")
flags.DEFINE_list("max_buckets", ["all", "6"], "recjax variants: 'all' or a max_buckets value.")
flags.DEFINE_bool("cache", True, "Also run each bucketing with the persistent cache, cold then warm.")
flags.DEFINE_string("cores", "0", "CPU list for taskset (both libraries); implicit gets one "
                    "thread per core.")
flags.DEFINE_string("peer_python", None, "A python with implicit installed.")
flags.DEFINE_integer("timeout", 1800, "Seconds before a fit is killed.")
flags.DEFINE_string("out", "benchmarks/results/bench_als_fit.json", "JSON output path.")
flags.DEFINE_bool("child", False, "Internal: one recjax fit.")
flags.DEFINE_string("child_args", None, "Internal: json arguments of --child.")

_STATUS = r"""
def status_gb(key):
  for line in open("/proc/self/status"):
    if line.startswith(key + ":"):
      return int(line.split()[1]) / 2**20
"""

_PEER_SCRIPT = r"""
import time
t_start = time.perf_counter()
import json, sys
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits
import implicit
from implicit.cpu.als import AlternatingLeastSquares
""" + _STATUS + r"""
args = json.loads(sys.argv[1])
t_import = time.perf_counter()
base = status_gb("VmRSS")
m = sp.load_npz(args["matrix"]).tocsr().astype(np.float32)
init = np.load(args["init"])
t_load = time.perf_counter()
model = AlternatingLeastSquares(factors=args["k"], regularization=args["reg"], alpha=args["alpha"],
                                use_cg=args["solver"] == "cg", iterations=args["iterations"],
                                num_threads=args["threads"], calculate_training_loss=False,
                                random_state=0)
model.cg_steps = 3
model.user_factors = np.array(init["U"], np.float32)
model.item_factors = np.array(init["V"], np.float32)
times = []
with threadpool_limits(1, "blas"):
  model.fit(m, show_progress=False, callback=lambda it, elapsed, loss: times.append(elapsed))
np.savez(args["factors_out"], U=model.user_factors, V=model.item_factors)
t_end = time.perf_counter()
print("RESULT " + json.dumps({
    "library": "implicit " + implicit.__version__, "import_s": t_import - t_start,
    "load_s": t_load - t_import, "first_s": times[0], "later_s": float(np.median(times[1:] or times)),
    "iter_s": times, "inside_s": t_end - t_start, "runtime_gb": base,
    "peak_gb": status_gb("VmHWM")}))
"""


def _child(args: dict) -> None:
  """One recjax fit (its own process): WMF prepare + `iterations` block steps, factors saved."""
  t_start = time.perf_counter()
  import jax  # pylint: disable=import-outside-toplevel
  jax.block_until_ready(jax.numpy.zeros(1))  # The CPU backend is up: the runtime's own memory.
  from recjax.models import wmf  # pylint: disable=import-outside-toplevel
  from recjax.ops import als  # pylint: disable=import-outside-toplevel
  t_import = time.perf_counter()
  runtime = _status_gb("VmRSS")
  m = sp.load_npz(args["matrix"]).tocsr()
  init = np.load(args["init"])
  t_load = time.perf_counter()
  config = wmf.Config(dim=args["k"], a=args["alpha"], b=1.0, reg=args["reg"],
                      solver=args["solver"], bucket_growth=args["bucket_growth"],
                      max_buckets=args["max_buckets"])
  model = wmf.make(config)
  aux = model.prepare(m)
  t_prep = time.perf_counter()
  factors = jax.device_put({"U": np.array(init["U"]), "V": np.array(init["V"])})
  times = []
  for _ in range(args["iterations"]):
    t0 = time.perf_counter()
    factors = jax.block_until_ready(model.block_step({}, factors, aux, None))
    times.append(time.perf_counter() - t0)
  np.savez(args["factors_out"], U=np.asarray(factors["U"]), V=np.asarray(factors["V"]))
  t_end = time.perf_counter()
  print("RESULT " + json.dumps({
      "library": f"recjax (jax {jax.__version__})", "import_s": t_import - t_start,
      "load_s": t_load - t_import, "prepare_s": t_prep - t_load, "first_s": times[0],
      "later_s": statistics.median(times[1:]) if len(times) > 1 else times[0], "iter_s": times,
      "inside_s": t_end - t_start, "runtime_gb": runtime, "peak_gb": _status_gb("VmHWM"),
      "chunk_shapes": int(als.TRACE_COUNTS["implicit_chunk"]),
      "buckets": [len(aux["users"]), len(aux["items"])]}))


def _status_gb(key: str) -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) / 2**20
  return float("nan")


def _launch(cmd: list[str], env: dict | None = None) -> dict:
  """Runs one fit under taskset; its RESULT plus the launch-to-exit wall time and load."""
  load = os.getloadavg()[0]
  t0 = time.perf_counter()
  try:
    out = subprocess.run(["taskset", "-c", FLAGS.cores, *cmd], capture_output=True, text=True,
                         timeout=FLAGS.timeout, env=env, check=False)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {FLAGS.timeout}s"}
  wall = time.perf_counter() - t0
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  if out.returncode or not lines:
    return {"error": f"rc={out.returncode}: {out.stderr[-2000:]}"}
  return {**json.loads(lines[-1][7:]), "wall_s": wall, "loadavg_1m_before": load,
          "loadavg_1m_after": os.getloadavg()[0]}


def main(argv):
  del argv
  if FLAGS.child:
    _child(json.loads(FLAGS.child_args))
    return
  from benchmarks import harness  # pylint: disable=import-outside-toplevel
  from recjax.data import registry  # pylint: disable=import-outside-toplevel
  from recjax.ops import als  # pylint: disable=import-outside-toplevel

  m = sp.csr_matrix(registry.load_dataset(FLAGS.data, data_dir=FLAGS.data_dir)
                    .interactions.to_csr(), dtype=np.float32)
  m.sum_duplicates()
  m.sort_indices()
  m.data[:] = 1.0
  n_cores = len(FLAGS.cores.split(","))
  print(f"{FLAGS.data}: {m.shape[0]} x {m.shape[1]}, nnz {m.nnz}; {FLAGS.iterations} iterations, "
        f"a={FLAGS.alpha:g}, b=1, reg={FLAGS.reg:g}; cores {FLAGS.cores} (implicit "
        f"{n_cores} thread{'s' * (n_cores > 1)}); load {os.getloadavg()}", flush=True)
  extra = {"data": FLAGS.data, "shape": list(m.shape), "nnz": int(m.nnz),
           "iterations": FLAGS.iterations, "alpha": FLAGS.alpha, "reg": FLAGS.reg,
           "cores": FLAGS.cores, "bucket_growth": FLAGS.bucket_growth,
           "figure": "wall_s: launch to exit of a fresh process, factors written"}
  records, table = [], []
  with tempfile.TemporaryDirectory() as tmp:
    mpath = os.path.join(tmp, "matrix.npz")
    sp.save_npz(mpath, m, compressed=False)
    for spec in FLAGS.configs:
      k, solver = int(spec.split(":")[0]), spec.split(":")[1]
      rng = np.random.default_rng(0)
      ipath = os.path.join(tmp, f"init{k}.npz")
      np.savez(ipath, U=rng.random((m.shape[0], k), np.float32) * np.float32(0.01),
               V=rng.random((m.shape[1], k), np.float32) * np.float32(0.01))
      common = {"matrix": mpath, "init": ipath, "k": k, "solver": solver, "reg": FLAGS.reg,
                "alpha": FLAGS.alpha, "iterations": FLAGS.iterations}
      runs = []
      if FLAGS.peer_python:
        out = os.path.join(tmp, f"implicit{k}{solver}.npz")
        rec = _launch([FLAGS.peer_python, "-c", _PEER_SCRIPT,
                       json.dumps({**common, "threads": n_cores, "factors_out": out})])
        runs.append(("implicit", rec, out))
      for mb in FLAGS.max_buckets:
        cache_modes = ["none"] + (["cold", "warm"] if FLAGS.cache else [])
        cache_dir = tempfile.mkdtemp(dir=tmp)
        for mode in cache_modes:
          env = dict(os.environ)
          if mode != "none":
            env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                       JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
          out = os.path.join(tmp, f"recjax{k}{solver}{mb}{mode}.npz")
          child = {**common, "bucket_growth": FLAGS.bucket_growth,
                   "max_buckets": None if mb == "all" else int(mb), "factors_out": out}
          rec = _launch([sys.executable, "-m", "benchmarks.bench_als_fit", "--child",
                         f"--child_args={json.dumps(child)}"], env)
          label = f"recjax buckets={mb}" + ("" if mode == "none" else f" cache {mode}")
          runs.append((label, rec, out))
      for label, rec, out in runs:
        rec.update(k=k, solver=solver, variant=label)
        if "error" not in rec:
          f = np.load(out)
          rec["objective"] = als.implicit_objective(f["U"], f["V"], m, a=FLAGS.alpha, b=1.0,
                                                    reg_x=FLAGS.reg, reg_y=FLAGS.reg,
                                                    chunk=1 << 18)
        records.append(rec)
        table.append(rec)
        if "error" in rec:
          print(f"K={k} {solver} {label}: FAILED {rec['error']}", flush=True)
          continue
        print(f"K={k} {solver} {label}: wall {rec['wall_s']:.2f}s (import {rec['import_s']:.2f}, "
              f"first iteration {rec['first_s']:.2f}, later {rec['later_s']:.3f}) peak "
              f"{rec['peak_gb']:.2f} GB (runtime {rec['runtime_gb']:.2f}), loss "
              f"{rec['objective']:.6g}, load {rec['loadavg_1m_before']:.1f}->"
              f"{rec['loadavg_1m_after']:.1f}", flush=True)
      harness.write_json(FLAGS.out, records, **extra)

  print()
  head = (f"{'K':>4} {'solver':8} {'variant':32} {'wall s':>7} {'1st it s':>8} {'it s':>6} "
          f"{'peak GB':>7} {'-runtime':>8} {'vs impl':>7} {'time':>4} {'mem':>4}")
  print(head)
  print("-" * len(head))
  verdicts = []
  for rec in table:
    if "error" in rec:
      print(f"{rec['k']:>4} {rec['solver']:8} {rec['variant']:32} FAILED")
      continue
    peer = next((r for r in table if r["variant"] == "implicit" and r["k"] == rec["k"]
                 and r["solver"] == rec["solver"] and "error" not in r), None)
    line = (f"{rec['k']:>4} {rec['solver']:8} {rec['variant']:32} {rec['wall_s']:7.2f} "
            f"{rec['first_s']:8.2f} {rec['later_s']:6.3f} {rec['peak_gb']:7.2f}")
    if rec["variant"] != "implicit" and peer is not None:
      beyond = rec["peak_gb"] - rec["runtime_gb"]
      t_ok, m_ok = rec["wall_s"] <= peer["wall_s"], beyond <= 2 * peer["peak_gb"]
      line += (f" {beyond:8.2f} {peer['wall_s'] / rec['wall_s']:6.2f}x {'PASS' if t_ok else 'FAIL':>4}"
               f" {'PASS' if m_ok else 'FAIL':>4}")
      verdicts.append({"k": rec["k"], "solver": rec["solver"], "variant": rec["variant"],
                       "time_ratio_implicit_over_recjax": peer["wall_s"] / rec["wall_s"],
                       "memory_beyond_runtime_gb": beyond, "time_pass": t_ok,
                       "memory_pass": m_ok})
    print(line)
  print("wall s: launch to factors written (a fresh process); it s: median of the later "
        "iterations; -runtime: peak minus the resident set of jax's runtime before any data; "
        "vs impl: implicit wall / recjax wall (>= 1: recjax as fast or faster); mem PASS: "
        "-runtime <= 2 x implicit's peak.")
  extra["verdicts"] = verdicts
  print(f"wrote {harness.write_json(FLAGS.out, records, **extra)}")


if __name__ == "__main__":
  app.run(main)
