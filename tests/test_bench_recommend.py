"""benchmarks/bench_recommend.py at a tiny size: it runs, and its sparse prototype agrees with recjax."""

import json
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

from conftest import REPO

from benchmarks.bench_recommend import length_buckets, padded_rows, seen_pairs


def test_length_buckets_cover_every_row_once():
  m = sp.random(37, 50, density=0.2, format="csr", random_state=1)
  m = sp.csr_matrix(sp.diags((np.arange(37) != 3).astype(float)) @ m)  # row 3 empty
  m.eliminate_zeros()
  assert m[3].nnz == 0
  seen = []
  for ids, cols, mask in length_buckets(m):
    n_rows, length = cols.shape
    assert n_rows == padded_rows(len(ids)) and length & (length - 1) == 0
    assert not mask[len(ids):].any()
    for r, i in enumerate(ids):
      assert sorted(cols[r][mask[r]].tolist()) == sorted(m[i].indices.tolist())
    seen += ids.tolist()
  assert sorted(seen) == list(range(37))
  r, c = seen_pairs(m, 40)
  assert (r == 40).sum() == len(r) - m.nnz
  assert sp.csr_matrix((np.ones(m.nnz), (r[:m.nnz], c[:m.nnz])), shape=m.shape).nnz == m.nnz


def test_padded_rows():
  for n in range(1, 3000):
    p = padded_rows(n)
    assert n <= p <= max(n + 7, 1.25 * n)
  assert len({padded_rows(n) for n in range(513, 1025)}) == 4


def test_bench_recommend_tiny(tmp_path):
  out = tmp_path / "bench.json"
  args = ["--n_users=400", "--n_items=300", "--nnz=4000", "--factors=8", "--k=20",
          "--n_batch_users=64", "--batch_size=32", "--all_batch_size=64", "--n_all_users=128",
          "--n_single=5", "--single_budget_s=1", "--n_repeats=1", "--n_check=8", "--nobreakdown",
          f"--out={out}", f"--workdir={tmp_path / 'work'}"]
  proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_recommend", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  names = {r["name"] for r in result["records"]}
  assert "recjax recommend WMF (batch)" in names and "recjax recommend EASE (batch)" in names
  checks = result["checks"]
  assert checks["wmf"]["prototype_factor_max_rel_diff"] < 1e-4
  assert checks["wmf"]["prototype_vs_recjax_overlap"]["min"] == 1.0
  assert checks["ease"]["prototype_vs_recjax_overlap"]["min"] == 1.0
