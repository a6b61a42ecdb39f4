r"""EASE's closed form: the sparse Gram, the jitted solver and the in-place host solver.

  python -m benchmarks.bench_ease                       # ML-20M-sized synthetic (20,108 items)
  python -m benchmarks.bench_ease --n_items=4000 --n_users=30000 --nnz=1000000
  python -m benchmarks.bench_ease --peer_python=$(../shared/tools/peer-venvs.sh cornac | cut -d' ' -f2)

Each solver is timed on the same Gram matrix: the jitted one through the
harness (inputs on device, compile apart, warm-up, block_until_ready, median),
the host one as the median of fresh in-place runs.  FLOP rates count n³ for
the Cholesky inverse (n³/3 for potrf + 2n³/3 for potri) against the float32
matmul peak measured in the same run.  With --peer_python, cornac's EASE
(`cornac.models.EASE`, float64 numpy inverse) fits the same matrix in its own
virtual environment and the ratio is printed; its peak memory is read from
its process.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from benchmarks import harness
from recjax.data import synthetic
from recjax.ops import ease as ease_ops

FLAGS = flags.FLAGS
flags.DEFINE_integer("n_users", 136_677, "Users of the synthetic matrix.")
flags.DEFINE_integer("n_items", 20_108, "Items (the Gram matrix is items x items).")
flags.DEFINE_integer("nnz", 10_000_000, "Non-zeros of the synthetic matrix.")
flags.DEFINE_float("l2", 500.0, "EASE's λ.")
flags.DEFINE_list("solvers", ["host", "device"], "Which solvers to time.")
flags.DEFINE_integer("n_runs", 2, "Timed runs per solver.")
flags.DEFINE_string("peer_python", None, "A python with cornac installed, to run its EASE beside.")
flags.DEFINE_string("out", "benchmarks/results/bench_ease.json", "JSON output path.")

_PEER_SCRIPT = r"""
import resource, sys, time
import numpy as np, scipy.sparse as sp
import cornac
from cornac.data import Dataset
x = sp.load_npz(sys.argv[1]).tocoo()
triplets = list(zip(x.row.tolist(), x.col.tolist(), [1.0] * x.nnz))
data = Dataset.from_uir(triplets, seed=0)
model = cornac.models.EASE(lamb=float(sys.argv[2]), verbose=False)
t0 = time.perf_counter()
model.fit(data)
fit = time.perf_counter() - t0
print("PEER", cornac.__version__, fit, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def _peer(matrix: sp.csr_matrix, l2: float, python: str) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "x.npz")
    sp.save_npz(path, matrix)
    out = subprocess.run([python, "-c", _PEER_SCRIPT, path, str(l2)], capture_output=True,
                         text=True, check=False)
  line = [l for l in out.stdout.splitlines() if l.startswith("PEER ")]
  if out.returncode != 0 or not line:
    return {"error": out.stderr[-2000:]}
  _, version, fit, peak = line[-1].split()
  return {"library": f"cornac {version}", "fit_s": float(fit), "peak_gb": float(peak)}


def main(argv):
  del argv
  env = harness.environment()
  print(f"{env['device_kind']} x{env['n_devices']} ({env['platform']}), {env['cpu_count']} CPUs, jax {env['jax']}")
  peak = harness.matmul_peak_gflops()
  print(f"float32 matmul peak (measured now): {peak:.0f} GFLOP/s")
  t0 = time.perf_counter()
  if (FLAGS.n_users, FLAGS.n_items, FLAGS.nnz) == (136_677, 20_108, 10_000_000):
    matrix = synthetic.ml20m_like(seed=0)
  else:
    matrix = synthetic.synthetic_implicit(FLAGS.n_users, FLAGS.n_items, FLAGS.nnz, seed=0)
  print(f"synthetic {matrix.shape[0]} x {matrix.shape[1]}, nnz {matrix.nnz} "
        f"({time.perf_counter() - t0:.1f}s)")
  n = matrix.shape[1]
  flops = float(n) ** 3
  records = []
  t0 = time.perf_counter()
  gram = ease_ops.sparse_gram(matrix)
  gram_s = time.perf_counter() - t0
  records.append({"name": "sparse_gram (host)", "median_s": gram_s})
  print(f"sparse Gram on the host: {gram_s:.1f}s")

  rows = []
  if "device" in FLAGS.solvers:
    rec = harness.time_jitted(ease_ops.ease_weights, jnp.asarray(gram), jnp.float32(FLAGS.l2),
                              n_runs=FLAGS.n_runs, n_warmup=1, name="ease_weights (jit)")
    rec["gflops"] = flops / rec["median_s"] / 1e9
    records.append(rec)
    rows.append((rec["name"], rec["compile_s"], rec["median_s"], rec["gflops"]))
  if "host" in FLAGS.solvers:
    times = []
    for _ in range(FLAGS.n_runs):
      buf = gram.copy()
      t0 = time.perf_counter()
      ease_ops.ease_weights_host(buf, FLAGS.l2, overwrite=True)
      times.append(time.perf_counter() - t0)
      del buf
    med = statistics.median(times)
    records.append({"name": "ease_weights_host (LAPACK in place)", "median_s": med,
                    "runs_s": times, "gflops": flops / med / 1e9})
    rows.append(("ease_weights_host (in place)", 0.0, med, flops / med / 1e9))
  print(f"\n{'solver':36s} {'compile s':>9s} {'median s':>9s} {'GFLOP/s':>8s} {'% peak':>7s}")
  for name, comp, med, gf in rows:
    print(f"{name:36s} {comp:9.2f} {med:9.2f} {gf:8.0f} {100 * gf / peak:6.0f}%")
  own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f"peak host memory of this process: {own_peak:.1f} GB")
  extra = {"matmul_peak_gflops": peak, "shape": list(matrix.shape), "nnz": int(matrix.nnz),
           "l2": FLAGS.l2, "peak_host_memory_gb": own_peak}
  if FLAGS.peer_python:
    peer = _peer(matrix, FLAGS.l2, FLAGS.peer_python)
    extra["peer"] = peer
    if "error" in peer:
      print(f"peer failed: {peer['error']}")
    else:
      best = min(r[2] for r in rows) + gram_s
      print(f"\n{peer['library']} EASE fit: {peer['fit_s']:.1f}s, peak {peer['peak_gb']:.1f} GB; "
            f"recjax Gram + fastest solve: {best:.1f}s -> {peer['fit_s'] / best:.2f}x faster")
  path = harness.write_json(FLAGS.out, records, **extra)
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
