"""ALS solvers against explicitly built dense systems, and the drivers' sweep-level guarantees."""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from recjax.data.batching import Bucket, bucketed_rows
from recjax.ops import als, als_sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two padded lengths keep the number of compiled shapes (and the test time) small.
EDGES = (8, 64)


def _clicks(n_rows=40, n_cols=30, density=0.2, seed=0, empty_rows=(3,)):
  rng = np.random.default_rng(seed)
  dense = (rng.random((n_rows, n_cols)) < density).astype(np.float32)
  dense *= rng.integers(1, 6, size=dense.shape).astype(np.float32)
  dense[list(empty_rows)] = 0.0
  return sp.csr_matrix(dense)


def _factors(n, k, seed, scale=0.3):
  return (scale * np.random.default_rng(seed).standard_normal((n, k))).astype(np.float32)


def _dense_implicit_row(y, observed, a, b, reg, prior_row):
  """(Yᵀ C_i Y + λI)⁻¹ (Yᵀ C_i p_i + λ m_i) built from the full n_cols confidence vector."""
  y = y.astype(np.float64)
  p = observed.astype(np.float64)
  c = np.where(observed, a, b)
  lhs = y.T @ (c[:, None] * y) + reg * np.eye(y.shape[1])
  rhs = y.T @ (c * p) + reg * prior_row
  return scipy.linalg.solve(lhs, rhs, assume_a="pos")


def _dense_objective(x, y, matrix, a, b, reg_x, reg_y, prior_x, prior_y):
  x, y = x.astype(np.float64), y.astype(np.float64)
  p = (matrix.toarray() != 0).astype(np.float64)
  c = np.where(p > 0, a, b)
  loss = np.sum(c * (p - x @ y.T) ** 2)
  return loss + reg_x * np.sum((x - prior_x) ** 2) + reg_y * np.sum((y - prior_y) ** 2)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("with_prior", [False, True])
def test_solve_bucket_matches_dense_scipy_solve(solver, with_prior):
  k, a, b, reg = 12, 8.0, 0.5, 0.7  # Buckets of padded length 8 < K and 16 >= K.
  m = _clicks()
  y = _factors(m.shape[1], k, seed=1)
  prior = _factors(m.shape[0], k, seed=2, scale=1.0) if with_prior else np.zeros((m.shape[0], k))
  gram = als.implicit_gram(y, b)
  solve = jax.jit(als.solve_bucket, static_argnames=("solver", "cg_steps", "block_rows"))
  buckets = bucketed_rows(m)
  # The forms a half sweep runs: rows shorter than K through the Woodbury inverse, and
  # rows solved one block at a time under lax.map.
  assert any(bk.length < k for bk in buckets) and any(bk.length >= k for bk in buckets)
  forms = ({}, {"inverse": als.shared_inverse(y, gram, reg)}, {"block_rows": 1})
  for bucket, form in ((bk, f) for bk in buckets for f in forms):
    got = np.asarray(solve(y, gram, bucket.cols, bucket.mask, a=a, b=b, reg=reg,
                           prior=prior[bucket.rows].astype(np.float32) if with_prior else None,
                           solver=solver, cg_steps=3 * k, **form))
    for r, row in enumerate(bucket.rows):
      observed = m[row].toarray()[0] != 0
      want = _dense_implicit_row(y, observed, a, b, reg, prior[row])
      np.testing.assert_allclose(got[r], want, rtol=2e-4, atol=2e-5, err_msg=str(form))


def test_weighted_lambda_bucket_matches_dense_scipy_solve():
  k, reg = 4, 0.3
  m = _clicks(seed=5)
  y = _factors(m.shape[1], k, seed=6)
  dense = m.toarray().astype(np.float64)
  for bucket in bucketed_rows(m):
    got = np.asarray(jax.jit(als.weighted_lambda_bucket)(y, bucket.cols, bucket.vals, bucket.mask,
                                                         reg=reg))
    for r, row in enumerate(bucket.rows):
      obs = np.flatnonzero(dense[row])
      if len(obs) == 0:
        np.testing.assert_array_equal(got[r], 0.0)
        continue
      yo = y[obs].astype(np.float64)
      want = scipy.linalg.solve(yo.T @ yo + reg * len(obs) * np.eye(k), yo.T @ dense[row, obs])
      np.testing.assert_allclose(got[r], want, rtol=2e-4, atol=2e-5)


def test_weighted_lambda_half_sweep_lowers_its_objective():
  k, reg = 4, 0.1
  m = _clicks(seed=7, empty_rows=())
  dense = m.toarray().astype(np.float64)
  obs = dense != 0

  def objective(u, v):
    err = np.where(obs, dense - u.astype(np.float64) @ v.astype(np.float64).T, 0.0)
    return (np.sum(err ** 2) + reg * (np.sum(obs.sum(1) * np.sum(u.astype(np.float64) ** 2, 1))
                                     + np.sum(obs.sum(0) * np.sum(v.astype(np.float64) ** 2, 1))))

  u, v = _factors(m.shape[0], k, 8), _factors(m.shape[1], k, 9)
  bu, bi = bucketed_rows(m, EDGES), bucketed_rows(m.T.tocsr(), EDGES)
  losses = [objective(u, v)]
  for _ in range(4):
    u = np.asarray(als.weighted_lambda_half_sweep(u, v, bu, reg=reg))
    v = np.asarray(als.weighted_lambda_half_sweep(v, u, bi, reg=reg))
    losses.append(objective(u, v))
  assert all(l1 <= l0 * (1 + 1e-6) for l0, l1 in zip(losses, losses[1:])), losses


def test_implicit_objective_matches_brute_force():
  k, a, b = 6, 10.0, 0.3
  m = _clicks(n_rows=25, n_cols=35, seed=3)
  x, y = _factors(25, k, 10), _factors(35, k, 11)
  px, py = _factors(25, k, 12), _factors(35, k, 13)
  for prior_x, prior_y in [(None, None), (px, py)]:
    got = als.implicit_objective(x, y, m, a=a, b=b, reg_x=0.4, reg_y=1.7, prior_x=prior_x,
                                 prior_y=prior_y, chunk=17)
    want = _dense_objective(x, y, m, a, b, 0.4, 1.7, 0.0 if prior_x is None else px,
                            0.0 if prior_y is None else py)
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("solver,cg_steps", [("cholesky", 3), ("cg", 3), ("cg", 1)])
def test_implicit_objective_never_rises_over_sweeps(solver, cg_steps):
  k, a, b, reg_x, reg_y = 8, 20.0, 1.0, 0.5, 2.0
  m = _clicks(n_rows=60, n_cols=45, density=0.15, seed=4)
  u, v = _factors(60, k, 20), _factors(45, k, 21)
  prior_v = _factors(45, k, 22)
  bu, bi = bucketed_rows(m, EDGES), bucketed_rows(m.T.tocsr(), EDGES, rows_per_batch=8)
  kw = dict(a=a, b=b, reg_x=reg_x, reg_y=reg_y, prior_y=prior_v)
  losses = [als.implicit_objective(u, v, m, **kw)]
  for _ in range(5):
    u = als.half_sweep(u, v, bu, a=a, b=b, reg=reg_x, solver=solver, cg_steps=cg_steps)
    losses.append(als.implicit_objective(u, v, m, **kw))
    v = als.half_sweep(v, u, bi, a=a, b=b, reg=reg_y, prior=prior_v, solver=solver,
                       cg_steps=cg_steps, rows_per_call=8)
    losses.append(als.implicit_objective(u, v, m, **kw))
  assert all(l1 <= l0 + 1e-6 * abs(l0) for l0, l1 in zip(losses, losses[1:])), losses
  assert losses[-1] < 0.5 * losses[0]


def test_cg_error_shrinks_with_steps():
  k, a, b, reg = 8, 10.0, 1.0, 1.0
  m = _clicks(n_rows=30, n_cols=50, density=0.3, seed=14, empty_rows=())
  y = _factors(50, k, 15, scale=0.5)
  gram = als.implicit_gram(y, b)
  bucket = bucketed_rows(m)[-1]
  x0 = _factors(bucket.n_rows, k, 16)
  exact = np.asarray(als.solve_bucket(y, gram, bucket.cols, bucket.mask, a=a, b=b, reg=reg))
  errors = []
  for steps in (1, 2, 4, 8):
    got = als.solve_bucket(y, gram, bucket.cols, bucket.mask, a=a, b=b, reg=reg, x0=x0,
                           solver="cg", cg_steps=steps)
    errors.append(np.linalg.norm(np.asarray(got) - exact, axis=1))
  for fewer, more in zip(errors, errors[1:]):
    assert np.all(more <= fewer + 1e-6), (fewer, more)
  assert np.max(errors[-1] / np.linalg.norm(exact, axis=1)) < 1e-4, errors[-1]


def test_prior_term_pulls_rows_toward_prior():
  k, a, b = 5, 5.0, 1.0
  m = _clicks(seed=17)
  y = _factors(m.shape[1], k, 18)
  prior = _factors(m.shape[0], k, 19, scale=2.0)
  buckets = bucketed_rows(m)
  x0 = np.zeros_like(prior)
  distances = []
  for reg in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
    x = np.asarray(als.half_sweep(x0, y, buckets, a=a, b=b, reg=reg, prior=prior))
    distances.append(np.linalg.norm(x - prior, axis=1))
  for looser, tighter in zip(distances, distances[1:]):
    assert np.all(tighter < looser), (looser, tighter)
  assert np.max(distances[-1]) < 0.05 * np.max(distances[0])


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_padding_rows_never_change_x(solver):
  k = 4
  m = _clicks(seed=23)
  n = m.shape[0]
  y = _factors(m.shape[1], k, 24)
  x = _factors(n, k, 25)
  kw = dict(a=4.0, b=1.0, reg=0.5, solver=solver)
  plain = np.asarray(als.half_sweep(x, y, bucketed_rows(m, EDGES), **kw))
  padded = np.asarray(als.half_sweep(x, y, bucketed_rows(m, EDGES, rows_per_batch=7),
                                     rows_per_call=7, **kw))
  np.testing.assert_allclose(padded, plain, rtol=1e-6, atol=1e-7)
  # Drop the last and the first row from the buckets (as padding): they must keep their values.
  dropped = []
  for bk in bucketed_rows(m, EDGES, rows_per_batch=7):
    keep = (bk.rows != n - 1) & (bk.rows != 0)
    dropped.append(Bucket(rows=np.where(keep, bk.rows, -1),
                          cols=np.where(keep[:, None], bk.cols, 0),
                          vals=np.where(keep[:, None], bk.vals, 0.0),
                          mask=keep[:, None] & bk.mask))
  out = np.asarray(als.half_sweep(x, y, dropped, rows_per_call=7, **kw))
  np.testing.assert_array_equal(out[[0, n - 1]], x[[0, n - 1]])
  np.testing.assert_allclose(out[1:n - 1], plain[1:n - 1], rtol=1e-6, atol=1e-7)
  assert isinstance(x, np.ndarray) and np.all(np.isfinite(x))  # the input itself was not donated


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_fold_in_equals_the_row_of_a_half_sweep(solver):
  k, a, b, reg = 6, 6.0, 0.8, 0.4
  m = _clicks(n_rows=30, n_cols=40, seed=26)
  y = _factors(40, k, 27)
  new_rows = _clicks(n_rows=5, n_cols=40, seed=28, empty_rows=(2,))
  full = sp.vstack([m, new_rows]).tocsr()
  x = np.zeros((full.shape[0], k), np.float32)
  swept = np.asarray(als.half_sweep(x, y, bucketed_rows(full, EDGES), a=a, b=b, reg=reg,
                                    solver=solver, cg_steps=k))
  folded = np.asarray(als.fold_in(y, new_rows, a=a, b=b, reg=reg, solver=solver))
  np.testing.assert_allclose(folded, swept[30:], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(folded[2], 0.0)


def test_compile_count_bounded_by_bucket_shapes():
  k = 4
  m = _clicks(n_rows=80, n_cols=60, density=0.12, seed=29)
  y = _factors(60, k, 30)
  x = _factors(80, k, 31)
  buckets = bucketed_rows(m)
  rows_per_call = 8
  shapes = {(bk.length, rows_per_call) for bk in buckets}
  assert len(shapes) >= 2 and any(bk.n_rows > rows_per_call for bk in buckets)
  for solver in ("cholesky", "cg"):
    before = als.TRACE_COUNTS["implicit_chunk"]
    for reg in (0.1, 0.2, 0.3):
      x = als.half_sweep(x, y, buckets, a=3.0, b=1.0, reg=reg, solver=solver,
                         rows_per_call=rows_per_call)
    assert als.TRACE_COUNTS["implicit_chunk"] - before <= len(shapes)
  before = als.TRACE_COUNTS["weighted_lambda_chunk"]
  for reg in (0.1, 0.2):
    x = als.weighted_lambda_half_sweep(x, y, buckets, reg=reg, rows_per_call=rows_per_call)
  assert als.TRACE_COUNTS["weighted_lambda_chunk"] - before <= len(shapes)


def test_each_jitted_chunk_factors_one_system_per_lapack_call():
  """The deadlock guard's structural half: one lax.map of single-system factorizations per
  compiled chunk, no LAPACK call with a batch dimension (tests/test_als_devices.py: whole runs)."""
  k, r, length, n = 8, 64, 5, 50
  x, y = np.zeros((r, k), np.float32), _factors(n, k, 32)
  rows, cols = np.arange(r), np.zeros((r, length), np.int32)
  mask, vals = np.ones((r, length), bool), np.ones((r, length), np.float32)
  gram = np.eye(k, dtype=np.float32)
  potrf = re.compile(r'custom_call_target="[^"]*potrf')
  batch_dims = re.compile(r'custom_call_target="lapack_\w+"[^\n]*?num_batch_dims="(\d+)"')
  # The exact solver: one lax.map over the systems, SYSTEMS_PER_STEP single-matrix calls a step.
  for solver, expected in (("cholesky", als.SYSTEMS_PER_STEP), ("cg", 0)):
    for prior in (None, x):
      for block_rows in (r, 8):  # One block, and 8 blocks under lax.map.
        for conf in (1.0, 2.0 * vals):  # The scalar a, and per-entry confidences ("linear"/"log").
          # L = 5 < K = 8: the exact solver takes the Woodbury path, whose shared part
          # is the pair (M⁻¹, Y M⁻¹) (computed by its own, separate call).
          shared = {"gram": gram}
          if solver == "cholesky":
            shared["inverse"] = (gram, y @ gram)
          hlo = als_sweep._implicit_chunk.lower(x, y, shared, prior, rows, cols, mask, conf, 1.0,
                                                1.0, solver=solver, cg_steps=3,
                                                block_rows=block_rows).compile().as_text()
          assert len(potrf.findall(hlo)) == expected, (solver, prior is None, block_rows,
                                                       np.ndim(conf))
          assert set(batch_dims.findall(hlo)) <= {"0"}, (solver, block_rows)
  hlo = als_sweep._weighted_lambda_chunk.lower(x, y, rows, cols, vals, mask,
                                               1.0).compile().as_text()
  assert len(potrf.findall(hlo)) == als.SYSTEMS_PER_STEP
  assert set(batch_dims.findall(hlo)) == {"0"}


def _run_script(script: str, timeout: float, extra_env=None) -> str:
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", **(extra_env or {}))
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout


def test_exact_half_sweep_does_not_deadlock():
  """≥64-row buckets at K=64, exact solver: times out (fails) if the jaxlib deadlock returns."""
  out = _run_script("""
    import numpy as np, scipy.sparse as sp
    from recjax.data.batching import bucketed_rows
    from recjax.ops import als
    rng = np.random.default_rng(0)
    n_users, n_items, k = 512, 400, 64
    lengths = rng.choice([6, 12, 24, 48], size=n_users)
    rows = np.repeat(np.arange(n_users), lengths)
    cols = np.concatenate([rng.choice(n_items, n, replace=False) for n in lengths])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    buckets = bucketed_rows(m)
    assert len(buckets) >= 3 and min(b.n_rows for b in buckets) >= 64, [b.n_rows for b in buckets]
    u = (0.1 * rng.standard_normal((n_users, k))).astype(np.float32)
    v = (0.1 * rng.standard_normal((n_items, k))).astype(np.float32)
    item_buckets = bucketed_rows(m.T.tocsr())
    for _ in range(2):
      u = als.half_sweep(u, v, buckets, a=10.0, b=1.0, reg=0.1)
      v = als.half_sweep(v, u, item_buckets, a=10.0, b=1.0, reg=0.1)
      u = als.weighted_lambda_half_sweep(u, v, buckets, reg=0.1)
    assert np.all(np.isfinite(np.asarray(u))) and np.all(np.isfinite(np.asarray(v)))
    print("done")
  """, timeout=120)
  assert "done" in out


def test_one_and_four_devices_give_the_same_factors():
  out = _run_script("""
    import numpy as np, scipy.sparse as sp, jax
    from recjax.data.batching import bucketed_rows
    from recjax.ops import als, als_sweep
    from recjax.train.sharding import make_mesh
    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    dense = (rng.random((70, 45)) < 0.15) * rng.integers(1, 5, (70, 45))
    dense[5] = 0
    m = sp.csr_matrix(dense.astype(np.float32))
    k = 10  # > the short bucket's length 8: its exact solves take the Woodbury path.
    u0 = (0.3 * rng.standard_normal((70, k))).astype(np.float32)
    v0 = (0.3 * rng.standard_normal((45, k))).astype(np.float32)
    prior_v = (0.3 * rng.standard_normal((45, k))).astype(np.float32)
    bu, bi = bucketed_rows(m, (8, 64)), bucketed_rows(m.T.tocsr(), (8, 64))
    results = {}
    for n in (1, 4):
      mesh = make_mesh(n)
      # cache_bytes = 4·64·K·3 cuts each device's rows into blocks of 3 (lax.map).
      for solver, rows_per_call, cache in (("cholesky", None, None), ("cholesky", 6, None),
                                           ("cg", 6, None), ("cg", None, 4 * 64 * k * 3),
                                           ("cholesky", None, 4 * 64 * k * 3)):
        u, v = u0, v0
        for _ in range(2):
          u = als.half_sweep(u, v, bu, a=5.0, b=0.5, reg=0.3, solver=solver,
                             rows_per_call=rows_per_call, mesh=mesh, cache_bytes=cache)
          v = als.half_sweep(v, u, bi, a=5.0, b=0.5, reg=0.3, prior=prior_v, solver=solver,
                             rows_per_call=rows_per_call, mesh=mesh, cache_bytes=cache)
        results[n, solver, rows_per_call, cache] = np.asarray(u), np.asarray(v)
      w = als.weighted_lambda_half_sweep(u0, v0, bu, reg=0.2, rows_per_call=6, mesh=mesh)
      results[n, "wl"] = (np.asarray(w),)
      results[n, "gram"] = (np.asarray(als_sweep._gram(v0, 0.5, mesh)),)
    for key in results:
      if key[0] == 1:
        for one, four in zip(results[key], results[(4,) + key[1:]]):
          np.testing.assert_allclose(four, one, rtol=1e-4, atol=1e-5, err_msg=str(key))
    np.testing.assert_allclose(results[1, "gram"][0], 0.5 * v0.T @ v0, rtol=1e-5, atol=1e-6)
    print("same", len(results))
  """, timeout=180, extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert "same" in out


def test_byte_budget_and_extra_gram_give_the_dense_solution():
  # A tiny budget forces many small chunks per bucket; an extra Gram term (collective
  # MF's μ ZᵀZ) must enter every row's system exactly.
  k, a, b, reg = 4, 6.0, 1.0, 0.4
  m = _clicks(n_rows=30, n_cols=20)
  y = _factors(m.shape[1], k, seed=5)
  extra = np.diag(np.arange(1.0, k + 1.0)).astype(np.float32)
  assert als.chunk_rows(8, k, 16 * (8 * k + k * k)) == 4
  x = als.half_sweep(np.zeros((30, k), np.float32), y, bucketed_rows(m, bucket_edges=EDGES),
                     a=a, b=b, reg=reg, max_bytes_per_call=4 * 3 * (64 * k + k * k),
                     extra_gram=extra)
  # Cache blocks of 2 rows (lax.map over blocks) inside one call per bucket: same solution.
  x_blocked = als.half_sweep(np.zeros((30, k), np.float32), y,
                             bucketed_rows(m, bucket_edges=EDGES), a=a, b=b, reg=reg,
                             extra_gram=extra, cache_bytes=4 * 2 * 64 * k)
  np.testing.assert_allclose(np.asarray(x_blocked), np.asarray(x), rtol=1e-5, atol=1e-6)
  for row in range(30):
    observed = m[row].toarray()[0] != 0
    c = np.where(observed, a, b)
    lhs = y.T.astype(np.float64) @ (c[:, None] * y) + extra + reg * np.eye(k)
    want = scipy.linalg.solve(lhs, y.T @ (c * observed), assume_a="pos")
    np.testing.assert_allclose(np.asarray(x)[row], want, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("with_prior", [False, True])
def test_short_rows_solved_through_woodbury_match_scipy(with_prior):
  # K = 16 > the padded length 8 of the short bucket: those rows take the [L, L]
  # capacitance (Woodbury) path; the rows of the 64 bucket take the [K, K] path.
  k, a, b, reg = 16, 20.0, 1.0, 0.3
  m = _clicks(n_rows=40, n_cols=30)
  y = _factors(m.shape[1], k, seed=7)
  buckets = bucketed_rows(m, bucket_edges=EDGES)
  assert any(bk.length < k for bk in buckets) and any(bk.length >= k for bk in buckets)
  prior = _factors(40, k, seed=8) if with_prior else None
  x = als.half_sweep(np.zeros((40, k), np.float32), y, buckets, a=a, b=b, reg=reg, prior=prior)
  for row in range(40):
    observed = m[row].toarray()[0] != 0
    c = np.where(observed, a, b)
    lhs = y.T.astype(np.float64) @ (c[:, None] * y) + reg * np.eye(k)
    rhs = y.T @ (c * observed) + (0 if prior is None else reg * prior[row])
    want = scipy.linalg.solve(lhs, rhs, assume_a="pos")
    np.testing.assert_allclose(np.asarray(x)[row], want, rtol=5e-4, atol=5e-5, err_msg=str(row))


@pytest.mark.parametrize("confidence", ["constant", "linear"])
@pytest.mark.parametrize("width", [4, 16])  # Narrower than K = 8 (Woodbury) and not.
def test_fold_in_padded_equals_the_dense_fold_in(confidence, width):
  """Serving's fold-in from padded item lists, with and without the shared constants."""
  rng = np.random.default_rng(3)
  n, k = 30, 8
  y = jnp.asarray(rng.normal(size=(n, k)).astype(np.float32))
  dense = np.zeros((5, n), np.float32)
  items = np.zeros((5, width), np.int32)
  values = np.zeros((5, width), np.float32)
  mask = np.zeros((5, width), bool)
  for r, length in enumerate([0, 1, 3, width - 1, width]):
    cols = rng.choice(n, length, replace=False)
    dense[r, cols] = rng.integers(1, 9, length)
    items[r, :length], values[r, :length], mask[r, :length] = cols, dense[r, cols], True
  kw = dict(a=5.0, b=1.0, reg=0.1, confidence=confidence, alpha=2.0)
  want = np.asarray(als.fold_in_dense(y, jnp.asarray(dense), **kw))
  constants = als.fold_in_constants(y, 1.0, 0.1)
  for c in (None, constants):
    got = jax.jit(lambda i, v, m: als.fold_in_padded(y, i, v, m, constants=c, **kw))(
        items, values, mask)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-5)


def test_fewest_slot_edges_is_the_brute_force_optimum_and_solves_the_same():
  """`max_buckets` keeps the subset of lengths that pads least (checked against every subset),
  and a sweep over those fewer buckets gives the factors of the full bucketing."""
  import itertools  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(3)
  slots = lambda lengths, e: float(np.sum(np.asarray(e)[np.searchsorted(e, lengths)] - lengths))
  for _ in range(40):
    lengths = rng.integers(0, rng.integers(2, 200), rng.integers(1, 80))
    edges = als_sweep.default_bucket_edges(max(int(lengths.max()), 1), growth=1.5)
    for n in range(1, 5):
      got = als_sweep.fewest_slot_edges(lengths, edges, n)
      best = min(slots(lengths, [*c, edges[-1]]) for r in range(min(n, len(edges)))
                 for c in itertools.combinations(edges[:-1], r))
      assert len(got) <= n and got[-1] == edges[-1] and set(got) <= set(edges)
      assert slots(lengths, got) == best, (lengths, edges, n, got)
  m = _clicks(n_rows=90, n_cols=70, density=0.15, seed=5)
  full, few = als.bucketed_sides(m, 1.25), als.bucketed_sides(m, 1.25, max_buckets=2)
  assert len(few["users"]) == 2 < len(full["users"])
  x, y = _factors(90, 6, 6), _factors(70, 6, 7)
  for solver in ("cholesky", "cg"):
    a, b = (als.half_sweep(x, y, s["users"], a=4.0, b=1.0, reg=0.1, solver=solver)
            for s in (full, few))
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
