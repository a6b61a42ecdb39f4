"""CVAE: the VAE terms, tied weights, ALS with the network's prior, cold-start scoring, alternation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import content as content_lib
from recjax.models import cvae
from recjax.models.registry import get_model
from recjax.nn import cvae as cvae_nn
from recjax.nn import sparse
from recjax.eval import evaluate
from recjax.train.runner import TrainConfig, WorkdirMismatch, train_and_evaluate
from hybrid_helpers import (check_prior_sweep, epoch_batches, keep_p_split, phase, topic_data,
                            train_step)

K = 4
HIDDEN = (12, 6)


def _data(seed=0, n_users=50, n_items=36, n_words=24, cold=(0, 1)):
  return topic_data(seed, n_users, n_items, n_words, cold)


def _model(**kw):
  base = dict(dim=K, hidden=HIDDEN, pretrain_epochs=0, learning_rate=1e-2)
  base.update(kw)
  return cvae.make(cvae.Config(**base))


def _setup(seed=0, **kw):
  train, content = _data(seed)
  model = _model(**kw)
  params, factors = model.init(jax.random.PRNGKey(seed), train, item_content=content)
  aux = model.prepare(train, content)
  return model, train, content, params, factors, aux


def _padded(x):
  """Dense rows -> PaddedRows over all columns (values 0 where x is 0)."""
  b, w = x.shape
  return sparse.PaddedRows(jnp.broadcast_to(jnp.arange(w, dtype=jnp.int32)[None, :], (b, w)),
                           jnp.asarray(x))


def test_vae_terms_match_numpy_closed_forms():
  rng = np.random.default_rng(0)
  f = rng.normal(size=(3, 7)).astype(np.float32)
  x = rng.random((3, 7)).astype(np.float32) * (rng.random((3, 7)) < 0.5)
  p = 1.0 / (1.0 + np.exp(-f.astype(np.float64)))
  bern = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)
  for rows in (jnp.asarray(x), _padded(x)):
    np.testing.assert_allclose(cvae_nn.bernoulli_log_likelihood(jnp.asarray(f), rows), bern,
                               rtol=1e-5)
  lam = 2.5
  gauss = np.sum(-0.5 * lam * (x - f) ** 2 + 0.5 * np.log(lam / (2 * np.pi)), axis=1)
  for rows in (jnp.asarray(x), _padded(x)):
    np.testing.assert_allclose(cvae_nn.gaussian_log_density(jnp.asarray(f), rows, lam), gauss,
                               rtol=1e-5)
  mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  var = np.exp(logvar)
  # KL(N(mu, var) || N(0, 1)) per dimension, summed: ½(var + mu² − 1 − log var).
  kl = np.sum(0.5 * (var + mu ** 2 - 1.0 - logvar), axis=1)
  np.testing.assert_allclose(cvae_nn.gaussian_kl(jnp.asarray(mu, jnp.float32),
                                                 jnp.asarray(logvar, jnp.float32)), kl, rtol=1e-5)


def test_tied_weights_are_one_parameter_with_gradient_from_both_uses():
  model, train, content, params, factors, aux = _setup()
  names = set(params["params"])
  assert {"kernel_0", "kernel_1"} <= names
  # No decoder copy of the tied matrices: every [W, h0] or [h0, h1] array is kernel_0/kernel_1.
  shapes = {n: v.shape for n, v in params["params"].items() if not isinstance(v, dict)}
  assert [n for n, s in shapes.items() if len(s) == 2] == ["kernel_0", "kernel_1"]
  config = model.config
  x = jnp.asarray(content[:8].toarray())
  eps = jax.random.normal(jax.random.PRNGKey(3), (8, K))
  net = cvae.network(config, params)

  def loss_untied(p_enc, p_dec):
    mu, logvar = net.apply(p_enc, x, method=cvae_nn.TiedVAE.encode)
    f = net.apply(p_dec, mu + eps * jnp.exp(0.5 * logvar), method=cvae_nn.TiedVAE.decode)
    return -jnp.sum(cvae_nn.bernoulli_log_likelihood(f, x))

  def loss_tied(p):
    f, _, _ = net.apply(p, x, eps)
    return -jnp.sum(cvae_nn.bernoulli_log_likelihood(f, x))

  loss_tied = jax.jit(loss_tied)
  g = jax.jit(jax.grad(loss_tied))(params)["params"]
  g_enc, g_dec = jax.jit(jax.grad(loss_untied, argnums=(0, 1)))(params, params)
  for name in ("kernel_0", "kernel_1"):
    from_enc, from_dec = g_enc["params"][name], g_dec["params"][name]
    assert float(jnp.abs(from_enc).max()) > 0 and float(jnp.abs(from_dec).max()) > 0
    np.testing.assert_allclose(g[name], from_enc + from_dec, rtol=1e-4, atol=1e-6)
    # Perturbing the one parameter moves the loss as its gradient says (both uses at once).
    d = jax.random.normal(jax.random.PRNGKey(7), params["params"][name].shape)
    h = 1e-2
    moved = lambda s: jax.tree_util.tree_map_with_path(
        lambda path, v: v + s * h * d if path[-1].key == name else v, params)
    fd = (float(loss_tied(moved(1.0))) - float(loss_tied(moved(-1.0)))) / (2 * h)
    assert fd == pytest.approx(float(jnp.sum(g[name] * d)), rel=2e-2)
    assert abs(float(jnp.sum(from_enc * d))) > 1e-3 * abs(fd)  # Both uses contribute.




def test_block_step_is_exact_als_with_the_inference_mean_as_prior():
  model, train, content, params, factors, aux = _setup()
  config = model.config
  new = model.block_step(params, factors, aux, None)
  x = aux["content"].toarray()  # Each word's counts over its largest count (the paper's scaling).
  np.testing.assert_allclose(x, content.toarray() / np.maximum(content.toarray().max(0), 1)[None])
  mu = np.asarray(cvae.encode(config, params, jnp.asarray(x))[0], np.float64)
  np.testing.assert_allclose(new["mu"], mu, rtol=1e-4, atol=1e-5)
  check_prior_sweep(factors, new, train, config, mu)


def test_cold_item_is_scored_from_its_content_alone():
  model, train, content, params, factors, aux = _setup()
  cold = 0
  assert train[:, cold].nnz == 0 and train[:, 2].nnz > 0
  f1 = model.block_step(params, factors, aux, None)
  inputs = jnp.asarray(train[:6].toarray())
  s1 = model.score(params, f1, inputs)
  vecs = np.asarray(model.item_vectors(params, f1))
  np.testing.assert_array_equal(vecs[cold], np.asarray(f1["mu"][cold]))  # v† = 0: only μ_j.
  np.testing.assert_array_equal(vecs[2], np.asarray(f1["V"][2]))  # v† + μ = v for rated items.

  # 1. Change the cold item's content only: its score changes.
  changed = content.tolil()
  changed[cold] = content[5].toarray()
  aux2 = model.prepare(train, sp.csr_matrix(changed))
  f2 = model.block_step(params, factors, aux2, None)
  s2 = model.score(params, f2, inputs)
  assert float(jnp.max(jnp.abs(s2[:, cold] - s1[:, cold]))) > 1e-4
  np.testing.assert_allclose(model.item_vectors(params, f2)[cold],
                             cvae.encode(model.config, params,
                                         jnp.asarray(aux2["content"][cold].toarray()))[0][0],
                             rtol=1e-5, atol=1e-6)

  # 2. Change other items' clicks only: the cold item's vector does not move (bit for bit),
  #    while a clicked item's does.
  more = train.tolil()
  rng = np.random.default_rng(1)
  for u_, i_ in zip(rng.integers(0, train.shape[0], 40), rng.integers(2, train.shape[1], 40)):
    more[u_, i_] = 1.0
  more = sp.csr_matrix(more)
  assert more[:, cold].nnz == 0
  _, fac3 = model.init(jax.random.PRNGKey(0), more, item_content=content)
  f3 = model.block_step(params, fac3, model.prepare(more, content), None)
  np.testing.assert_array_equal(np.asarray(model.item_vectors(params, f3))[cold], vecs[cold])
  assert float(np.max(np.abs(np.asarray(model.item_vectors(params, f3))[2] - vecs[2]))) > 1e-5
  # And its score is exactly u_iᵀ μ_j for the folded-in users.
  s3 = np.asarray(model.score(params, f3, inputs))
  items = np.asarray(model.item_vectors(params, f3))
  users = np.linalg.lstsq(items, s3.T, rcond=None)[0].T  # Recover u_i from scores of all items.
  np.testing.assert_allclose(s3[:, cold], users @ np.asarray(f3["mu"][cold]), rtol=1e-3,
                             atol=1e-5)


def test_alternation_lowers_the_joint_objective():
  model, train, content, params, factors, aux = _setup(learning_rate=3e-3)
  config = model.config
  key = jax.random.PRNGKey(11)
  objective = lambda p, f: cvae.map_objective(config, p, f, aux, key, n_samples=4)
  opt_state = model.optimizer.init(params)

  step = train_step(model)

  factors = model.block_step(params, factors, aux, None)
  history = [objective(params, factors)["total"]]
  for epoch in range(1, 5):
    before_als = objective(params, factors)["total"]
    factors = model.block_step(params, factors, aux, None)
    after_als = objective(params, factors)["total"]
    assert after_als <= before_als + 1e-6 * abs(before_als)  # Exact block minimization.
    for i, batch in enumerate(epoch_batches(model, train, aux, 16, epoch)):
      params, opt_state = step(params, opt_state, factors, batch, jax.random.PRNGKey(100 * epoch + i),
                               phase(model, epoch, i))
    history.append(objective(params, factors)["total"])
  assert history[-1] < 0.9 * history[0], history


def test_phase_pretrains_then_adds_the_prior_and_batches_cover_every_item():
  model, train, content, params, factors, aux = _setup(pretrain_epochs=2)
  for epoch, weight in ((1, 0.0), (2, 0.0), (3, 1.0)):
    assert model.phase(epoch) == {"stage": len(HIDDEN) + 1, "prior_weight": weight,
                                  "kl_weight": 1.0}
    n, it = model.batch_source.epoch(train, aux, 10, epoch, 0)
    batches = list(it)
    assert n == len(batches) == 4
    index = np.concatenate([b["index"][b["mask"]] for b in batches])
    assert sorted(index.tolist()) == list(range(content.shape[0]))
    assert all(set(b) == {"words", "values", "index", "mask"} for b in batches)  # Data only.
    assert {b["words"].shape for b in batches} == {(10, int(np.diff(aux["content"].indptr).max()))}


def test_layerwise_pretraining_stages_train_one_layer_at_a_time():
  model, train, content, params, factors, aux = _setup(layerwise_epochs=2, pretrain_epochs=1,
                                                       reg_w=0.0)
  want = [(0, 0.0), (0, 0.0), (1, 0.0), (1, 0.0), (2, 0.0), (2, 0.0), (3, 0.0), (3, 1.0)]
  assert [(model.phase(e)["stage"], model.phase(e)["prior_weight"]) for e in range(1, 9)] == want
  grad = jax.jit(jax.grad(lambda p, f, b, k, ph: model.loss(p, f, b, k, ph)[0]))

  def trained(epoch):  # The parameters the first batch of `epoch` moves.
    batch = next(epoch_batches(model, train, aux, 12, epoch))
    g = grad(params, factors, batch, jax.random.PRNGKey(epoch), phase(model, epoch))["params"]
    return {name for name, leaf in g.items()
            if max(float(jnp.abs(x).max()) for x in jax.tree.leaves(leaf)) > 0}

  assert trained(1) == {"kernel_0", "enc_bias_0", "dec_bias_0"}  # Layer 0's tied DAE.
  assert trained(3) == {"kernel_1", "enc_bias_1", "dec_bias_1"}  # Layer 1's, layer 0 fixed.
  assert trained(5) == {"mu", "logvar", "latent_in"}  # The latent VAE on fixed features.
  assert trained(7) == set(params["params"])  # Then the whole network.


def test_end_to_end_tiny_run_through_the_runner(tmp_path):
  clicks, content = _data(seed=2, n_users=80, n_items=40, cold=())
  split = keep_p_split(clicks, 2, seed=0)
  model = get_model("cvae", {"dim": K, "hidden": HIDDEN, "pretrain_epochs": 10,
                             "learning_rate": 2e-2})
  config = TrainConfig(epochs=40, eval_every=10, batch_size=8, seed=1, progress=False,
                       n_devices=1, metrics=("recall@10", "recall_cdl@10"))
  res, best = train_and_evaluate(model, split, config, tmp_path / "run",
                                 side={"item_content": content}, log=lambda s: None,
                                 return_state=True)
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == list(range(1, 41))
  assert all(set(r["train"]) == {"loss", "neg_log_lik", "kl", "prior", "stage"} for r in records)
  # Pretraining epochs minimize reconstruction + KL only; the λ_v term enters at epoch 11.
  assert records[9]["train"]["loss"] < records[10]["train"]["loss"]
  # Well above random ranking (10 of 40 items: random recall@10 ≈ 0.25); content kNN gets ~0.7.
  assert res["test"]["recall_cdl@10"] > 0.5
  # The same state with every item ranked (fold-in items not removed) can only do worse.
  # (Re-running the workdir with exclude_fold_in=False is refused: it would select differently.)
  every_item = evaluate(lambda st, x: model.score(st[0], st[1], x), best, split.test,
                        metrics=config.metrics, exclude_fold_in=False)
  assert every_item["recall_cdl@10"] <= res["test"]["recall_cdl@10"]
  with pytest.raises(WorkdirMismatch, match="exclude_fold_in"):
    train_and_evaluate(model, split, TrainConfig(**{**config.__dict__, "exclude_fold_in": False}),
                       tmp_path / "run", side={"item_content": content}, log=lambda s: None)


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match="likelihood"):
    cvae.make(cvae.Config(likelihood="poisson"))
  model = _model()
  train, content = _data()
  with pytest.raises(ValueError, match="rows for"):
    model.prepare(train, content[:-1])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    _model(content_scale="none").prepare(train, content * 3)


def test_every_content_scale_reaches_the_network_as_named():
  """The network reads the content as `content_scale` names it (data.content.scale's own values
  are hand-worked in test_content.py); row_max, the CDL author's per-item scaling, is an option."""
  train, content = _data()
  counts = sp.csr_matrix(sp.csr_matrix(content).multiply(np.arange(1, content.shape[1] + 1, dtype=np.float32)[None]))
  for how in ("word_max", "row_max", "binary"):
    got = _model(content_scale=how).prepare(train, counts)["content"]
    np.testing.assert_array_equal(got.toarray(), content_lib.scale(counts, how).toarray())
  rows = _model(content_scale="row_max").prepare(train, counts)["content"]
  nonempty = np.diff(rows.indptr) > 0
  np.testing.assert_allclose(rows.max(axis=1).toarray().ravel()[nonempty], 1.0)


def _clustered_titles(seed=0, n_clusters=4, per_cluster=40, n_words=80, words_per_item=5):
  """Title-like binary bags: each item has `words_per_item` words of its cluster's own words."""
  rng = np.random.default_rng(seed)
  own = np.array_split(rng.permutation(n_words), n_clusters)
  x = np.zeros((n_clusters * per_cluster, n_words), np.float32)
  labels = np.repeat(np.arange(n_clusters), per_cluster)
  for j, c in enumerate(labels):
    x[j, rng.choice(own[c], words_per_item, replace=False)] = 1.0
  train = sp.csr_matrix((rng.random((30, len(x))) < 0.05).astype(np.float32))
  return train, sp.csr_matrix(x), labels


def _separation(codes, labels):
  """(mean distance of codes from their mean, between-centroid / within-cluster distance)."""
  ids = np.unique(labels)
  cent = np.stack([codes[labels == c].mean(0) for c in ids])
  within = np.mean([np.linalg.norm(codes[labels == c] - cent[i], axis=1).mean()
                    for i, c in enumerate(ids)])
  between = np.mean([np.linalg.norm(cent[a] - cent[b]) for a in range(len(ids)) for b in range(a)])
  return np.linalg.norm(codes - codes.mean(0), axis=1).mean(), between / within


def test_pretraining_gives_informative_codes_not_a_collapsed_posterior():
  # Issue 5: on 5-word titles the encoder mean μ_j came out of pretraining as one vector for
  # every item (KL -> 0).  The collapsed run measured here: spread 0.07, ratio 1.2 (lr 1e-3, no
  # KL warm-up); with the configs' procedure: spread 1.8, ratio 25.
  train, content, labels = _clustered_titles()
  model = cvae.make(cvae.Config(dim=8, hidden=(24, 12), layerwise_epochs=8, pretrain_epochs=8,
                                kl_warmup_epochs=4, learning_rate=1e-2))
  params, factors = model.init(jax.random.PRNGKey(0), train, item_content=content)
  aux = model.prepare(train, content)
  opt_state = model.optimizer.init(params)

  step = train_step(model)

  for epoch in range(1, 3 * 8 + 8 + 1):  # 3 layerwise stages, then the whole VAE: pretraining only.
    assert model.phase(epoch)["prior_weight"] == 0.0
    for i, batch in enumerate(epoch_batches(model, train, aux, 16, epoch)):
      params, opt_state = step(params, opt_state, factors, batch, jax.random.PRNGKey(1000 * epoch + i),
                               phase(model, epoch, i))
  mu = np.asarray(cvae.encode(model.config, params, content.toarray())[0])
  spread, ratio = _separation(mu, labels)
  assert spread > 0.5, spread  # A collapsed encoder: ~0.07 (the prior's scale is 1).
  assert ratio > 5.0, ratio  # Clusters apart; collapsed: ~1.


def test_kl_warmup_only_in_the_vae_pretraining_stages():
  c = cvae.Config(hidden=(12, 6), layerwise_epochs=2, pretrain_epochs=3, kl_warmup_epochs=2)
  got = [cvae.phase(c, e)["kl_weight"] for e in range(1, 12)]
  #       layer 0   layer 1   latent VAE  whole VAE      MAP
  assert got == [1, 1, 1, 1, 0.0, 0.5, 0.0, 0.5, 1.0, 1.0, 1.0]
  assert all(cvae.phase(cvae.Config(layerwise_epochs=2), e)["kl_weight"] == 1.0
             for e in range(1, 12))


def test_layerwise_stages_decay_only_the_layers_they_train():
  # With λ_w > 0 the weight decay of a layerwise stage must not reach the "fixed" layers: through
  # Adam, a decay-only gradient moves every weight by ~lr per step and erased them (issue 5).
  model, train, content, params, factors, aux = _setup(layerwise_epochs=1, pretrain_epochs=1,
                                                       reg_w=1.0)
  grad = jax.jit(jax.grad(lambda p, f, b, k, ph: model.loss(p, f, b, k, ph)[0]))
  for epoch, names in ((1, {"kernel_0", "enc_bias_0", "dec_bias_0"}),
                       (2, {"kernel_1", "enc_bias_1", "dec_bias_1"}),
                       (3, {"mu", "logvar", "latent_in"})):
    batch = next(epoch_batches(model, train, aux, 12, epoch))
    g = grad(params, factors, batch, jax.random.PRNGKey(epoch), phase(model, epoch))["params"]
    moved = {n for n, leaf in g.items() if max(float(jnp.abs(x).max()) for x in jax.tree.leaves(leaf)) > 0}
    assert moved == names, (epoch, moved)


def test_reg_r_weighs_content_only_in_the_map_stage():
  # λ_r belongs to Eq. 1 (content against the rating coupling): the whole-VAE pretraining
  # (prior weight 0) is the same for every λ_r, the MAP stage scales both content terms.
  out = {}
  for reg_r in (1.0, 100.0):
    model, train, content, params, factors, aux = _setup(pretrain_epochs=1, reg_r=reg_r,
                                                         reg_w=0.0)
    key = jax.random.PRNGKey(3)
    for epoch in (1, 2):  # Epoch 1: whole-VAE pretraining; epoch 2: the MAP stage.
      batch = next(epoch_batches(model, train, aux, 12, epoch))
      out[reg_r, epoch] = {k: float(v) for k, v in
                           model.loss(params, factors, batch, key, phase(model, epoch))[1].items()}
  for name in ("neg_log_lik", "kl"):
    assert out[100.0, 1][name] == pytest.approx(out[1.0, 1][name], rel=1e-6)
    assert out[100.0, 2][name] == pytest.approx(100 * out[1.0, 2][name], rel=1e-5)
  assert out[100.0, 2]["prior"] == pytest.approx(out[1.0, 2]["prior"], rel=1e-6)
