"""Confidence from interaction counts (Hu, Koren & Volinsky 2008, Eqs. 1 and 6) against brute force.

Every solver branch (Cholesky on [K, K] systems, Cholesky through the [L, L]
Woodbury capacitance system, conjugate gradient) and both fold-ins are checked
against dense numpy solves with the full confidence matrix C_u.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data.batching import bucketed_rows
from recjax.models import cmf, wmf
from recjax.ops import als

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# K = 12 between the two padded lengths: rows of the 8 bucket take the Woodbury path,
# rows of the 32 bucket the [K, K] path.
EDGES = (8, 32)
K = 12
A, B, ALPHA, EPS = 6.0, 0.5, 3.0, 0.5


def _counts(n_rows=36, n_cols=28, density=0.25, seed=0, empty_rows=(4,)):
  """A count matrix: geometric play counts on a random support, one empty row."""
  rng = np.random.default_rng(seed)
  dense = (rng.random((n_rows, n_cols)) < density) * rng.geometric(0.35, (n_rows, n_cols))
  dense[list(empty_rows)] = 0
  return sp.csr_matrix(dense.astype(np.float32))


def _factors(n, k, seed, scale=0.4):
  return (scale * np.random.default_rng(seed).standard_normal((n, k))).astype(np.float32)


def _dense_confidence(r, confidence, a=A, b=B, alpha=ALPHA, eps=EPS):
  """The full C matrix: b + α r or b + α log(1 + r/ε) (a for "constant") where r > 0, b elsewhere."""
  r = np.asarray(r, np.float64)
  on = {"constant": np.full_like(r, a), "linear": b + alpha * r,
        "log": b + alpha * np.log1p(np.maximum(r, 0) / eps)}[confidence]
  return np.where(r > 0, on, b)


def _brute_row(y, r_row, confidence, reg, prior_row=None, **kw):
  """(Yᵀ C_u Y + λI)⁻¹ (Yᵀ C_u p_u + λ m_u) from the dense C_u (np.linalg.solve, float64)."""
  y = y.astype(np.float64)
  c = _dense_confidence(r_row, confidence, **kw)
  p = (np.asarray(r_row) > 0).astype(np.float64)
  lhs = y.T @ (c[:, None] * y) + reg * np.eye(y.shape[1])
  rhs = y.T @ (c * p) + (0.0 if prior_row is None else reg * prior_row)
  return np.linalg.solve(lhs, rhs)


def _dense_objective(u, v, r, confidence, reg_u, reg_v, **kw):
  u, v = u.astype(np.float64), v.astype(np.float64)
  c = _dense_confidence(r, confidence, **kw)
  p = (r > 0).astype(np.float64)
  return float(np.sum(c * (p - u @ v.T) ** 2) + reg_u * np.sum(u * u) + reg_v * np.sum(v * v))


CONF = dict(a=A, b=B, alpha=ALPHA, epsilon=EPS)


@pytest.mark.parametrize("confidence", ["linear", "log"])
@pytest.mark.parametrize("solver,cache", [("cholesky", None), ("cholesky", 4 * 32 * K * 3),
                                          ("cg", None)])
@pytest.mark.parametrize("with_prior", [False, True])
def test_half_sweep_rows_match_brute_force(confidence, solver, cache, with_prior):
  m = _counts()
  r = m.toarray()
  y = _factors(m.shape[1], K, 1)
  buckets = bucketed_rows(m, EDGES)
  assert any(bk.length < K for bk in buckets) and any(bk.length >= K for bk in buckets)
  prior = _factors(m.shape[0], K, 2, scale=1.0) if with_prior else None
  reg = 0.7
  x = np.asarray(als.half_sweep(np.zeros((m.shape[0], K), np.float32), y, buckets, reg=reg,
                                prior=prior, solver=solver, cg_steps=4 * K, cache_bytes=cache,
                                confidence=confidence, **CONF))
  for row in range(m.shape[0]):
    want = _brute_row(y, r[row], confidence, reg, None if prior is None else prior[row])
    np.testing.assert_allclose(x[row], want, rtol=5e-4, atol=5e-5, err_msg=str(row))


@pytest.mark.parametrize("confidence", ["linear", "log"])
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_solve_bucket_with_per_entry_confidence(confidence, solver):
  m = _counts(seed=3)
  r = m.toarray()
  y = _factors(m.shape[1], K, 4)
  gram = als.implicit_gram(y, B)
  for bucket in bucketed_rows(m, EDGES):
    c = als.confidence_of(bucket.vals, a=A, b=B, confidence=confidence, alpha=ALPHA, epsilon=EPS)
    got = np.asarray(als.solve_bucket(y, gram, bucket.cols, bucket.mask, a=c, b=B, reg=0.3,
                                      solver=solver, cg_steps=4 * K))
    for i, row in enumerate(bucket.rows):
      np.testing.assert_allclose(got[i], _brute_row(y, r[row], confidence, 0.3),
                                 rtol=5e-4, atol=5e-5)


@pytest.mark.parametrize("confidence", ["constant", "linear", "log"])
def test_fold_ins_match_brute_force(confidence):
  m = _counts(n_rows=7, n_cols=40, seed=5, empty_rows=(2,))
  r = m.toarray()
  y = _factors(40, K, 6)
  reg = 0.4
  dense = jax.jit(lambda y, x: als.fold_in_dense(y, x, reg=reg, item_chunk=16,
                                                 confidence=confidence, **CONF))
  # Negative dense entries are not observed (as zeros are).
  inputs = np.where(r > 0, r, -np.random.default_rng(0).random(r.shape)).astype(np.float32)
  got_dense = np.asarray(dense(jnp.asarray(y), jnp.asarray(inputs)))
  got_csr = np.asarray(als.fold_in(y, m, reg=reg, confidence=confidence, **CONF))
  for row in range(7):
    want = _brute_row(y, r[row], confidence, reg)
    np.testing.assert_allclose(got_dense[row], want, rtol=5e-4, atol=5e-5)
    np.testing.assert_allclose(got_csr[row], want, rtol=5e-4, atol=5e-5)
  np.testing.assert_array_equal(got_csr[2], 0.0)


@pytest.mark.parametrize("confidence", ["linear", "log"])
def test_implicit_objective_with_confidence_matches_dense(confidence):
  m = _counts(seed=7)
  u, v = _factors(m.shape[0], K, 8), _factors(m.shape[1], K, 9)
  got = als.implicit_objective(u, v, m, reg_x=0.3, reg_y=0.9, chunk=13, confidence=confidence,
                               **CONF)
  want = _dense_objective(u, v, m.toarray(), confidence, 0.3, 0.9)
  np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("confidence", ["linear", "log"])
@pytest.mark.parametrize("solver,cg_steps", [("cholesky", 3), ("cg", 2)])
def test_weighted_objective_never_rises_between_sweeps(confidence, solver, cg_steps):
  m = _counts(n_rows=40, n_cols=30, seed=10, empty_rows=())
  r = m.toarray()
  reg_u, reg_v = 0.5, 1.5
  u, v = _factors(40, K, 11), _factors(30, K, 12)
  bu, bi = bucketed_rows(m, EDGES), bucketed_rows(m.T.tocsr(), EDGES)
  kw = dict(solver=solver, cg_steps=cg_steps, confidence=confidence, **CONF)
  losses = [_dense_objective(u, v, r, confidence, reg_u, reg_v)]
  for _ in range(4):
    u = np.asarray(als.half_sweep(u, v, bu, reg=reg_u, **kw))
    losses.append(_dense_objective(u, v, r, confidence, reg_u, reg_v))
    v = np.asarray(als.half_sweep(v, u, bi, reg=reg_v, **kw))
    losses.append(_dense_objective(u, v, r, confidence, reg_u, reg_v))
  assert all(l1 <= l0 * (1 + 1e-6) for l0, l1 in zip(losses, losses[1:])), losses
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_linear_on_unit_values_equals_constant(solver):
  # With every stored value 1, b + α·1 = a when α = a − b.
  m = _counts(seed=13)
  m.data[:] = 1.0
  y = _factors(m.shape[1], K, 14)
  x0 = _factors(m.shape[0], K, 15)
  buckets = bucketed_rows(m, EDGES)
  kw = dict(b=B, reg=0.3, solver=solver, cg_steps=5)
  const = np.asarray(als.half_sweep(x0, y, buckets, a=A, **kw))
  linear = np.asarray(als.half_sweep(x0, y, buckets, a=123.0, confidence="linear",
                                     alpha=A - B, **kw))
  # Truncated CG amplifies the rounding of c − b against a − b a little.
  tol = dict(rtol=1e-5, atol=1e-6) if solver == "cholesky" else dict(rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(linear, const, **tol)
  inputs = jnp.asarray(m.toarray())
  fd = lambda **c: np.asarray(als.fold_in_dense(jnp.asarray(y), inputs, b=B, reg=0.3, **c))
  np.testing.assert_allclose(fd(a=123.0, confidence="linear", alpha=A - B), fd(a=A),
                             rtol=1e-5, atol=1e-6)


def test_wmf_and_cmf_with_linear_on_clicks_equal_constant():
  m = _counts(seed=16)
  m.data[:] = 1.0
  content = sp.random(m.shape[1], 15, density=0.3, format="csr", random_state=0)
  inputs = jnp.asarray(m.toarray()[:6])
  for mod, extra, sides in ((wmf, {}, (m,)), (cmf, {"b": 0.01}, (m, content))):
    a = 7.0
    out = []
    for conf in ({"a": a}, {"a": 99.0, "confidence": "linear", "alpha": a - extra.get("b", 1.0)}):
      model = mod.make(mod.Config(dim=K, bucket_growth=4.0, **extra, **conf))  # Few shapes.
      params, f = model.init(jax.random.PRNGKey(0), m)
      aux = model.prepare(*sides)
      for _ in range(2):
        f = model.block_step(params, f, aux, None)
      out.append((np.asarray(f["V"]), np.asarray(model.score(params, f, inputs))))
      np.testing.assert_array_equal(np.asarray(model.item_vectors(params, f)), np.asarray(f["V"]))
    for const, linear in zip(*out):
      np.testing.assert_allclose(linear, const, rtol=2e-4, atol=2e-5, err_msg=mod.__name__)


def test_wmf_score_with_log_confidence_matches_dense_solve():
  config = wmf.Config(dim=6, b=1.0, reg=0.3, fold_in_chunk=5, confidence="log",
                      alpha=2.0, epsilon=0.5)
  model = wmf.make(config)
  rng = np.random.default_rng(0)
  v = rng.standard_normal((23, 6)).astype(np.float32)
  x = ((rng.random((4, 23)) < 0.3) * rng.geometric(0.3, (4, 23))).astype(np.float32)
  scores = np.asarray(model.score({}, {"U": None, "V": jnp.asarray(v)}, jnp.asarray(x)))
  for row in range(4):
    u = _brute_row(v, x[row], "log", config.reg, b=1.0, alpha=2.0, eps=0.5)
    np.testing.assert_allclose(scores[row], v @ u, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("mod", [wmf, cmf])
def test_confidence_fields_are_checked(mod):
  with pytest.raises(ValueError, match=r"confidence must be one of \(?'constant', 'linear', 'log'"):
    mod.make(mod.Config(confidence="sqrt"))
  with pytest.raises(ValueError, match="alpha must be finite and > 0"):
    mod.make(mod.Config(confidence="linear", alpha=0.0))
  with pytest.raises(ValueError, match="epsilon must be finite and > 0"):
    mod.make(mod.Config(confidence="log", epsilon=-1.0))
  with pytest.raises(ValueError, match="alpha must be (a )?finite"):  # The Config refuses NaN.
    mod.make(mod.Config(confidence="log", alpha=float("nan")))
  mod.make(mod.Config(confidence="constant", alpha=-1.0))  # α, ε unused by "constant".


def test_stored_values_must_be_positive_counts():
  m = _counts(seed=17)
  m.data[3] = 0.0  # An explicitly stored zero.
  y = _factors(m.shape[1], K, 18)
  x = np.zeros((m.shape[0], K), np.float32)
  with pytest.raises(ValueError, match="stored values > 0"):
    als.half_sweep(x, y, bucketed_rows(m, EDGES), reg=0.1, confidence="log", **CONF)
  als.half_sweep(x, y, bucketed_rows(m, EDGES), reg=0.1, **CONF)  # "constant" ignores values.


def test_per_entry_confidence_on_four_devices_equals_one():
  script = """
    import numpy as np, scipy.sparse as sp, jax
    from recjax.data.batching import bucketed_rows
    from recjax.ops import als
    from recjax.train.sharding import make_mesh
    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    dense = (rng.random((70, 45)) < 0.15) * rng.geometric(0.3, (70, 45))
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
      for conf, solver, cache in (("linear", "cholesky", None), ("log", "cholesky", 4 * 64 * k * 3),
                                  ("log", "cg", 4 * 64 * k * 3)):
        kw = dict(a=5.0, b=0.5, reg=0.3, solver=solver, rows_per_call=6, mesh=mesh,
                  cache_bytes=cache, confidence=conf, alpha=2.0, epsilon=0.5)
        u, v = u0, v0
        for _ in range(2):
          u = als.half_sweep(u, v, bu, **kw)
          v = als.half_sweep(v, u, bi, prior=prior_v, **kw)
        results[n, conf, solver, cache] = np.asarray(u), np.asarray(v)
    for key in results:
      if key[0] == 1:
        for one, four in zip(results[key], results[(4,) + key[1:]]):
          np.testing.assert_allclose(four, one, rtol=1e-4, atol=1e-5, err_msg=str(key))
    print("same", len(results))
  """
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=180)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "same 6" in proc.stdout
