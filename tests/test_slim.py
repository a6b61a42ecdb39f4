"""SLIM: exact constraints, monotone objective, KKT conditions, scipy brute force, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

import toy_model
from recjax.models import slim as slim_model
from recjax.models.registry import get_model, list_models
from recjax.ops import slim as slim_ops
from recjax.train.runner import TrainConfig, train_and_evaluate

METHODS = [("fista", 3000), ("admm", 600)]


def _gram(n_users=200, n_items=30, density=0.15, seed=0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  # Item popularities spread over an order of magnitude, as in real data.
  p = density * np.exp(rng.uniform(-1.0, 1.0, n_items))
  x = (rng.random((n_users, n_items)) < p[None, :]).astype(np.float64)
  return x.T @ x


def _objective64(g, w, l1, l2):
  """F(W) in float64 numpy, from the data-space formula's Gram form (independent of the op)."""
  w = np.asarray(w, np.float64)
  return (0.5 * np.sum(w * (g @ w)) - np.sum(g * w) + 0.5 * np.trace(g)
          + 0.5 * l2 * np.sum(w * w) + l1 * np.sum(np.abs(w)))


def _brute_force(g, l1, l2):
  """Column by column: L-BFGS-B on the smooth part with l1 folded in as a linear term (W ≥ 0)."""
  n = g.shape[0]
  w = np.zeros((n, n))
  for j in range(n):
    o = [i for i in range(n) if i != j]
    h = g[np.ix_(o, o)] + l2 * np.eye(n - 1)
    b = g[o, j] - l1
    res = scipy.optimize.minimize(
        lambda v: (0.5 * v @ h @ v - b @ v, h @ v - b), np.zeros(n - 1), jac=True,
        method="L-BFGS-B", bounds=[(0.0, None)] * (n - 1),
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20_000})
    assert res.success, res.message
    w[o, j] = res.x
  return w


def test_objective_matches_data_space_formula():
  rng = np.random.default_rng(1)
  x = (rng.random((50, 12)) < 0.3).astype(np.float64)
  w = rng.standard_normal((12, 12))  # any W, negative entries included
  l1, l2 = 0.7, 2.0
  expected = (0.5 * np.sum((x - x @ w) ** 2) + 0.5 * l2 * np.sum(w ** 2)
              + l1 * np.sum(np.abs(w)))
  with jax.enable_x64(True):
    got = float(slim_ops.slim_objective(jnp.asarray(x.T @ x), jnp.asarray(w), l1, l2))
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_max_eigenvalue_bound_is_an_upper_bound_and_tight():
  g = _gram()
  lam = np.linalg.eigvalsh(g)[-1]
  with jax.enable_x64(True):
    bound = float(slim_ops.max_eigenvalue_bound(jnp.asarray(g)))
  assert lam <= bound <= lam * (1 + 1e-6)
  # A symmetric matrix with negative entries: the bound still holds (through |G|).
  a = np.random.default_rng(0).standard_normal((20, 20))
  a = a + a.T
  bound = float(slim_ops.max_eigenvalue_bound(jnp.asarray(a, jnp.float32)))
  assert bound >= np.linalg.eigvalsh(a)[-1]


@pytest.mark.parametrize("method", ["fista", "admm"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_constraints_hold_exactly(method, chunk):
  g = jnp.asarray(_gram(), jnp.float32)
  w0 = jax.random.normal(jax.random.PRNGKey(0), g.shape)  # infeasible warm start: projected
  for start in (None, w0):
    w = np.asarray(slim_ops.slim_weights(g, 0.5, 1.0, 25, start, method=method, chunk=chunk))
    assert w.shape == g.shape and w.dtype == np.float32
    assert np.all(w >= 0.0)
    assert np.all(np.diag(w) == 0.0)
    assert np.count_nonzero(w) > 0


def test_fista_objective_never_rises():
  g = _gram(seed=2)
  l1, l2 = 0.5, 0.5
  gj = jnp.asarray(g, jnp.float32)
  _, history = slim_ops.slim_weights(gj, l1, l2, 300, method="fista", return_history=True)
  history = np.asarray(history, np.float64)
  assert np.all(np.diff(history) <= 0.0)
  assert history[-1] < history[0]
  # Independently: re-run to each iteration count and evaluate F in float64.
  values = [_objective64(g, slim_ops.slim_weights(gj, l1, l2, k, method="fista"), l1, l2)
            for k in (1, 2, 3, 5, 10, 20, 50, 100, 300)]
  assert np.all(np.diff(values) <= 1e-6 * abs(values[0])), values
  np.testing.assert_allclose(values[-1], history[-1], rtol=1e-5)


@pytest.mark.parametrize("method,n_iters", METHODS)
def test_solution_satisfies_kkt_conditions(method, n_iters):
  # Off the diagonal, with grad = GW − G + l2 W: grad + l1 ≥ 0 where W = 0, = 0 where W > 0.
  g = _gram(seed=3)
  l1, l2 = 1.0, 0.5
  with jax.enable_x64(True):
    w = np.asarray(slim_ops.slim_weights(jnp.asarray(g), l1, l2, n_iters, method=method))
  grad = g @ w - g + l2 * w + l1
  off = ~np.eye(g.shape[0], dtype=bool)
  active = (w > 0) & off
  assert 0 < active.sum() < off.sum()  # both kinds of entries are checked
  scale = np.abs(g).max()
  assert np.abs(grad[active]).max() <= 1e-6 * scale
  assert grad[(w == 0) & off].min() >= -1e-6 * scale


@pytest.mark.parametrize("method,n_iters", METHODS)
def test_matches_scipy_brute_force(method, n_iters):
  g = _gram(n_users=80, n_items=10, density=0.3, seed=4)
  l1, l2 = 0.5, 1.0
  expected = _brute_force(g, l1, l2)
  with jax.enable_x64(True):
    w = np.asarray(slim_ops.slim_weights(jnp.asarray(g), l1, l2, n_iters, method=method))
  np.testing.assert_allclose(w, expected, atol=1e-6)
  np.testing.assert_allclose(_objective64(g, w, l1, l2), _objective64(g, expected, l1, l2),
                             rtol=1e-10)
  # float32, chunked, as the model runs it: same solution to float32 accuracy.
  w32 = np.asarray(slim_ops.slim_weights(jnp.asarray(g, jnp.float32), l1, l2, n_iters,
                                         method=method, chunk=3))
  np.testing.assert_allclose(w32, expected, atol=2e-4)


def test_larger_l1_gives_sparser_weights():
  g = jnp.asarray(_gram(seed=5), jnp.float32)
  nnz = [int(np.count_nonzero(slim_ops.slim_weights(g, l1, 1.0, 300)))
         for l1 in (0.1, 1.0, 5.0, 20.0)]
  assert nnz[0] > nnz[1] > nnz[2] > nnz[3] > 0, nnz
  # Above every off-diagonal G_ij the gradient at W = 0 is ≥ 0 everywhere, so W = 0.
  big = float(np.max(np.asarray(g) - np.diag(np.diag(np.asarray(g))))) + 1.0
  assert np.count_nonzero(slim_ops.slim_weights(g, big, 1.0, 50)) == 0


def test_warm_start_at_the_solution_stays_there():
  g = jnp.asarray(_gram(seed=6), jnp.float32)
  w = slim_ops.slim_weights(g, 0.5, 1.0, 600)
  again = slim_ops.slim_weights(g, 0.5, 1.0, 5, w, method="fista")
  np.testing.assert_allclose(np.asarray(again), np.asarray(w), atol=1e-4)


def test_model_config_validation_and_registry():
  assert "slim" in list_models()
  assert get_model("slim", {"l1": 0.5}).config == slim_model.Config(l1=0.5)
  with pytest.raises(ValueError, match="method"):
    slim_model.make(slim_model.Config(method="cd"))
  with pytest.raises(ValueError, match="l1 must be"):  # The Config refuses it (tests/test_validation.py).
    slim_model.make(slim_model.Config(l1=-1.0))
  with pytest.raises(ValueError, match="n_iters"):
    slim_model.make(slim_model.Config(n_iters=0))


def test_model_block_step_then_score():
  x = sp.csr_matrix((np.random.default_rng(7).random((100, 25)) < 0.2).astype(np.float32))
  model = slim_model.make(slim_model.Config(l1=0.5, l2=1.0, n_iters=100, column_chunk=10))
  params, factors = model.init(None, x)
  aux = model.prepare(x)
  factors = model.block_step(params, factors, aux, None)
  assert model.block_step(params, factors, aux, None) is factors  # the Gram matrix was consumed
  expected = slim_ops.slim_weights(jnp.asarray((x.T @ x).toarray(), jnp.float32), 0.5, 1.0, 100)
  np.testing.assert_allclose(np.asarray(factors["weights"]), np.asarray(expected), atol=1e-5)
  rows = jnp.asarray(x[:5].toarray())
  np.testing.assert_allclose(np.asarray(model.score(params, factors, rows)),
                             np.asarray(rows @ factors["weights"]), rtol=1e-6)


def test_runs_end_to_end_and_beats_popularity(tmp_path):
  split = toy_model.make_split()
  config = TrainConfig(batch_size=32, eval_batch_size=33, n_devices=1, progress=False,
                       checkpoint=False, metrics=("recall@20", "ndcg@100"))
  res = train_and_evaluate(get_model("slim", {"l1": 1.0, "l2": 5.0, "n_iters": 200}), split,
                           config, tmp_path / "slim", log=lambda s: None)
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "pop",
                           log=lambda s: None)
  assert res["epochs_run"] == 1
  assert res["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"] + 0.02, (res, pop)
