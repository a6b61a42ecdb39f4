"""Collaborative RNN: the GRU cell against numpy, window carrying, per-user gradients, the runner step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from recjax.data import sequences
from recjax.models import crnn
from recjax.nn import recurrent


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
