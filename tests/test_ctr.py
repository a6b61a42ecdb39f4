"""CTR: the V update is the closed form with prior θ, the objective falls, and it beats popularity."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.data import splits
from recjax.models import ctr
from recjax.models.registry import get_model
from recjax.train.runner import TrainConfig, train_and_evaluate


def planted_hybrid_split(seed=0, n_users=120, n_items=80, n_clusters=4, words_per_cluster=12,
                         n_common=6, doc_len=25, clicks_per_user=8, train_per_user=2,
                         cold_fraction=0.5):
  """Clicks and documents with planted clusters, split P items per user (weak generalization).

  Item j belongs to cluster j % n_clusters and its document draws most words
  from that cluster's vocabulary; user i clicks items of cluster i % n_clusters.
  `cold_fraction` of the items never appear in training, so only their
  content can rank them.

  Returns:
    (split, item_content csr [n_items, n_clusters * words_per_cluster + n_common]).
  """
  rng = np.random.default_rng(seed)
  n_words = n_clusters * words_per_cluster + n_common
  item_cluster = np.arange(n_items) % n_clusters
  content = np.zeros((n_items, n_words), np.float32)
  for j in range(n_items):
    c = item_cluster[j]
    probs = np.full(n_words, 0.1 / n_common * (np.arange(n_words) >= n_words - n_common))
    probs[c * words_per_cluster:(c + 1) * words_per_cluster] = 0.9 / words_per_cluster
    content[j] = rng.multinomial(doc_len, probs / probs.sum())
  cold = rng.random(n_items) < cold_fraction
  train = np.zeros((n_users, n_items), np.float32)
  test = np.zeros((n_users, n_items), np.float32)
  for i in range(n_users):
    mine = np.flatnonzero(item_cluster == i % n_clusters)
    chosen = rng.choice(mine, size=min(clicks_per_user, len(mine)), replace=False)
    warm = [j for j in chosen if not cold[j]]
    for j in warm[:train_per_user]:
      train[i, j] = 1.0
    for j in chosen:
      if train[i, j] == 0:
        test[i, j] = 1.0
  split = splits.weak_generalization_split(sp.csr_matrix(train), sp.csr_matrix(test))
  return split, sp.csr_matrix(content)


def _full_objective(config, u, v, theta, clicks, docs, beta):
  """−2 × the CTR log posterior (up to constants), in float64."""
  u, v, theta = (np.asarray(t, np.float64) for t in (u, v, theta))
  p = clicks.toarray()
  c = np.where(p > 0, config.a, config.b)
  x = docs.toarray().astype(np.float64)
  words = np.sum(x * np.log(theta @ np.asarray(beta, np.float64)))
  return (np.sum(c * (p - u @ v.T) ** 2) + config.reg_u * np.sum(u ** 2)
          + config.reg_v * np.sum((v - theta) ** 2)
          - 2.0 * (words + config.theta_pseudo_count * np.sum(np.log(theta))))


def _small_config(**kw):
  base = dict(dim=4, lda_em_iters=15, lda_e_steps=5, lda_alpha=0.25)
  base.update(kw)
  return ctr.Config(**base)


def test_item_update_is_the_closed_form_with_prior_theta():
  split, docs = planted_hybrid_split(seed=1, n_users=40, n_items=24)
  clicks = split.train
  config = _small_config(a=3.0, b=0.1, reg_u=0.2, reg_v=0.7, theta_steps=0)
  model = ctr.make(config)
  _, factors = model.init(jax.random.PRNGKey(0), clicks)
  aux = model.prepare(clicks, item_content=docs)
  theta = np.asarray(aux["theta_lda"], np.float64)
  np.testing.assert_allclose(theta.sum(1), 1.0, rtol=1e-5)
  factors = model.block_step({}, factors, aux, None)  # First step: V starts at θ.
  for _ in range(2):
    v_before = np.asarray(factors["V"], np.float64)
    factors = model.block_step({}, factors, aux, None)
    u = np.asarray(factors["U"], np.float64)
    p = clicks.toarray()
    for i in range(clicks.shape[0]):  # U against the previous V.
      c = np.where(p[i] > 0, config.a, config.b)
      want = np.linalg.solve((v_before.T * c) @ v_before + config.reg_u * np.eye(4),
                             (v_before.T * c) @ p[i])
      np.testing.assert_allclose(u[i], want, rtol=2e-3, atol=2e-4)
    for j in range(clicks.shape[1]):  # V against the new U, pulled toward θ_j.
      c = np.where(p[:, j] > 0, config.a, config.b)
      want = np.linalg.solve((u.T * c) @ u + config.reg_v * np.eye(4),
                             (u.T * c) @ p[:, j] + config.reg_v * theta[j])
      np.testing.assert_allclose(np.asarray(factors["V"])[j], want, rtol=2e-3, atol=2e-4)
  np.testing.assert_array_equal(np.asarray(factors["theta"]), np.asarray(aux["theta_lda"]))


def test_objective_with_theta_updates_never_rises():
  split, docs = planted_hybrid_split(seed=2, n_users=40, n_items=24)
  config = _small_config(theta_steps=2)
  model = ctr.make(config)
  _, factors = model.init(jax.random.PRNGKey(1), split.train)
  aux = model.prepare(split.train, item_content=docs)
  beta = np.asarray(aux["beta"])
  losses = []
  for _ in range(5):
    factors = model.block_step({}, factors, aux, None)
    losses.append(_full_objective(config, factors["U"], factors["V"], factors["theta"],
                                  split.train, docs, beta))
  assert all(b <= a * (1 + 1e-5) + 1e-6 for a, b in zip(losses, losses[1:])), losses
  theta = np.asarray(factors["theta"])
  np.testing.assert_allclose(theta.sum(1), 1.0, rtol=1e-5)
  assert not np.allclose(theta, np.asarray(aux["theta_lda"]))  # θ moved toward V.


def test_score_folds_users_in_against_v():
  split, docs = planted_hybrid_split(seed=3, n_users=30, n_items=20)
  config = _small_config(theta_steps=1)
  model = ctr.make(config)
  _, factors = model.init(jax.random.PRNGKey(2), split.train)
  aux = model.prepare(split.train, item_content=docs)
  for _ in range(2):
    factors = model.block_step({}, factors, aux, None)
  rows = split.train.toarray()[:6]
  scores = np.asarray(model.score({}, factors, jnp.asarray(rows)))
  v = np.asarray(factors["V"], np.float64)
  for r in range(6):
    c = np.where(rows[r] > 0, config.a, config.b)
    u = np.linalg.solve((v.T * c) @ v + config.reg_u * np.eye(4), (v.T * c) @ rows[r])
    np.testing.assert_allclose(scores[r], v @ u, rtol=2e-3, atol=2e-4)


def test_ctr_trains_end_to_end_and_beats_popularity(tmp_path):
  split, docs = planted_hybrid_split()
  config = TrainConfig(epochs=3, n_devices=1, checkpoint=False, progress=False,
                       metrics=("recall_cdl@10", "recall@20"))
  model = get_model("ctr", {"dim": 4, "lda_em_iters": 15, "lda_e_steps": 5,
                            "lda_alpha": 0.25})
  res = train_and_evaluate(model, split, config, tmp_path / "ctr", log=lambda s: None,
                           side={"item_content": docs})
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "p",
                           log=lambda s: None)
  assert res["test"]["recall_cdl@10"] > pop["test"]["recall_cdl@10"] + 0.1, (res, pop)
