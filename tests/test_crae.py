"""CRAE: RRN cell, beta-pooling, wildcards, titles, ALS with γ, cold items, alternation, generation."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp
import scipy.special as ss
from jax.test_util import check_grads

from experiments import crae_titles
from recjax.data import item_batches
from recjax.data import titles as titles_lib
from recjax.eval.bleu import corpus_bleu
from recjax.models import crae
from recjax.models.registry import get_model
from recjax.nn import crae as crae_nn
from recjax.train.runner import TrainConfig, train_and_evaluate
from hybrid_helpers import check_prior_sweep, epoch_batches, keep_p_split, phase, train_step

S = 24  # Words in the toy vocabulary.
K = 4
KW = 8


def _data(seed=0, n_users=40, n_items=30, cold=(0, 1)):
  """Clicks and titles sharing 3 topics (each topic has its own words); `cold` items unclicked."""
  rng = np.random.default_rng(seed)
  item_topic = rng.integers(0, 3, n_items)
  user_topic = rng.integers(0, 3, n_users)
  clicks = rng.random((n_users, n_items)) < np.where(user_topic[:, None] == item_topic[None, :],
                                                      0.3, 0.02)
  clicks[:, list(cold)] = False
  titles = np.full((n_items, 7), -1, np.int32)
  for j in range(n_items):
    n = rng.integers(1, 8)
    titles[j, :n] = rng.integers(0, S // 3, n) + (S // 3) * item_topic[j]
  titles[n_items - 1] = -1  # One item without any vocabulary word.
  return sp.csr_matrix(clicks.astype(np.float32)), titles


def _config(**kw):
  base = dict(dim=K, word_dim=KW, vocab_size=S, learning_rate=1e-2, encode_batch=16)
  base.update(kw)
  return crae.Config(**base)


def _setup(seed=0, **kw):
  train, titles = _data(seed)
  model = crae.make(_config(**kw))
  params, factors = model.init(jax.random.PRNGKey(seed), train, item_titles=titles)
  aux = model.prepare(train, titles)
  return model, train, titles, params, factors, aux


@pytest.fixture(scope="module")
def toy():
  """The default model (beta-pooling, wildcards) on the toy data, set up once for the file."""
  return _setup()


# ----------------------------------------------------------------------------- the RRN cell


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(xs, w_in, b_in, w_rec, candidate):
  """The LSTM the RRN becomes as λ_s → ∞: gates (a, i, f, o); cell input σ(a) or tanh(a)."""
  k = w_rec.shape[0]
  h, s = np.zeros((xs.shape[1], k)), np.zeros((xs.shape[1], k))
  out = []
  for x in xs:
    z = x @ w_in + b_in + h @ w_rec
    a, i, f, o = np.split(z, 4, axis=-1)
    g = _sigmoid(a) if candidate == "sigmoid" else np.tanh(a)
    s = _sigmoid(f) * s + _sigmoid(i) * g
    h = np.tanh(s) * _sigmoid(o)
    out.append(h)
  return np.stack(out)


@pytest.mark.parametrize("candidate", ["sigmoid", "tanh"])
def test_rrn_cell_approaches_the_lstm_as_precision_grows(candidate):
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(6, 3, 5)).astype(np.float32)  # [T, B, E].
  cell = crae_nn.RRNCell(KW, math.inf, candidate)
  zeros = jnp.zeros((3, KW))
  params = cell.init(jax.random.PRNGKey(0), (zeros, zeros), jnp.asarray(xs[0]))
  p = jax.tree.map(lambda t: np.asarray(t, np.float64), params)["params"]
  p["input"]["bias"] = rng.normal(size=4 * KW)  # Non-zero biases too.
  want = _numpy_lstm(xs.astype(np.float64), p["input"]["kernel"], p["input"]["bias"],
                     p["recurrent"]["kernel"], candidate)
  params = jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), {"params": p})

  def run(precision):
    c = crae_nn.RRNCell(KW, precision, candidate)
    carry, hs = (zeros, zeros), []
    for x in xs:
      carry, _ = c.apply(params, carry, jnp.asarray(x))
      hs.append(carry[0])
    return np.asarray(jnp.stack(hs), np.float64)

  errors = [np.abs(run(lam) - want).max() for lam in (0.3, 3.0, 30.0, 300.0, 3e4)]
  assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:])), errors
  assert errors[0] > 1e-2 and errors[-1] < 1e-3, errors
  np.testing.assert_allclose(run(math.inf), want, atol=2e-6)


def test_kappa_approximates_the_gaussian_expectation_of_the_sigmoid():
  nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # ∫ f(x) N(x; 0, 1) dx.
  weights = weights / weights.sum()
  for lam in (0.5, 2.0, 10.0):
    for mu in (-3.0, -0.5, 1.0, 4.0):
      exact = np.sum(weights * _sigmoid(mu + nodes / np.sqrt(lam)))
      assert float(crae_nn.robust_sigmoid(jnp.float32(mu), lam)) == pytest.approx(exact, abs=0.02)
      exact_tanh = np.sum(weights * np.tanh(mu + nodes / np.sqrt(lam)))
      assert float(crae_nn.robust_tanh(jnp.float32(mu), lam)) == pytest.approx(exact_tanh,
                                                                              abs=0.04)
  assert crae_nn.kappa(math.inf) == 1.0
  with pytest.raises(ValueError, match="precision"):
    crae_nn.kappa(0.0)


# ----------------------------------------------------------------------------- beta-pooling


_pool_weights = jax.jit(crae_nn.beta_pooling_weights, static_argnums=(2, 3))


def _weights(t_enc, t_dec, w_enc, w_dec, a, b):
  return _pool_weights(jnp.asarray(t_enc), jnp.asarray(t_dec), w_enc, w_dec, jnp.float32(a),
                       jnp.float32(b))


def test_beta_pooling_weights_sum_to_one_and_a_equals_b_equals_one_averages():
  t_enc = np.zeros(20, np.int32)
  t_dec = np.zeros(20, np.int32)
  t_enc[:4], t_dec[:4] = [1, 3, 7, 2], [1, 3, 7, 5]  # Rows 4.. are empty titles.
  for a, b in ((1.0, 1.0), (0.4, 0.4), (400.0, 311.0), (10.0, 1.0), (31112.0, 40000.0)):
    w1, w2 = _weights(t_enc, t_dec, 20, 21, a, b)
    total = np.asarray(jnp.sum(w1, 1) + jnp.sum(w2, 1))
    np.testing.assert_allclose(total[:4], 1.0, atol=1e-5)
    assert np.all(total[4:] == 0.0)  # An empty title has nothing to pool.
    assert np.all(np.asarray(w1)[np.arange(20)[None, :] >= np.asarray(t_enc)[:, None]] == 0)
    assert np.all(np.asarray(w2)[np.arange(21)[None, :] >= np.asarray(t_dec)[:, None]] == 0)
  w1, w2 = _weights(t_enc, t_dec, 20, 21, 1.0, 1.0)
  for r in range(4):
    n = int(t_enc[r] + t_dec[r])
    np.testing.assert_allclose(w1[r, :int(t_enc[r])], 1.0 / n, rtol=1e-4)
    np.testing.assert_allclose(w2[r, :int(t_dec[r])], 1.0 / n, rtol=1e-4)


def test_beta_pooling_concentrates_on_the_bottleneck_for_large_a_below_b():
  # §3.3: "If a is set large enough and b > a the PDF will peak slightly to the left of
  # x = 0.5, which means that the last time step of the encoder RRN is directly used."
  # (§3.5's example: a = 9.8e7, b = 1e8.)  Mirrored (a > b), the first decoder state.
  t = jnp.arange(1, 21)
  w_enc, w_dec = _weights(t, t, 20, 21, 9.8e7, 1e8)
  last = np.asarray(w_enc)[np.arange(20), np.asarray(t) - 1]
  np.testing.assert_allclose(last, 1.0, atol=1e-4)
  w_enc, w_dec = _weights(t, t, 20, 21, 1e8, 9.8e7)
  np.testing.assert_allclose(np.asarray(w_dec)[:, 0], 1.0, atol=1e-4)
  # Table 1's best (a = 400, b = 311) puts its mass around the bottleneck, more on its right.
  w_enc, w_dec = _weights(t, t, 20, 21, 400.0, 311.0)
  assert float(w_enc[9, 9] + jnp.sum(w_dec[9, :3])) > 0.99  # T = 10.
  assert float(jnp.sum(w_dec[9])) > float(jnp.sum(w_enc[9]))


def test_network_with_a_peaked_beta_is_the_degenerate_gamma_tanh_theta(toy):
  _, _, _, params, _, aux = toy
  tokens, lengths = jnp.asarray(aux["tokens"][:16]), jnp.asarray(aux["lengths"][:16])
  peaked = crae_nn.CRAENet(n_words=S, word_dim=KW, latent=K, pooling="beta", pool_a=9.8e7,
                           pool_b=1e8)
  last = crae_nn.CRAENet(n_words=S, word_dim=KW, latent=K, pooling="last")  # γ = tanh(θ).
  batch = {"tokens": tokens, "lengths": lengths}
  np.testing.assert_allclose(crae._gamma_fn(peaked)(params, batch),
                             crae._gamma_fn(last)(params, batch), atol=1e-5)


_cdf_da = jax.jit(lambda x, a, b: jax.jvp(lambda a_: crae_nn.beta_cdf(x, a_, b), (a,),
                                          (jnp.ones_like(a),))[1])
_cdf_db = jax.jit(jax.grad(lambda b, x, a: jnp.sum(crae_nn.beta_cdf(x, a, b))))


def test_beta_cdf_derivatives_in_a_and_b():
  x = jnp.asarray([0.2, 0.45, 0.5, 0.7])
  for a, b in ((2.0, 3.0), (40.0, 31.0)):
    da = _cdf_da(x, jnp.float32(a), jnp.float32(b))
    h = 1e-5
    want = (ss.betainc(a + h, b, np.asarray(x, np.float64))
            - ss.betainc(a - h, b, np.asarray(x, np.float64))) / (2 * h)
    np.testing.assert_allclose(da, want, rtol=2e-2, atol=1e-4)
    g = _cdf_db(jnp.float32(b), x, jnp.float32(a))
    want_b = np.sum(ss.betainc(a, b + h, np.asarray(x, np.float64))
                    - ss.betainc(a, b - h, np.asarray(x, np.float64))) / (2 * h)
    assert float(g) == pytest.approx(want_b, rel=2e-2, abs=1e-4)


# ----------------------------------------------------------------------------- noise and titles


def test_wildcard_rate_is_honoured_and_padding_untouched():
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, S, (400, 30)), jnp.int32)
  lengths = jnp.asarray(rng.integers(0, 31, 400), jnp.int32)
  wildcard = crae_nn.special_ids(S)["wildcard"]
  out = np.asarray(crae_nn.wildcard_noise(jax.random.PRNGKey(3), tokens, lengths, 0.4, wildcard))
  real = np.arange(30)[None, :] < np.asarray(lengths)[:, None]
  hit = out == wildcard
  n = int(real.sum())
  rate = hit[real].mean()
  assert abs(rate - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n), (rate, n)  # 4 binomial sd.
  assert not hit[~real].any()
  np.testing.assert_array_equal(out[~hit], np.asarray(tokens)[~hit])


def test_word_dropping_keeps_order_and_rate():
  rng = np.random.default_rng(1)
  tokens = np.tile(np.arange(30, dtype=np.int32), (300, 1))
  lengths = rng.integers(0, 31, 300).astype(np.int32)
  out, new_len = crae_nn.drop_words(jax.random.PRNGKey(0), jnp.asarray(tokens),
                                    jnp.asarray(lengths), 0.4)
  out, new_len = np.asarray(out), np.asarray(new_len)
  for r in range(300):
    kept = out[r, :new_len[r]]
    assert np.all(np.diff(kept) > 0) and (kept.size == 0 or kept.max() < lengths[r])
  n = int(lengths.sum())
  assert abs(1 - new_len.sum() / n - 0.4) < 4 * math.sqrt(0.24 / n)


def test_decoder_io_is_teacher_forcing_with_end_marker():
  eos = 99
  words = jnp.asarray([[5, 6, 7], [8, 0, 0], [0, 0, 0]], jnp.int32)
  inputs, targets = crae_nn.decoder_io(words, jnp.asarray([3, 1, 0]), eos)
  np.testing.assert_array_equal(inputs, [[99, 5, 6, 7], [99, 8, 99, 99], [99, 99, 99, 99]])
  np.testing.assert_array_equal(targets, [[5, 6, 7, 99], [8, 99, 99, 99], [99, 99, 99, 99]])


def test_title_sequences_in_order_drop_or_unk():
  vocab = ["protein", "networks", "small", "world"]
  texts = ["The small world of Protein-protein networks.", "Nothing here", "World"]
  drop = titles_lib.title_sequences(texts, vocab)
  np.testing.assert_array_equal(drop, [[2, 3, 0, 0, 1], [-1] * 5, [3, -1, -1, -1, -1]])
  unk = titles_lib.title_sequences(texts, vocab, oov="unk", max_length=4)
  np.testing.assert_array_equal(unk, [[4, 2, 3, 4], [4, 4, -1, -1], [3, -1, -1, -1]])
  np.testing.assert_array_equal(titles_lib.sequence_lengths(drop), [5, 0, 1])
  assert titles_lib.as_lists(drop)[2] == [3]
  assert titles_lib.decode([2, 3, 4], vocab) == "small world <unk>"
  with pytest.raises(ValueError, match="oov"):
    titles_lib.title_sequences(texts, vocab, oov="keep")


# ----------------------------------------------------------------------------- the model




def test_block_step_is_exact_als_with_the_clean_gamma_as_prior(toy):
  model, train, titles, params, factors, aux = toy
  config = model.config
  new = model.block_step(params, factors, aux, None)
  lengths = titles_lib.sequence_lengths(titles)
  tokens = crae.model_tokens(config, titles)
  gamma = np.concatenate([np.asarray(crae._gamma_fn(crae.network(config))(
      params, {"tokens": jnp.asarray(tokens[s:s + 16]), "lengths": jnp.asarray(lengths[s:s + 16])}),
      np.float64)
      for s in (0, 14)])  # Items 0..15, 14..29: the γ of clean titles, 16 at a time.
  gamma = np.concatenate([gamma[:16], gamma[18:]])
  np.testing.assert_allclose(new["gamma"], gamma, rtol=1e-4, atol=1e-5)
  check_prior_sweep(factors, new, train, config, gamma)


def test_cold_item_is_scored_from_its_title_alone(toy):
  model, train, titles, params, factors, aux = toy
  cold = 0
  assert train[:, cold].nnz == 0 and train[:, 2].nnz > 0
  f1 = model.block_step(params, factors, aux, None)
  vecs = np.asarray(model.item_vectors(params, f1))
  np.testing.assert_array_equal(vecs[cold], np.asarray(f1["gamma"][cold]))
  np.testing.assert_array_equal(vecs[2], np.asarray(f1["V"][2]))
  inputs = jnp.asarray(train[:6].toarray())
  s1 = np.asarray(model.score(params, f1, inputs))
  users = np.linalg.lstsq(vecs, s1.T, rcond=None)[0].T  # u_i recovered from all items' scores.
  np.testing.assert_allclose(s1[:, cold], users @ vecs[cold], rtol=1e-3, atol=1e-5)
  changed = titles.copy()
  changed[cold] = titles[5]  # Another title: the cold item's γ and scores follow it.
  f2 = model.block_step(params, factors, model.prepare(train, changed), None)
  s2 = np.asarray(model.score(params, f2, inputs))
  assert np.max(np.abs(s2[:, cold] - s1[:, cold])) > 1e-4
  np.testing.assert_allclose(np.asarray(f2["gamma"][cold]), np.asarray(f1["gamma"][5]),
                             atol=1e-6)


def _reference_loss(config, params, factors, batch, key, prior_weight=1.0):
  """`model.loss`'s value written out step by step, as the DRAE was first implemented.

  One cell step at a time with the input product inside it, the output softmax
  per decoder step, beta-pooling weights from scipy's betainc: an independent
  check of the batched formulation (input products hoisted out of the scan,
  one [B·T, K_W] x [K_W, S + 2] output product, tabulated Beta CDF).
  """
  p = params["params"]
  k_s, k_t = crae_nn.kappa(config.precision), crae_nn.kappa(config.precision / 4)
  eos = config.vocab_size + 1
  tokens, lengths = batch["tokens"], batch["lengths"]
  enc_tokens, enc_lengths = crae.corrupt(config, key, tokens, lengths)
  emb = p["embed"]["embedding"]
  dense = lambda d, x: x @ d["kernel"] + (d["bias"][None, :] if "bias" in d else 0.0)
  sig = lambda t: jax.nn.sigmoid(k_s * t)

  def run(c, h, s, toks, lens):
    states = []
    for t in range(toks.shape[1]):
      z = dense(c["input"], emb[toks[:, t]]) + dense(c["recurrent"], h)
      a, i, f, o = jnp.split(z, 4, axis=-1)
      g = sig(a) if config.candidate == "sigmoid" else jnp.tanh(k_t * a)
      s_new = sig(f) * s + sig(i) * g
      h_new = jnp.tanh(k_t * s_new) * sig(o)
      real = (t < lens)[:, None]
      h, s = jnp.where(real, h_new, h), jnp.where(real, s_new, s)
      states.append(jnp.concatenate([h, s], axis=-1))
    return h, s, states

  n_rows, width = tokens.shape
  zero = jnp.zeros((n_rows, config.word_dim))
  h, s, enc_states = run(p["encoder"], zero, zero, enc_tokens, enc_lengths)
  theta = dense(p["compress"], jnp.concatenate([h, s], axis=-1))
  hs0 = dense(p["decompress"], jnp.tanh(k_t * theta))
  lens = np.asarray(lengths)
  dec_in = np.full((n_rows, width + 1), eos, np.int32)
  targets = np.full((n_rows, width + 1), eos, np.int32)
  for r in range(n_rows):
    dec_in[r, 1:lens[r] + 1] = np.asarray(tokens)[r, :lens[r]]
    targets[r, :lens[r]] = np.asarray(tokens)[r, :lens[r]]
  _, _, dec_states = run(p["decoder"], hs0[:, :config.word_dim], hs0[:, config.word_dim:],
                         jnp.asarray(dec_in), lengths + 1)
  if config.pooling == "beta":
    t_enc = np.asarray(enc_lengths)
    w = np.zeros((n_rows, 2 * width + 1))  # Encoder states, then decoder states.
    for r in range(n_rows):
      n = max(t_enc[r] + lens[r], 1)
      mass = np.diff(ss.betainc(config.pool_a, config.pool_b, np.arange(n + 1) / n))
      w[r, :t_enc[r]] = mass[:t_enc[r]]
      w[r, width:width + lens[r]] = mass[t_enc[r]:t_enc[r] + lens[r]]
    pooled = sum(jnp.asarray(w[:, q:q + 1], jnp.float32) * st
                 for q, st in enumerate(enc_states + dec_states))
    gamma = jnp.tanh(dense(p["compress"], pooled))
  else:
    gamma = jnp.tanh(theta)
  nll = 0.0
  for t, st in enumerate(dec_states):
    logp = jax.nn.log_softmax(dense(p["output"], st[:, :config.word_dim]), axis=-1)
    picked = logp[np.arange(n_rows), targets[:, t]]
    nll = nll - jnp.where(t <= lengths, picked, 0.0)
  v = factors["V"][np.maximum(np.asarray(batch["index"]), 0)]
  prior = 0.5 * config.reg_v * jnp.sum(jnp.square(v - gamma), axis=-1)
  m = jnp.asarray(batch["mask"], jnp.float32)
  decay = 0.5 * config.reg_w / factors["V"].shape[0] * sum(
      jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params))
  return jnp.sum(m * (nll + prior_weight * prior)) / jnp.maximum(jnp.sum(m), 1.0) + decay


@pytest.mark.parametrize("kw", [{}, dict(noise="drop", candidate="tanh", pool_a=2.0, pool_b=3.0),
                                dict(pooling="last")])
def test_loss_and_gradients_match_a_step_by_step_reference(kw):
  model, train, titles, params, factors, aux = _setup(**kw)
  config = model.config
  factors = {**factors, "V": jnp.asarray(np.random.default_rng(0).normal(
      size=factors["V"].shape), jnp.float32)}
  loss_grad = jax.jit(jax.value_and_grad(
      lambda p, b, k: model.loss(p, factors, b, k, phase(model, 1))[0]))
  batches = list(epoch_batches(model, train, aux, 16, 1))  # 16 items, then 14 and 2 padding rows.
  assert not batches[-1]["mask"].all()
  last = batches[-1]
  # The partial batch padded to 16 columns (the noise draws follow the width, the
  # reference's too); the default configuration also checks a full and the unpadded batch.
  cases = [(len(batches) - 1, {**last, "tokens": np.pad(
      last["tokens"], ((0, 0), (0, 16 - last["tokens"].shape[1])))})]
  if not kw:
    cases += [(0, batches[0]), (len(batches) - 1, last)]
  for i, b in cases:
    key = jax.random.PRNGKey(7 + i)
    want, want_grad = jax.value_and_grad(
        lambda p: _reference_loss(config, p, factors, b, key))(params)
    got, got_grad = loss_grad(params, b, key)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6),
                 got_grad, want_grad)


def test_tabulated_beta_pooling_weights_match_the_traced_betainc():
  t_enc = np.asarray([1, 3, 7, 2, 0, 8], np.int32)
  t_dec = np.asarray([1, 3, 7, 5, 0, 8], np.int32)
  for a, b in ((1.0, 1.0), (0.4, 0.4), (400.0, 311.0), (10.0, 1.0), (9.8e7, 1e8)):
    exact = np.zeros((6, 17))  # float64: 8 encoder columns, then 9 decoder columns.
    for r in range(6):
      n = max(t_enc[r] + t_dec[r], 1)
      mass = np.diff(ss.betainc(a, b, np.arange(n + 1) / n))
      exact[r, :t_enc[r]] = mass[:t_enc[r]]
      exact[r, 8:8 + t_dec[r]] = mass[t_enc[r]:]
    table = crae_nn.beta_pooling_weights(jnp.asarray(t_enc), jnp.asarray(t_dec), 8, 9, a, b)
    np.testing.assert_allclose(np.concatenate(table, axis=1), exact, atol=1e-6)
    traced = _weights(t_enc, t_dec, 8, 9, a, b)  # float32 betainc: ~1e-4 off at a, b ~ 400.
    np.testing.assert_allclose(np.concatenate(traced, axis=1), exact, atol=2e-4)


def test_loss_gradients_match_finite_differences():
  with jax.enable_x64(True):  # Learned beta-pooling: dF/da, dF/db are checked too.
    model, train, titles, params, factors, aux = _setup(learn_pool=True, pool_a=3.0, pool_b=2.0)
    assert {"log_a", "log_b"} <= set(params["params"])
    params = jax.tree.map(lambda t: jnp.asarray(t, jnp.float64), params)
    factors = {**factors, "V": jnp.asarray(np.random.default_rng(0).normal(
        size=factors["V"].shape), jnp.float64)}
    batch = next(epoch_batches(model, train, aux, 6, 1))
    key = jax.random.PRNGKey(4)
    f = jax.jit(lambda p: model.loss(p, factors, batch, key, phase(model, 1))[0])
    check_grads(f, (params,), order=1, modes=("rev",), atol=1e-4, rtol=1e-4)


def test_alternation_lowers_the_joint_objective(toy):
  model, train, titles, params, factors, aux = toy
  config = model.config
  key = jax.random.PRNGKey(11)
  objective = lambda p, f: crae.map_objective(config, p, f, aux, key)["total"]
  opt_state = model.optimizer.init(params)

  step = train_step(model)

  factors = model.block_step(params, factors, aux, None)
  history = [objective(params, factors)]
  for epoch in range(1, 6):
    before_als = objective(params, factors)
    factors = model.block_step(params, factors, aux, None)
    assert objective(params, factors) <= before_als + 1e-6 * abs(before_als)  # Exact block step.
    for i, batch in enumerate(epoch_batches(model, train, aux, 8, epoch)):
      batch = {**batch, "tokens": batch["tokens"][:, :8]}  # One compiled width.
      params, opt_state = step(params, opt_state, factors, batch,
                               jax.random.PRNGKey(100 * epoch + i), phase(model, epoch, i))
    history.append(objective(params, factors))
  assert all(b < a for a, b in zip(history, history[1:])), history
  assert history[-1] < 0.92 * history[0], history


def test_generation_and_nearest_neighbour_titles(toy):
  _, train, titles, params, factors, _ = toy
  model = crae.make(_config(hidden_content_fraction=0.2))  # The same network as `toy`'s.
  aux = model.prepare(train, titles)
  assert aux["hidden"].sum() == 6
  batches = list(epoch_batches(model, train, aux, 8, 1))
  seen = np.concatenate([b["index"][b["mask"]] for b in batches])
  assert sorted(seen) == sorted(np.flatnonzero(~aux["hidden"]))  # Hidden titles never train.
  f = model.block_step(params, factors, aux, None)
  assert np.all(np.asarray(f["gamma"])[aux["hidden"]] == 0)
  out = crae.generate_titles(model.config, params, np.asarray(f["V"][:5]), max_length=6)
  assert out.shape == (5, 6) and out.dtype == np.int32
  for row in out:
    ended = np.flatnonzero(row < 0)
    assert ended.size == 0 or np.all(row[ended[0]:] == -1)
    assert np.all(row[row >= 0] <= S)  # Words or ⟨unk⟩, never ⟨$⟩ or ⟨wildcard⟩.
  keys = np.eye(3)
  np.testing.assert_array_equal(
      crae_titles.nearest_neighbour_titles(np.asarray([[0.1, 0.9, 0.0], [2.0, 0.0, 0.1]]), keys,
                                    np.asarray([[1, -1], [2, 3], [4, -1]])), [[2, 3], [1, -1]])
  # A query shrunk towards 0: Euclidean picks the smallest key, cosine the same direction.
  small = np.asarray([[0.01, 0.0, 0.0]])
  keys2, titles2 = np.asarray([[5.0, 0.0, 0.0], [0.0, 0.02, 0.0]]), np.asarray([[1], [2]])
  assert crae_titles.nearest_neighbour_titles(small, keys2, titles2).tolist() == [[2]]
  assert crae_titles.nearest_neighbour_titles(small, keys2, titles2, "cosine").tolist() == [[1]]
  with pytest.raises(ValueError, match="metric"):
    crae_titles.nearest_neighbour_titles(small, keys2, titles2, "manhattan")
  for method in ("decoder", "nearest", "nearest_cosine"):
    res = crae_titles.hidden_item_titles(model.config, params, f, aux, method=method)
    want = np.flatnonzero(aux["hidden"] & (aux["lengths"] > 0))
    np.testing.assert_array_equal(res["items"], want)
    assert [r[0] for r in res["references"]] == titles_lib.as_lists(titles[res["items"]])
    score = corpus_bleu(res["candidates"], res["references"], smoothing="floor")
    assert 0.0 <= score["bleu"] <= 1.0
  nearest = crae_titles.hidden_item_titles(model.config, params, f, aux, method="nearest")
  visible = titles_lib.as_lists(titles[~aux["hidden"]])
  assert all(c in visible for c in nearest["candidates"])  # Borrowed from titles training saw.
  # decoder_rescaled reads only the direction of a hidden v_j: shrinking them changes nothing.
  shrunk = {**f, "V": jnp.where(jnp.asarray(aux["hidden"])[:, None], 1e-3 * f["V"], f["V"])}
  rescaled = [crae_titles.hidden_item_titles(model.config, params, g, aux, method="decoder_rescaled")
              for g in (f, shrunk)]
  assert rescaled[0]["candidates"] == rescaled[1]["candidates"]
  with pytest.raises(ValueError, match="decoder_rescaled"):
    crae_titles.hidden_item_titles(model.config, params, f, aux, method="beam")
  # The decoder's ceiling and how well γ_j matches its input: beta-pooled γ_j is another
  # vector than E[tanh θ_j]; the degenerate pooling="last" (γ_j = tanh θ_j) matches it.
  recon = crae_titles.visible_title_reconstruction(model.config, params, aux, n_items=10)
  assert len(recon["candidates"]) == 10 and not aux["hidden"][recon["items"]].any()
  last = crae_titles.visible_title_reconstruction(_config(hidden_content_fraction=0.2, pooling="last"),
                                           params, aux, n_items=10)
  assert last["cosine_gamma_decoder_input"] > 0.99 > recon["cosine_gamma_decoder_input"]


def test_decoder_regressed_maps_ratings_only_factors_into_the_decoder_space(toy):
  _, train, titles, params, factors, _ = toy
  model = crae.make(_config(hidden_content_fraction=0.2))
  aux = model.prepare(train, titles)
  f = model.block_step(params, factors, aux, None)
  x = crae_titles.ratings_only_factors(model.config, f, aux)
  hidden = aux["hidden"]
  # A hidden item's v_j already has prior mean 0: re-solving it from the ratings gives it back.
  np.testing.assert_allclose(x[hidden], np.asarray(f["V"])[hidden], rtol=1e-4, atol=1e-5)
  # The ratings-only solve against brute-force weighted ridge (a = 1, b = 0.01, λ_v, prior 0).
  u, dense = np.asarray(f["U"], np.float64), train.toarray()
  j = int(np.flatnonzero(~hidden & (dense.sum(0) > 0))[0])
  c = np.where(dense[:, j] > 0, model.config.a, model.config.b)
  want = np.linalg.solve(u.T @ (c[:, None] * u) + model.config.reg_v * np.eye(K),
                         u.T @ (c * dense[:, j]))
  np.testing.assert_allclose(x[j], want, rtol=1e-3, atol=1e-4)
  # Ridge with an unpenalised bias against numpy on the augmented least-squares system.
  rng = np.random.default_rng(0)
  xs, ys = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
  w = crae_titles.fit_ridge(xs, ys, 2.0)
  aug = np.concatenate([np.concatenate([xs, np.ones((50, 1))], 1),
                        np.sqrt(2.0) * np.eye(4)[:3]])
  np.testing.assert_allclose(w, np.linalg.lstsq(aug, np.concatenate([ys, np.zeros((3, 2))]),
                                                rcond=None)[0], atol=1e-10)
  # A noiseless linear relation is recovered with the smallest λ of the grid.
  true = rng.normal(size=(4, 2))
  w, lam, err = crae_titles.ratings_to_codes(xs, np.concatenate([xs, np.ones((50, 1))], 1) @ true)
  assert lam == min(crae_titles.RIDGE_GRID) and err < 1e-4
  np.testing.assert_allclose(w, true, atol=1e-2)
  res = crae_titles.hidden_item_titles(model.config, params, f, aux, method="decoder_regressed")
  np.testing.assert_array_equal(res["items"], np.flatnonzero(hidden & (aux["lengths"] > 0)))


def test_a_tiny_autoencoder_learns_to_reproduce_its_titles():
  config = _config()  # Trained here on clean titles (the decoder does not read the noise).
  net = crae.network(config)
  titles = jnp.asarray([[0, 1, 2, 3], [4, 5, 6, 0], [7, 8, 0, 0], [9, 10, 11, 12]], jnp.int32)
  lengths = jnp.asarray([4, 3, 2, 4], jnp.int32)
  params = jax.jit(net.init)(jax.random.PRNGKey(0), titles, lengths, titles, lengths)
  opt = optax.adam(0.02)
  opt_state = opt.init(params)

  @jax.jit
  def step(p, o):
    def loss(q):
      out = net.apply(q, titles, lengths, titles, lengths)
      return jnp.mean(crae_nn.sequence_nll(out["logits"], out["targets"], out["target_mask"]))
    g = jax.grad(loss)(p)
    u, o = opt.update(g, o, p)
    return jax.tree.map(jnp.add, p, u), o

  for _ in range(200):
    params, opt_state = step(params, opt_state)
  theta = net.apply(params, titles, lengths, method=crae_nn.CRAENet.encode)[0]
  z = crae_nn.robust_tanh(theta, config.precision)  # E[tanh(θ)], the decoder's start in training.
  out = np.asarray(crae.generate_titles(config, params, z, max_length=6))
  want = np.full((4, 6), -1)
  want[:, :4] = np.where(np.arange(4)[None, :] < np.asarray(lengths)[:, None], titles, -1)
  np.testing.assert_array_equal(out, want)


def test_end_to_end_tiny_run_through_the_runner(tmp_path):
  clicks, titles = _data(seed=2, n_users=60, n_items=30, cold=())
  split = keep_p_split(clicks, 2, seed=0)
  # The degenerate model (a smaller graph to compile; the default one runs in the tests above).
  model = get_model("crae", {"dim": K, "word_dim": KW, "vocab_size": S, "learning_rate": 1e-2,
                             "pooling": "last", "noise": "drop"})
  config = TrainConfig(epochs=2, batch_size=8, seed=1, progress=False, n_devices=1,
                       checkpoint=False, metrics=("recall@10", "recall_cdl@10"))
  res = train_and_evaluate(model, split, config, tmp_path / "run", side={"item_titles": titles},
                           log=lambda s: None)
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2]
  assert set(records[0]["train"]) == {"loss", "neg_log_lik", "prior", "words"}
  assert 0.0 <= res["test"]["recall_cdl@10"] <= 1.0


def test_length_bucketed_batches_cover_every_item_once_with_similar_lengths():
  rng = np.random.default_rng(0)
  lengths = rng.integers(0, 21, 1000)
  order = rng.permutation(1000)
  out = item_batches.window_sorted_order(order, lengths, 32, 10, seed=0, epoch=1)
  assert sorted(out.tolist()) == list(range(1000))
  spread = [np.ptp(lengths[out[s:s + 32]]) for s in range(0, 992, 32)]
  # Windows of 320 titles sorted by length: tight batches (but the last, 40-title window's).
  assert np.median(spread) <= 2 and np.mean(np.asarray(spread) <= 3) > 0.9, spread
  assert not np.array_equal(out, item_batches.window_sorted_order(order, lengths, 32, 10, 0, 2))


def test_config_errors_name_the_field():
  for kw, field in ((dict(noise="blank"), "noise"), (dict(noise_rate=1.0), "noise_rate"),
                    (dict(pooling="max"), "pooling"), (dict(pool_a=0.0), "pool_a"),
                    (dict(candidate="relu"), "candidate"), (dict(precision=0.0), "precision"),
                    (dict(hidden_content_fraction=1.0), "hidden_content_fraction"),
                    (dict(bucket_window=0), "bucket_window")):
    with pytest.raises(ValueError, match=field):
      crae.make(_config(**kw))
  model = crae.make(_config())
  train, titles = _data()
  with pytest.raises(ValueError, match="rows for"):
    model.prepare(train, titles[:-1])
  bad = titles.copy()
  bad[3, 0] = S + 1
  with pytest.raises(ValueError, match="vocab_size"):
    model.prepare(train, bad)
  gap = titles.copy()
  gap[2, :3] = [1, -1, 2]
  with pytest.raises(ValueError, match="padding"):
    model.prepare(train, gap)
