"""CVAE's authors'-code options (eelxpeng/CollaborativeVAE, issue 20), each against an
independent computation: the clicked-items-only user solve and the unclicked-item formula
against brute-force numpy, the fresh MAP Adam against optax.adam, the authors' bias layout,
loss weighting and pretraining subset against their definitions."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import _citeulike
from recjax.models import cvae
from recjax.models.registry import get_model
from recjax.nn import content as content_nn
from recjax.nn import cvae as cvae_nn
from recjax.train.runner import TrainConfig, train_and_evaluate
from hybrid_helpers import epoch_batches, keep_p_split, phase, topic_data, weighted_ridge

K = 4
HIDDEN = (12, 6)
AUTHORS = dict(map_learning_rate=1e-3, pretrain_fraction=0.8, pretrain_weight_decay=False,
               bias_layout="authors_code", objective="authors_code", user_gram="clicked",
               score_unclicked="factor")


def _setup(seed=0, cold=(0, 1), **kw):
  train, content = topic_data(seed, 50, 36, 24, cold)
  model = cvae.make(cvae.Config(**{**dict(dim=K, hidden=HIDDEN, pretrain_epochs=0,
                                          learning_rate=1e-2), **kw}))
  params, factors = model.init(jax.random.PRNGKey(seed), train, item_content=content)
  return model, train, content, params, factors, model.prepare(train, content)


def test_clicked_only_user_solve_and_unclicked_items_against_brute_force():
  model, train, content, params, factors, aux = _setup(user_gram="clicked")
  config = model.config
  r = train.toarray() > 0
  clicked = r.any(axis=0)
  assert not clicked[0] and not clicked[1] and clicked[2:].any()
  # Unit-scale item factors, so the unclicked items' rows weigh in the paper's Gram.
  factors = dict(factors, V=jax.random.normal(jax.random.PRNGKey(5), factors["V"].shape))
  new = model.block_step(params, factors, aux, None)
  mu = np.asarray(new["mu"], np.float64)
  V0 = np.asarray(factors["V"], np.float64)
  # lib/cvae.py pmf_estimate: XX = b Σ_{j clicked} v_j v_jᵀ + λ_u I; A = XX + (a − b) Σ_{j∈u} v_j v_jᵀ.
  u_want = np.zeros((r.shape[0], K))
  gram = config.b * V0[clicked].T @ V0[clicked] + config.reg_u * np.eye(K)
  for i in range(r.shape[0]):
    items = np.flatnonzero(r[i])
    A = gram + (config.a - config.b) * V0[items].T @ V0[items]
    u_want[i] = np.linalg.solve(A, config.a * V0[items].sum(axis=0))
  np.testing.assert_allclose(new["U"], u_want, rtol=1e-3, atol=1e-5)
  # The paper's solve (all items in the Gram) differs, so the option is not a no-op.
  u_all = weighted_ridge(V0, r, config.a, config.b, config.reg_u, np.zeros((r.shape[0], K)))
  assert np.abs(u_all - u_want).max() > 1e-3
  # V: the usual prior solve against the new U; items with no click get the closed form
  # v_j = (b UᵀU + λ_v I)⁻¹ λ_v μ_j.
  U1 = np.asarray(new["U"], np.float64)
  v_want = weighted_ridge(U1, r.T, config.a, config.b, config.reg_v, mu)
  np.testing.assert_allclose(new["V"], v_want, rtol=1e-3, atol=1e-5)
  closed = np.linalg.solve(config.b * U1.T @ U1 + config.reg_v * np.eye(K),
                           config.reg_v * mu[[0, 1]].T).T
  np.testing.assert_allclose(np.asarray(new["V"])[[0, 1]], closed, rtol=1e-4, atol=1e-6)


def test_fold_in_and_unclicked_scores_follow_the_options():
  inputs_of = lambda train: jnp.asarray(train[:5].toarray())
  for user_gram in ("all", "clicked"):
    for unclicked in ("prior", "factor"):
      model, train, content, params, factors, aux = _setup(user_gram=user_gram,
                                                           score_unclicked=unclicked)
      f = model.block_step(params, factors, aux, None)
      config, r = model.config, train.toarray()[:5] > 0
      V = np.asarray(f["V"], np.float64)
      rated = np.asarray(f["rated"])
      against = np.where(rated[:, None], V, 0.0) if user_gram == "clicked" else V
      u = weighted_ridge(against, r, config.a, config.b, config.reg_u, np.zeros((5, K)))
      vectors = V if unclicked == "factor" else np.where(rated[:, None], V, np.asarray(f["mu"]))
      np.testing.assert_allclose(model.score(params, f, inputs_of(train)), u @ vectors.T,
                                 rtol=1e-3, atol=1e-5)
      np.testing.assert_allclose(model.item_vectors(params, f), vectors, rtol=1e-6)


def test_two_stage_adam_starts_a_fresh_adam_at_the_map_stage():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = [{"w": jnp.array([0.5, -1.0, 2.0]) * (i + 1)} for i in range(5)]
  opt = cvae.two_stage_adam(1e-2, 1e-3)
  state = opt.init(params)
  pre, post = optax.adam(1e-2), optax.adam(1e-3)
  s_pre, s_post = pre.init(params), post.init(params)
  for i, g in enumerate(grads):
    map_stage = i >= 3
    got, state = jax.jit(lambda g, s, m: opt.update(g, s, params, map_stage=m))(
        g, state, jnp.asarray(map_stage))
    if map_stage:
      want, s_post = post.update(g, s_post, params)
    else:
      want, s_pre = pre.update(g, s_pre, params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
  # The first MAP step of a fresh Adam moves every weight by the learning rate (bias-corrected).
  fresh, _ = post.update(grads[3], post.init(params), params)
  np.testing.assert_allclose(np.abs(fresh["w"]), 1e-3, rtol=1e-4)


def test_authors_bias_layout():
  model, train, content, params, factors, aux = _setup(bias_layout="authors_code")
  p = params["params"]
  assert {"dae_bias_0", "dae_bias_1", "dec_bias_0"} <= set(p) and "dec_bias_1" not in p
  assert float(jnp.abs(p["dec_bias_0"]).max()) == 0.0  # Their b_x starts at 0.
  rng = np.random.default_rng(0)
  p = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), p)
  params = {"params": p}
  net = cvae.network(model.config, params)
  assert net.bias_layout == "authors_code"
  z = jnp.asarray(rng.normal(size=(3, K)), jnp.float32)
  sig = lambda t: 1 / (1 + np.exp(-t))
  h2 = sig(np.asarray(z) @ np.asarray(p["latent_in"]["kernel"]) + np.asarray(p["latent_in"]["bias"]))
  h1 = sig(h2 @ np.asarray(p["kernel_1"]).T + np.asarray(p["enc_bias_0"]))  # Tied middle bias.
  want = h1 @ np.asarray(p["kernel_0"]).T + np.asarray(p["dec_bias_0"])
  np.testing.assert_allclose(net.apply(params, z, method=cvae_nn.TiedVAE.decode), want,
                             rtol=1e-4, atol=1e-4)
  h = jnp.asarray(rng.random((3, HIDDEN[0])), jnp.float32)
  want = (sig(np.asarray(h) @ np.asarray(p["kernel_1"]) + np.asarray(p["enc_bias_1"]))
          @ np.asarray(p["kernel_1"]).T + np.asarray(p["dae_bias_1"]))
  np.testing.assert_allclose(net.apply(params, h, 1, method=cvae_nn.TiedVAE.layer_reconstruction),
                             want, rtol=1e-4, atol=1e-4)


def test_authors_objective_weighting_and_kernel_decay():
  model, train, content, params, factors, aux = _setup(objective="authors_code", reg_r=2.0,
                                                       reg_v=10.0, kernel_decay=2e-4,
                                                       pretrain_weight_decay=False,
                                                       layerwise_epochs=1, pretrain_epochs=1)
  config = model.config
  batch = next(epoch_batches(model, train, aux, 8, 1))
  key = jax.random.PRNGKey(3)
  map_epoch = 3 + 1 + 1  # 3 layerwise stages, 1 whole-VAE epoch, then the MAP stage.
  value, aux_out = model.loss(params, factors, batch, key, phase(model, map_epoch))
  # The same draws: item_terms with content weight 1 gives (nll, kl, λ_v/2 E||v − z||²).
  _, k_eps = jax.random.split(key)
  v = factors["V"][jnp.maximum(batch["index"], 0)]
  nll, kl, prior = cvae.item_terms(config, params, content_nn.content_rows(batch), v, k_eps, 1.0)
  mask = np.asarray(batch["mask"])
  per_item = np.asarray(nll + kl + prior * 2.0 / config.reg_r)[mask]
  kernels = sum(float(jnp.sum(params["params"][f"kernel_{l}"] ** 2)) for l in range(2))
  assert float(value) == pytest.approx(per_item.mean() + 2e-4 * kernels, rel=1e-5)
  # No weight decay in any pretraining stage: stage losses are the bare reconstruction.
  for epoch in (1, 4):
    value, terms = model.loss(params, factors, batch, key, phase(model, epoch))
    assert float(value) == pytest.approx(float(terms["neg_log_lik"] + terms["kl"]), rel=1e-6)


def test_pretraining_sees_only_its_item_subset():
  model, train, content, params, factors, aux = _setup(pretrain_fraction=0.5, pretrain_epochs=1)
  subset = np.asarray(factors["pretrain"])
  assert 0 < subset.sum() < len(subset)
  grad = jax.jit(jax.grad(lambda p, b, ph: model.loss(p, factors, b, jax.random.PRNGKey(0),
                                                      ph)[0]))
  batch = next(epoch_batches(model, train, aux, 36, 1))  # Every item in one batch.
  outside = ~subset[np.maximum(np.asarray(batch["index"]), 0)] & np.asarray(batch["mask"])
  # Zeroing the content of the items outside the subset leaves the pretraining gradient
  # unchanged, but not the MAP stage's.
  blank = dict(batch, values=jnp.where(jnp.asarray(outside)[:, None], 0.0, batch["values"]))
  for epoch, same in ((1, True), (2, False)):
    g1, g2 = grad(params, batch, phase(model, epoch)), grad(params, blank, phase(model, epoch))
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g1),
                                                           jax.tree.leaves(g2)))
    assert (diff == 0.0) == same, (epoch, diff)


def test_authors_schedule_config_and_a_tiny_run(tmp_path):
  config = _citeulike.hybrid("cvae", "citeulike-t", "P1", schedule="authors_code")
  assert config["train"]["epochs"] == 350
  for name, value in AUTHORS.items():
    assert config["model_config"][name] == value
  with pytest.raises(ValueError, match="no 'authors_code' schedule for wmf"):
    _citeulike.hybrid("wmf", "citeulike-t", "P1", schedule="authors_code")
  clicks, content = topic_data(2, 80, 40, 24, ())
  split = keep_p_split(clicks, 2, seed=0)
  model = get_model("cvae", {"dim": K, "hidden": HIDDEN, "layerwise_epochs": 1,
                             "pretrain_epochs": 2, "learning_rate": 2e-2, **AUTHORS})
  train_config = TrainConfig(epochs=8, eval_every=8, batch_size=8, seed=1, progress=False,
                             n_devices=1, metrics=("recall_cdl@10", "recall_train_test@10"))
  res = train_and_evaluate(model, split, train_config, tmp_path / "run",
                           side={"item_content": content}, log=lambda s: None)
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["train"]["stage"] for r in records] == [0, 1, 2, 3, 3, 3, 3, 3]
  assert 0 < res["test"]["recall_train_test@10"] <= 1 and res["test"]["users_train_test"] == 80
  # Resumed from its checkpoint: the same numbers (the two Adam states are checkpointed).
  again = train_and_evaluate(model, split, train_config, tmp_path / "run",
                             side={"item_content": content}, log=lambda s: None)
  assert again["test"] == res["test"]


def test_option_errors_are_clear():
  for kw, match in ((dict(user_gram="some"), "user_gram"),
                    (dict(score_unclicked="zero"), "score_unclicked"),
                    (dict(bias_layout="tied"), "bias_layout"),
                    (dict(objective="authors"), "objective"),
                    (dict(pretrain_fraction=0.0), "pretrain_fraction"),
                    (dict(map_learning_rate=0.0), "map_learning_rate")):
    with pytest.raises(ValueError, match=match):
      cvae.Config(**kw)
