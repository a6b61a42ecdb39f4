"""Collaborative RNN: the GRU cell against numpy, window carrying, per-user gradients, the runner step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recjax.data import sequences
from recjax.models import crnn
from recjax.nn import full_softmax, recurrent


_update = jax.jit(crnn.update, static_argnums=4)  # As the runner jits it.


def _sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def test_gru_cell_matches_numpy():
  rng = np.random.default_rng(0)
  b, d = 3, 4
  w = rng.normal(size=(b, d, 3 * d)).astype(np.float32)
  h = rng.normal(size=(b, d)).astype(np.float32)
  x = rng.normal(size=(b, 3 * d)).astype(np.float32)
  got = np.asarray(recurrent.gru_step(jnp.asarray(w), jnp.asarray(h), jnp.asarray(x)))
  for i in range(b):
    w_z, w_r, w_h = w[i][:, :d], w[i][:, d:2 * d], w[i][:, 2 * d:]
    z = _sigmoid(h[i] @ w_z + x[i, :d])  # Eq. 21
    r = _sigmoid(h[i] @ w_r + x[i, d:2 * d])  # Eq. 22
    h_tilde = np.tanh((r * h[i]) @ w_h + x[i, 2 * d:])  # Eq. 23
    np.testing.assert_allclose(got[i], (1 - z) * h[i] + z * h_tilde, rtol=1e-5, atol=1e-6)
  # A shared [D, 3D] matrix equals the same matrix gathered per row.
  shared = recurrent.gru_step(jnp.asarray(w[0]), jnp.asarray(h), jnp.asarray(x))
  tiled = recurrent.gru_step(jnp.asarray(np.stack([w[0]] * b)), jnp.asarray(h), jnp.asarray(x))
  np.testing.assert_allclose(shared, tiled, rtol=1e-5, atol=1e-6)


def _toy_pairs(n_users=5, n_items=9, seed=0, window=4):
  rng = np.random.default_rng(seed)
  seqs = [rng.integers(0, n_items, size=n) for n in rng.integers(3, 15, size=n_users)]
  return sequences.next_item_pairs(seqs, [np.zeros(0, np.int64)] * n_users, multiple=window)


def _batch(pairs, users):
  return {"users": np.asarray(users, np.int32), "inputs": pairs["inputs"][users],
          "targets": pairs["targets"][users], "events": pairs["mask"][users]}


def test_carried_state_equals_untruncated_forward():
  config = crnn.Config(dim=6, window=4)
  pairs = _toy_pairs(window=4)
  params = crnn.init(jax.random.key(0), 5, 9, config)
  batch = _batch(pairs, [0, 1, 2, 3, 4])
  windowed = crnn.log_probs(params, batch, config)
  whole = crnn.log_probs(params, batch, dataclasses.replace(config, window=64))
  assert pairs["inputs"].shape[1] > 4  # really several windows.
  np.testing.assert_allclose(windowed, whole, rtol=1e-5, atol=1e-5)
  assert np.all(windowed[pairs["mask"] == 0] == 0)
  # Asked for some positions only ("scored", as the sequence protocol passes the tails), the
  # softmax runs there alone: the same values there, 0 elsewhere.
  pick = (pairs["mask"] > 0) & (np.arange(pairs["mask"].shape[1]) % 3 == 1)
  scored = crnn.log_probs(params, {**batch, "scored": pick.astype(np.float32)}, config)
  np.testing.assert_allclose(scored[pick], windowed[pick], rtol=1e-6)
  assert np.all(scored[~pick] == 0) and np.all(windowed[pick] < 0)


def test_user_weights_get_gradient_only_from_their_events():
  config = crnn.Config(dim=5, window=8)
  params = crnn.init(jax.random.key(1), 6, 9, config)
  rng = np.random.default_rng(2)
  ids = jnp.array([4, 1, 2], jnp.int32)
  inputs = jnp.asarray(rng.integers(0, 9, (3, 8)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, 9, (3, 8)), jnp.int32)
  mask = jnp.ones((3, 8))
  h0 = jnp.zeros((3, 5))
  grad = jax.grad(crnn.window_nll_sum)(params, ids, h0, inputs, targets, mask, config)
  g = np.asarray(grad["user"]["w_h"])
  assert np.all(g[[0, 3, 5]] == 0)
  assert np.all(np.abs(g[[4, 1, 2]]).sum(axis=(1, 2)) > 0)
  # Changing the other users' events leaves user 4's gradient unchanged.
  other_t = targets.at[1:].set((targets[1:] + 3) % 9)
  other_i = inputs.at[1:].set((inputs[1:] + 5) % 9)
  grad2 = jax.grad(crnn.window_nll_sum)(params, ids, h0, other_i, other_t, mask, config)
  np.testing.assert_allclose(grad2["user"]["w_h"][4], g[4], rtol=1e-5, atol=1e-7)


def _window(users, x, reset, events=None):
  users = jnp.asarray(users, jnp.int32)
  events = jnp.ones(x.shape, jnp.float32) if events is None else events
  return {"users": users, "inputs": x, "targets": (x + 1) % 7, "events": events,
          "reset": jnp.full(users.shape, reset), "mask": users < 4}


def test_update_moves_only_batch_users_and_carries_their_state():
  config = crnn.Config(dim=4, window=4, dropout=0.0)
  params = crnn.init(jax.random.key(3), 4, 7, config)
  before = np.asarray(params["user"]["w_h"]).copy()
  opt = crnn.make_optimizer(config).init(params)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 7, (2, 4)), jnp.int32)
  first = _window([2, 4], x, True)  # 4 = padding slot (out of range).
  h_first = crnn.forward_nll(params["shared"], params["user"]["w_h"][jnp.array([2, 2])],
                             jnp.zeros((2, 4)), x, (x + 1) % 7, jnp.ones((2, 4)), config)[1]
  params, opt, sums, n = _update(params, opt, first, jax.random.key(0), config)
  after = np.asarray(params["user"]["w_h"])
  assert not np.allclose(after[2], before[2])
  np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
  assert float(n) == 8.0
  hidden = np.asarray(params["carry"]["hidden"])
  np.testing.assert_allclose(hidden[2], h_first[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(hidden[[0, 1, 3]], 0.0)
  # The next window of the batch starts from user 2's carried state, not from h0.
  nll, _ = crnn.forward_nll(params["shared"], params["user"]["w_h"][jnp.array([2, 2])],
                            jnp.asarray(hidden[[2, 2]]), x, (x + 1) % 7, jnp.ones((2, 4)), config)
  only_user_2 = jnp.array([[1.0] * 4, [0.0] * 4])
  _, _, sums2, n2 = _update(params, opt, _window([2, 4], x, False, only_user_2),
                                jax.random.key(1), config)
  assert float(n2) == 4.0
  np.testing.assert_allclose(float(sums2["loss"]), float(nll[0].sum()), rtol=1e-5)


def test_window_slices_trim_only_the_last_window():
  assert sequences.window_slices(0, 128) == [slice(0, 8)]
  assert sequences.window_slices(5, 128) == [slice(0, 8)]
  assert sequences.window_slices(9, 128) == [slice(0, 16)]
  assert sequences.window_slices(128, 128) == [slice(0, 128)]
  assert sequences.window_slices(129, 128) == [slice(0, 128), slice(128, 136)]
  assert sequences.window_slices(300, 128) == [slice(0, 128), slice(128, 256), slice(256, 320)]
  assert sequences.window_slices(20, 12) == [slice(0, 12), slice(12, 20)]


def _epoch(params, opt, pairs, config, batch_size, full_width):
  """One epoch of `crnn.update` over `SequenceWindows`; `full_width`: untrimmed windows."""
  source = sequences.SequenceWindows(window=config.window)
  _, batches = source.epoch(None, {"pairs": pairs}, batch_size, 1, 0)
  key = jax.random.key(5)
  for step, b in enumerate(batches):
    if full_width and b["inputs"].shape[1] < config.window:
      b = {k: (sequences.columns(v, slice(0, config.window)) if np.ndim(v) == 2 else v)
           for k, v in b.items()}
    b = {k: jnp.asarray(v) for k, v in b.items()}
    params, opt, _, _ = _update(params, opt, b, jax.random.fold_in(key, step), config)
  return params


def test_trimmed_windows_train_like_full_windows():
  # Without dropout, cutting padding columns off the last window changes nothing.
  config = crnn.Config(dim=6, window=32, dropout=0.0, learning_rate=1e-2)
  rng = np.random.default_rng(4)
  seqs = [rng.integers(0, 11, size=n) for n in (3, 40, 7, 12, 70, 5, 9)]
  pairs = sequences.next_item_pairs(seqs, [np.zeros(0, np.int64)] * 7, multiple=32)
  init = crnn.init(jax.random.key(0), 7, 11, config)
  copy = lambda t: jax.tree.map(jnp.array, t)
  opt = crnn.make_optimizer(config).init(init)
  trimmed = _epoch(copy(init), copy(opt), pairs, config, 3, full_width=False)
  full = _epoch(copy(init), copy(opt), pairs, config, 3, full_width=True)
  for a, b in zip(jax.tree.leaves(trimmed), jax.tree.leaves(full)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_sequence_windows_cover_every_event_once():
  rng = np.random.default_rng(1)
  seqs = [rng.integers(0, 9, size=n) for n in (2, 30, 5, 17, 9)]
  pairs = sequences.next_item_pairs(seqs, [np.zeros(0, np.int64)] * 5, multiple=8)
  source = sequences.SequenceWindows(window=8)
  n, batches = source.epoch(None, {"pairs": pairs}, 2, 3, 0)
  batches = list(batches)
  assert n == len(batches)
  seen = {u: [] for u in range(5)}
  for b in batches:
    assert b["inputs"].shape[1] in (8,) and b["users"].shape == (2,)
    for row, u in enumerate(b["users"]):
      if u < 5:
        if b["reset"][row]:
          assert not seen[u]  # the state resets only at a user's first window.
        seen[u] += list(b["targets"][row][b["events"][row] > 0])
      else:
        assert not b["mask"][row] and b["events"][row].sum() == 0
  for u, s in enumerate(seqs):
    assert seen[u] == list(s[1:])
  # The order is a function of (seed, epoch): the same epoch gives the same batches.
  again = list(source.epoch(None, {"pairs": pairs}, 2, 3, 0)[1])
  assert all(np.array_equal(a["users"], b["users"]) for a, b in zip(batches, again))


def _reference_update(params, nu, batch, key, config):
  """The step as plain autodiff + dense optax.rmsprop (the pre-issue-19 arithmetic), for comparison."""
  users, inputs, targets, mask = batch["users"], batch["inputs"], batch["targets"], batch["events"]
  n_users = params["carry"]["hidden"].shape[0]
  h0 = jnp.where(batch["reset"][:, None], config.h0,
                 params["carry"]["hidden"].at[users].get(mode="clip"))
  k_drop, k_samp = jax.random.split(key)
  samples = (jax.random.randint(k_samp, (config.sampled,), 0, params["shared"]["w_x"].shape[0])
             if config.sampled else None)
  rows = params["user"]["w_h"].at[users].get(mode="clip")

  def loss(shared, rows):
    nll, h_last = crnn.forward_nll(shared, rows, h0, inputs, targets, mask, config,
                                   dropout_key=k_drop, samples=samples)
    return nll.sum() / jnp.maximum(mask.sum(), 1.0), h_last

  (g_shared, g_rows), h_last = jax.grad(loss, argnums=(0, 1), has_aux=True)(params["shared"], rows)
  rms = optax.rmsprop(config.learning_rate, decay=config.decay, eps=config.eps)
  updates, nu["shared"] = rms.update(g_shared, nu["shared"])
  ids = jnp.where((mask.sum(1) > 0) & (users < n_users), users, n_users)
  nu_rows = config.decay * nu["user"].at[ids].get(mode="clip") + (1 - config.decay) * g_rows ** 2
  new_rows = rows - config.learning_rate * g_rows / (jnp.sqrt(nu_rows) + config.eps)
  nu["user"] = nu["user"].at[ids].set(nu_rows, mode="drop")
  return {"shared": optax.apply_updates(params["shared"], updates),
          "user": {"w_h": params["user"]["w_h"].at[ids].set(new_rows, mode="drop")},
          "carry": {"hidden": params["carry"]["hidden"].at[ids].set(h_last, mode="drop")}}, nu


@pytest.mark.parametrize("sampled", [0, 5])
def test_update_equals_autodiff_and_dense_rmsprop(monkeypatch, sampled):
  # Item chunks of 4 over 13 items (the last chunk overlaps the one before), windows that leave
  # most input rows untouched for several steps (their ν decays lazily), padding slots.
  monkeypatch.setattr(full_softmax, "CHUNK", 4)
  config = crnn.Config(dim=4, window=8, sampled=sampled, learning_rate=2e-2)
  rng = np.random.default_rng(7)
  seqs = [rng.integers(0, 13, size=n) for n in (3, 11, 6, 20, 2, 9)]
  pairs = sequences.next_item_pairs(seqs, [np.zeros(0, np.int64)] * 6, multiple=8)
  params = crnn.init(jax.random.key(2), 6, 13, config)
  opt = crnn.make_optimizer(config).init(params)
  ref, nu = params, {"shared": optax.rmsprop(1.0).init(params["shared"]),
                     "user": jnp.zeros_like(params["user"]["w_h"])}
  update = jax.jit(crnn.update, static_argnums=4)  # Not donating: `ref` shares the arrays.
  reference = jax.jit(_reference_update, static_argnums=4)
  _, batches = sequences.SequenceWindows(window=8).epoch(None, {"pairs": pairs}, 4, 0, 0)
  for k, b in enumerate(list(batches) * 2):
    b = {k_: jnp.asarray(v) for k_, v in b.items()}
    params, opt, sums, _ = update(params, opt, b, jax.random.key(k), config)
    ref, nu = reference(ref, nu, b, jax.random.key(k), config)
  for a, r in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, r, rtol=2e-5, atol=1e-6)
  # The lazily stored ν of w_x, decayed to the current step, is optax's.
  stale = opt["step"] - opt["x_seen"]
  lazy = opt["shared"]["w_x"] * config.decay ** np.asarray(stale, np.float64)[:, None]
  assert np.any(np.asarray(stale) > 0)
  np.testing.assert_allclose(lazy, nu["shared"][0].nu["w_x"], rtol=1e-4, atol=1e-12)


def test_packed_softmax_layer_skips_zero_weight_rows():
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 16))
  weight = jnp.asarray(np.where(rng.random(16) < 0.3, 0.25, 0.0), jnp.float32)  # <= 4 rows used.
  w = jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)
  kw = dict(learning_rate=0.1, decay=0.9, eps=1e-6, chunk=3)
  full = full_softmax.nll_and_rmsprop(h, y, weight, w, jnp.ones_like(w), **kw)
  packed = full_softmax.nll_and_rmsprop_packed(h, y, weight, w, jnp.ones_like(w), **kw)
  logits = np.asarray(h) @ np.asarray(w).T
  nll = np.log(np.exp(logits).sum(1)) - logits[np.arange(16), np.asarray(y)]
  np.testing.assert_allclose(full[0], nll, rtol=1e-5)
  np.testing.assert_allclose(packed[0], np.where(np.asarray(weight) > 0, nll, 0), rtol=1e-5)
  for a, b in zip(full[1:], packed[1:]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

