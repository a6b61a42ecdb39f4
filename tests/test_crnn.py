"""Collaborative RNN: the GRU cell against numpy, window carrying, per-user gradients, training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from recjax.data import sequences
from recjax.eval import sequence as seq_eval
from recjax.models import crnn
from recjax.nn import recurrent


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


def test_carried_state_equals_untruncated_forward():
  config = crnn.Config(dim=6, window=4, batch_users=3)
  pairs = _toy_pairs(window=4)
  params = crnn.init(jax.random.key(0), 5, 9, config)
  windowed = crnn.score_pairs(params, pairs, config)
  long = dataclasses.replace(config, window=pairs["inputs"].shape[1])
  whole = crnn.score_pairs(params, pairs, long)
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


def test_train_step_moves_only_batch_users():
  config = crnn.Config(dim=4, window=4, batch_users=2, dropout=0.0)
  params = crnn.init(jax.random.key(3), 4, 7, config)
  before = np.asarray(params["user"]["w_h"]).copy()
  state = crnn.init_state(params, config)
  ids = jnp.array([2, 4], jnp.int32)  # 4 = padding slot (out of range).
  x = jnp.ones((2, 4), jnp.int32)
  params, state, h, s, c = crnn.train_step(params, state, ids, jnp.zeros((2, 4)), x, x,
                                           jnp.ones((2, 4)), jax.random.key(0), config)
  after = np.asarray(params["user"]["w_h"])
  assert not np.allclose(after[2], before[2])
  np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
  assert float(c) == 8.0


def test_training_beats_uniform_on_repetitive_sequences():
  # Each user cycles through a private 3-item loop: a collaborative GRU learns it.
  n_users, n_items = 8, 24
  seqs = [np.tile(np.arange(3) + 3 * u, 20) for u in range(n_users)]
  hist = [s[:-3] for s in seqs]
  tail = [s[-3:] for s in seqs]
  config = crnn.Config(dim=16, window=16, batch_users=4, learning_rate=3e-2, dropout=0.0)
  params = crnn.init(jax.random.key(0), n_users, n_items, config)
  state = crnn.init_state(params, config)
  train_pairs = sequences.next_item_pairs(hist, [np.zeros(0, np.int64)] * n_users, 16)
  rng = np.random.default_rng(0)
  step = 0
  for _ in range(10):
    params, state, loss, step, _ = crnn.train_epoch(params, state, train_pairs, config,
                                                    jax.random.key(1), rng, step)
  test_pairs = sequences.next_item_pairs(hist, tail, 16)
  lp = crnn.score_pairs(params, test_pairs, config)
  err, _ = seq_eval.sequence_error(seq_eval.tails_from_pairs(lp, test_pairs["tail_mask"]))
  assert err < 0.5 * np.log(n_items), err
  # Sampled softmax and the pooled/tanh variants run too.
  for variant in (dict(sampled=8, pooled=True), dict(cell="tanh")):
    c = dataclasses.replace(config, **variant)
    p = crnn.init(jax.random.key(0), n_users, n_items, c)
    p, _, loss, _, _ = crnn.train_epoch(p, crnn.init_state(p, c), train_pairs, c,
                                        jax.random.key(1), rng)
    assert np.isfinite(loss)


def test_window_slices_trim_only_the_last_window():
  assert crnn.window_slices(0, 128) == [slice(0, 8)]
  assert crnn.window_slices(5, 128) == [slice(0, 8)]
  assert crnn.window_slices(9, 128) == [slice(0, 16)]
  assert crnn.window_slices(128, 128) == [slice(0, 128)]
  assert crnn.window_slices(129, 128) == [slice(0, 128), slice(128, 136)]
  assert crnn.window_slices(300, 128) == [slice(0, 128), slice(128, 256), slice(256, 320)]
  assert crnn.window_slices(20, 12) == [slice(0, 12), slice(12, 20)]


def _fixed_width_epoch(params, state, pairs, config, key, rng):
  """train_epoch with every window `config.window` wide (no trimming), for comparison."""
  n_users, t_max = pairs["inputs"].shape
  lengths = pairs["mask"].sum(axis=1).astype(np.int64)
  order = crnn.batch_order(rng, lengths, config.batch_users)
  step = 0
  for start in range(0, n_users, config.batch_users):
    ids = order[start:start + config.batch_users]
    pad = config.batch_users - len(ids)
    rows = lambda a, fill: np.concatenate([a[ids], np.full((pad, t_max), fill, a.dtype)])
    inputs, targets, mask = rows(pairs["inputs"], 0), rows(pairs["targets"], 0), rows(pairs["mask"], 0.0)
    user_ids = jnp.asarray(np.concatenate([ids, np.full(pad, n_users)]), jnp.int32)
    h = jnp.zeros((config.batch_users, config.dim))
    for w in range(max(1, -(-int(lengths[ids].max()) // config.window))):
      cols = slice(w * config.window, (w + 1) * config.window)
      params, state, h, _, _ = crnn.train_step(
          params, state, user_ids, h, jnp.asarray(inputs[:, cols]), jnp.asarray(targets[:, cols]),
          jnp.asarray(mask[:, cols]), jax.random.fold_in(key, step), config)
      step += 1
  return params


def test_trimmed_windows_train_like_full_windows():
  # Without dropout, cutting padding columns off the last window changes nothing.
  config = crnn.Config(dim=6, window=32, batch_users=3, dropout=0.0, learning_rate=1e-2)
  rng = np.random.default_rng(4)
  seqs = [rng.integers(0, 11, size=n) for n in (3, 40, 7, 12, 70, 5, 9)]
  pairs = sequences.next_item_pairs(seqs, [np.zeros(0, np.int64)] * 7, multiple=32)
  init = crnn.init(jax.random.key(0), 7, 11, config)
  copy = lambda t: jax.tree.map(jnp.array, t)
  trimmed, _, _, _, _ = crnn.train_epoch(copy(init), crnn.init_state(init, config), pairs, config,
                                         jax.random.key(5), np.random.default_rng(6))
  full = _fixed_width_epoch(copy(init), crnn.init_state(init, config), pairs, config,
                            jax.random.key(5), np.random.default_rng(6))
  for a, b in zip(jax.tree.leaves(trimmed), jax.tree.leaves(full)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
