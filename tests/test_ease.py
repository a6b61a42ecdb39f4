"""EASE's closed form against an independent brute-force solve, and both solvers against each other."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.models import ease as ease_model
from recjax.ops import ease as ease_ops


def _random_clicks(n_users=200, n_items=40, density=0.1, seed=0):
  rng = np.random.default_rng(seed)
  dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
  return sp.csr_matrix(dense)


def _brute_force_ease(x: np.ndarray, l2: float) -> np.ndarray:
  """Column by column: ridge regression of item j on all other items (diag(B) = 0 by construction)."""
  n = x.shape[1]
  b = np.zeros((n, n))
  for j in range(n):
    others = [i for i in range(n) if i != j]
    a = x[:, others]
    coef = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    b[others, j] = coef
  return b


def test_sparse_gram_matches_dense_product():
  x = _random_clicks()
  gram = ease_ops.sparse_gram(x, block=7)
  np.testing.assert_array_equal(gram, (x.toarray().T @ x.toarray()))


@pytest.mark.parametrize("l2", [1.0, 50.0])
def test_ease_weights_match_column_wise_ridge(l2):
  x = _random_clicks()
  gram = ease_ops.sparse_gram(x).astype(np.float64)
  expected = _brute_force_ease(x.toarray().astype(np.float64), l2)
  device = np.asarray(ease_ops.ease_weights(jnp.asarray(gram, jnp.float32), l2))
  host = ease_ops.ease_weights_host(gram, l2)
  np.testing.assert_allclose(device, expected, atol=2e-5)
  np.testing.assert_allclose(host, expected, atol=1e-10)
  assert np.all(np.diag(device) == 0) and np.all(np.diag(host) == 0)


def test_host_solver_in_place_reuses_memory_and_symmetrizes_across_tiles():
  x = _random_clicks(n_users=300, n_items=70, seed=3)
  gram = ease_ops.sparse_gram(x).astype(np.float64)
  expected = ease_ops.ease_weights_host(gram, 5.0)
  buf = gram.copy()
  out = ease_ops.ease_weights_host(buf, 5.0, overwrite=True)
  assert np.shares_memory(out, buf)
  np.testing.assert_allclose(out, expected, atol=1e-12)
  # The default tile (1024) exceeds 70 items; check the tiled copy with tiles smaller than the matrix.
  m = np.tril(np.arange(49.0).reshape(7, 7))
  ease_ops._symmetrize_from_lower(m, block=3)
  np.testing.assert_array_equal(m, m.T)


def test_host_solver_rejects_indefinite_system():
  gram = -np.eye(5)
  with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
    ease_ops.ease_weights_host(gram, 0.5)


def test_ease_model_block_step_both_solvers_agree():
  x = _random_clicks(n_items=30)
  results = []
  for solver in ("device", "host"):
    model = ease_model.make(ease_model.Config(l2=10.0, solver=solver))
    params, factors = model.init(None, x)
    aux = model.prepare(x)
    factors = model.block_step(params, factors, aux, None)
    # A second epoch keeps B (the Gram matrix was consumed by the first solve).
    again = model.block_step(params, factors, aux, None)
    assert again is factors
    results.append(np.asarray(model.score(params, factors, jnp.asarray(x.toarray()))))
  np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_ease_config_validation():
  with pytest.raises(ValueError, match="solver"):
    ease_model.make(ease_model.Config(solver="gpu"))
  with pytest.raises(ValueError, match="l2"):
    ease_model.make(ease_model.Config(l2=0.0))


@pytest.mark.parametrize("n,max_rows", [(50, 7), (101, 30), (64, 1000)])
def test_block_spd_inverse_matches_numpy(n, max_rows):
  # Above max_rows the inverse goes through the 2x2 Schur-complement recursion
  # (used for catalogs where OpenBLAS's potrf fails); it must equal the direct inverse.
  rng = np.random.default_rng(n)
  m = rng.standard_normal((n + 5, n))
  a = m.T @ m + 0.5 * np.eye(n)
  expected = np.linalg.inv(a)
  out = ease_ops.spd_inverse_host(a, max_rows=max_rows)
  assert out is a
  np.testing.assert_allclose(a, expected, atol=1e-10)
