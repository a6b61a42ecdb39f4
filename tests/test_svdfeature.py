"""SVDFeature: the (E, D) update against a dense solve, a falling objective, beats popularity."""

import jax
import numpy as np

from recjax.models import svdfeature
from recjax.models.registry import get_model
from recjax.train.runner import TrainConfig, train_and_evaluate
from test_ctr import planted_hybrid_split


def _objective(config, u, e, d, clicks, x):
  u, e, d = (np.asarray(t, np.float64) for t in (u, e, d))
  v = x @ e + d
  p = clicks.toarray()
  c = np.where(p > 0, config.a, config.b)
  return (np.sum(c * (p - u @ v.T) ** 2) + config.reg_u * np.sum(u ** 2)
          + config.reg_words * np.sum(e ** 2) + config.reg_offset * np.sum(d ** 2))


def _dense_word_update(config, u, clicks, x, n_words, k):
  """argmin over (E, D) of the loss given U: the normal equations built densely."""
  n_items = x.shape[0]
  p = clicks.toarray()
  # vec(V) = M [vec(E); vec(D)], rows item-major: v_j = Σ_w x_jw e_w + d_j.
  m = np.concatenate([np.kron(x, np.eye(k)), np.eye(n_items * k)], axis=1)
  h = np.zeros((n_items * k, n_items * k))
  g = np.zeros(n_items * k)
  for j in range(n_items):
    c = np.where(p[:, j] > 0, config.a, config.b)
    h[j * k:(j + 1) * k, j * k:(j + 1) * k] = (u.T * c) @ u
    g[j * k:(j + 1) * k] = (u.T * c) @ p[:, j]
  reg = np.concatenate([np.full(n_words * k, config.reg_words), np.full(n_items * k, config.reg_offset)])
  sol = np.linalg.solve(m.T @ h @ m + np.diag(reg), m.T @ g)
  return sol[:n_words * k].reshape(n_words, k), sol[n_words * k:].reshape(n_items, k)


def test_word_factor_update_matches_a_dense_solve():
  split, docs = planted_hybrid_split(seed=4, n_users=30, n_items=12, n_clusters=2,
                                     words_per_cluster=4, n_common=2)
  k = 3
  n_words = docs.shape[1]
  config = svdfeature.Config(dim=k, a=4.0, b=0.2, reg_u=0.3, reg_words=0.5, reg_offset=2.0,
                             n_words=n_words, word_cg_steps=(n_words + docs.shape[0]) * k)
  model = svdfeature.make(config)
  _, factors = model.init(jax.random.PRNGKey(0), split.train)
  aux = model.prepare(split.train, item_content=docs)
  out = model.block_step({}, factors, aux, None)
  u = np.asarray(out["U"], np.float64)
  x = svdfeature.normalize_content(docs, "l2").toarray().astype(np.float64)
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
  want_e, want_d = _dense_word_update(config, u, split.train, x, n_words, k)
  np.testing.assert_allclose(np.asarray(out["E"]), want_e, rtol=1e-2, atol=1e-3)
  np.testing.assert_allclose(np.asarray(out["D"]), want_d, rtol=1e-2, atol=1e-3)
  np.testing.assert_allclose(np.asarray(out["V"]), x @ want_e + want_d, rtol=1e-2, atol=1e-3)
  # The U half sweep is WMF's exact solve against V = X̃E + D of the input factors.
  v0 = x @ np.asarray(factors["E"], np.float64) + np.asarray(factors["D"], np.float64)
  p = split.train.toarray()
  for i in range(p.shape[0]):
    c = np.where(p[i] > 0, config.a, config.b)
    want = np.linalg.solve((v0.T * c) @ v0 + config.reg_u * np.eye(k), (v0.T * c) @ p[i])
    np.testing.assert_allclose(u[i], want, rtol=2e-3, atol=2e-4)


def test_objective_never_rises_and_cold_items_get_content_factors():
  split, docs = planted_hybrid_split(seed=5, n_users=40, n_items=30)
  config = svdfeature.Config(dim=4, n_words=docs.shape[1], word_cg_steps=5, a=2.0, b=0.1)
  model = svdfeature.make(config)
  _, factors = model.init(jax.random.PRNGKey(1), split.train)
  aux = model.prepare(split.train, item_content=docs)
  x = svdfeature.normalize_content(docs, "l2").toarray().astype(np.float64)
  losses = []
  for _ in range(6):
    factors = model.block_step({}, factors, aux, None)
    losses.append(_objective(config, factors["U"], factors["E"], factors["D"], split.train, x))
  assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:])), losses
  cold = np.asarray(split.train.getnnz(axis=0) == 0)
  assert cold.any()
  v = np.asarray(factors["V"])
  assert np.linalg.norm(v[cold], axis=1).min() > 1e-3
  content_part = v - np.asarray(factors["D"])
  # Unclicked items: only the b-weighted zeros move d_j, so the content part dominates.
  assert np.all(np.linalg.norm(np.asarray(factors["D"])[cold], axis=1)
                < 0.5 * np.linalg.norm(content_part[cold], axis=1))


def test_n_words_too_small_is_a_clear_error():
  import pytest
  split, docs = planted_hybrid_split(seed=6, n_users=10, n_items=8)
  model = svdfeature.make(svdfeature.Config(n_words=5))
  with pytest.raises(ValueError, match="n_words"):
    model.prepare(split.train, item_content=docs)


def test_svdfeature_trains_end_to_end_and_beats_popularity(tmp_path):
  split, docs = planted_hybrid_split()
  config = TrainConfig(epochs=3, n_devices=1, checkpoint=False, progress=False,
                       metrics=("recall_cdl@10", "recall@20"))
  model = get_model("svdfeature", {"dim": 4, "n_words": docs.shape[1]})
  res = train_and_evaluate(model, split, config, tmp_path / "svdf", log=lambda s: None,
                           side={"item_content": docs})
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "p",
                           log=lambda s: None)
  assert res["test"]["recall_cdl@10"] > pop["test"]["recall_cdl@10"] + 0.1, (res, pop)
