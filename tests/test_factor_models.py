"""CMF and log-count MF: objectives fall across block steps; updates and fold-in match dense solves."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

import toy_model
from recjax.data.batching import bucketed_rows
from recjax.models import cmf, logmf
from recjax.models.registry import get_model
from recjax.ops import als
from recjax.train.runner import TrainConfig, train_and_evaluate


def _data(seed=0, n_users=40, n_items=25, n_words=15):
  rng = np.random.default_rng(seed)
  clicks = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
  clicks[:, -2:] = 0.0  # Two items nobody clicked: their factors come from content alone.
  content = (rng.random((n_items, n_words)) < 0.3) * rng.integers(1, 4, (n_items, n_words))
  return sp.csr_matrix(clicks), sp.csr_matrix(content.astype(np.float32))


def _cmf_objective(config, u, v, clicks, content_scaled):
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  p = clicks.toarray()
  c = np.where(p > 0, config.a, config.b)
  z = cmf.word_factors(content_scaled.T.tocsr(), v, config.content_weight, config.reg_z)
  x = content_scaled.toarray()
  return (np.sum(c * (p - u @ v.T) ** 2) + config.content_weight * np.sum((x - v @ z.T) ** 2)
          + config.reg_u * np.sum(u ** 2) + config.reg_v * np.sum(v ** 2)
          + config.reg_z * np.sum(z ** 2))


def test_cmf_objective_falls_and_cold_items_get_content_factors():
  clicks, content = _data()
  config = cmf.Config(dim=4, a=5.0, b=0.5, reg_u=0.3, reg_v=0.5, reg_z=0.5, init_scale=0.3)
  model = cmf.make(config)
  _, factors = model.init(jax.random.PRNGKey(0), clicks)
  aux = model.prepare(clicks, item_content=content)
  scaled = aux["content"]
  assert np.allclose(scaled.max(axis=1).toarray().ravel()[np.diff(scaled.indptr) > 0], 1.0)
  losses = []
  for _ in range(5):
    factors = model.block_step({}, factors, aux, None)
    # Z is optimal for the current V, so this is the objective at (U, V, Z*(V)).
    losses.append(_cmf_objective(config, factors["U"], factors["V"], clicks, scaled))
  assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:])), losses
  v = np.asarray(factors["V"])
  assert np.linalg.norm(v[-2:]) > 1e-3  # Unclicked items are placed by their words.


def test_cmf_item_update_matches_a_dense_solve():
  clicks, content = _data(seed=1)
  config = cmf.Config(dim=3, a=4.0, b=0.2, reg_v=0.7, reg_z=0.9, content_weight=2.0)
  model = cmf.make(config)
  rng = np.random.default_rng(2)
  u0 = rng.standard_normal((clicks.shape[0], 3)).astype(np.float32)
  v0 = rng.standard_normal((clicks.shape[1], 3)).astype(np.float32)
  aux = model.prepare(clicks, item_content=content)
  z = cmf.word_factors(aux["content_t"], v0.astype(np.float64), 2.0, 0.9)
  mu = config.content_weight
  out = model.block_step({}, {"U": jnp.asarray(u0), "V": jnp.asarray(v0)}, aux, None)
  u = np.asarray(out["U"], np.float64)
  x = aux["content"].toarray()
  for j in range(clicks.shape[1]):
    p = clicks[:, j].toarray().ravel()
    c = np.where(p > 0, config.a, config.b)
    lhs = (u.T * c) @ u + mu * z.T @ z + config.reg_v * np.eye(3)
    rhs = (u.T * c) @ p + mu * z.T @ x[j]
    np.testing.assert_allclose(np.asarray(out["V"])[j], np.linalg.solve(lhs, rhs),
                               rtol=2e-3, atol=2e-4)


def test_logmf_objective_falls_and_fold_in_matches_dense_solve():
  rng = np.random.default_rng(3)
  counts = sp.csr_matrix((rng.random((30, 20)) < 0.25) * rng.integers(1, 9, (30, 20)),
                         dtype=np.float32)
  config = logmf.Config(dim=4, reg=0.1)
  model = logmf.make(config)
  _, factors = model.init(jax.random.PRNGKey(1), counts)
  buckets = model.prepare(counts)
  m = logmf.log_counts(counts).toarray()
  obs = m > 0

  def objective(u, v):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    err = np.sum(((m - u @ v.T) ** 2)[obs])
    return err + config.reg * (np.sum(obs.sum(1) * np.sum(u ** 2, 1))
                               + np.sum(obs.sum(0) * np.sum(v ** 2, 1)))

  losses = []
  for _ in range(5):
    factors = model.block_step({}, factors, buckets, None)
    losses.append(objective(factors["U"], factors["V"]))
  assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:])), losses
  v = np.asarray(factors["V"], np.float64)
  scores = np.asarray(model.score({}, factors, jnp.asarray(counts.toarray()[:5])))
  for r in range(5):
    o = obs[r]
    lhs = v[o].T @ v[o] + config.reg * o.sum() * np.eye(4)
    u = np.linalg.solve(lhs, v[o].T @ m[r, o])
    np.testing.assert_allclose(scores[r], v @ u, rtol=2e-3, atol=2e-4)


def test_dense_fold_ins_agree_with_the_bucketed_solvers():
  rng = np.random.default_rng(4)
  clicks = sp.csr_matrix((rng.random((12, 30)) < 0.3).astype(np.float32))
  y = rng.standard_normal((30, 5)).astype(np.float32)
  want = als.fold_in(y, clicks, a=6.0, b=1.0, reg=0.2)
  got = als.fold_in_dense(jnp.asarray(y), jnp.asarray(clicks.toarray()), a=6.0, b=1.0, reg=0.2,
                          item_chunk=7)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-3, atol=1e-4)
  x0 = np.zeros((12, 5), np.float32)
  want = als.weighted_lambda_half_sweep(x0, y, bucketed_rows(clicks * 2.0), reg=0.3)
  got = als.weighted_lambda_fold_in_dense(jnp.asarray(y), jnp.asarray(clicks.toarray() * 2.0),
                                          reg=0.3, item_chunk=7)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-3, atol=1e-4)


def test_logmf_trains_and_beats_popularity(tmp_path):
  split = toy_model.make_split()
  config = TrainConfig(epochs=3, n_devices=1, checkpoint=False, progress=False,
                       metrics=("recall@20", "ndcg@100"))
  res = train_and_evaluate(get_model("mf-logcount", {"dim": 8}), split, config, tmp_path / "m",
                           log=lambda s: None)
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "p",
                           log=lambda s: None)
  assert res["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"]


def test_cmf_needs_item_content(tmp_path):
  import pytest
  with pytest.raises(ValueError, match="item_content"):
    train_and_evaluate(get_model("cmf"), toy_model.make_split(), TrainConfig(checkpoint=False),
                       tmp_path, log=lambda s: None)
