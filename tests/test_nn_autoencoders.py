"""The autoencoder modules against a numpy forward pass; sparse rows against dense ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import batching
from recjax.nn import autoencoders, sparse

N_ITEMS = 13


def _rows(seed=0, b=5):
  rng = np.random.default_rng(seed)
  x = (rng.random((b, N_ITEMS)) < 0.3).astype(np.float32)
  x[:, 2] = 1.0
  x[-1] = 0.0  # An empty row (a padding row) must stay finite.
  return x


def _padded(x, length=None):
  batch = next(batching.padded_row_batches(sp.csr_matrix(x), len(x), max_len=length))
  return sparse.PaddedRows(jnp.asarray(batch.items), jnp.asarray(batch.values))


def _np_encoder(p, x, variational, k):
  """The encoder by hand: normalize, then tanh between dense layers."""
  norm = np.sqrt(np.maximum((x**2).sum(1, keepdims=True), 1e-12))
  h = (x / norm) @ p["input"]["kernel"] + p["input"]["bias"]
  i = 0
  while f"dense_{i}" in p:
    h = np.tanh(h) @ p[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"]
    i += 1
  return (h[:, :k], h[:, k:]) if variational else np.tanh(h)


def _np_decoder(p, z):
  h, i = z, 0
  while f"dense_{i}" in p:
    h = np.tanh(h @ p[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"])
    i += 1
  return h @ p["output"]["kernel"] + p["output"]["bias"]


@pytest.mark.parametrize("hidden", [(7,), (), (8, 6)])
@pytest.mark.parametrize("variational", [True, False])
def test_encoder_and_decoder_match_numpy(hidden, variational):
  k = 4
  enc = autoencoders.MLPEncoder(N_ITEMS, hidden, k, variational, dropout_rate=0.5)
  dec = autoencoders.MLPDecoder(N_ITEMS, tuple(reversed(hidden)))
  x = _rows()
  pe = enc.init(jax.random.PRNGKey(0), jnp.zeros((1, N_ITEMS)))
  pd = dec.init(jax.random.PRNGKey(1), jnp.zeros((1, k)))
  widths = [N_ITEMS, *hidden, 2 * k if variational else k]
  shapes = [v.shape for v in jax.tree.leaves(pe["params"]) if v.ndim == 2]
  assert sorted(shapes) == sorted(zip(widths[:-1], widths[1:]))
  out = enc.apply(pe, jnp.asarray(x))
  pe_np = jax.tree.map(np.asarray, pe["params"])
  want = _np_encoder(pe_np, x, variational, k)
  if variational:
    np.testing.assert_allclose(out[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], want[1], rtol=1e-5, atol=1e-5)
    z = np.asarray(out[0])
  else:
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    z = np.asarray(out)
  logits = dec.apply(pd, jnp.asarray(z))
  assert logits.shape == (len(x), N_ITEMS)
  np.testing.assert_allclose(logits, _np_decoder(jax.tree.map(np.asarray, pd["params"]), z),
                             rtol=1e-5, atol=1e-5)
  # Inputs are L2-normalized: scaling a row changes nothing.
  again = enc.apply(pe, jnp.asarray(3.0 * x))
  np.testing.assert_allclose(jax.tree.leaves(again)[0], jax.tree.leaves(out)[0], rtol=1e-5,
                             atol=1e-6)


def test_dropout_is_inverted_and_only_in_training():
  """With a linear (0-hidden) VAE encoder, E[mu under dropout] = mu without dropout."""
  enc = autoencoders.MLPEncoder(N_ITEMS, (), 3, True, dropout_rate=0.5)
  x = jnp.asarray(_rows()[:2])
  params = enc.init(jax.random.PRNGKey(0), x)
  clean = enc.apply(params, x)[0]
  assert np.array_equal(clean, enc.apply(params, x, deterministic=True)[0])
  run = lambda key: enc.apply(params, x, deterministic=False, rngs={"dropout": key})[0]
  draws = jax.vmap(run)(jax.random.split(jax.random.PRNGKey(1), 4000))
  assert not np.allclose(draws[0], draws[1])
  spread = float(jnp.std(draws, axis=0).max())
  np.testing.assert_allclose(draws.mean(0), clean, atol=5 * spread / np.sqrt(4000))


@pytest.mark.parametrize("variational", [True, False])
def test_sparse_first_layer_equals_dense(variational):
  enc = autoencoders.MLPEncoder(N_ITEMS, (6,), 4, variational, dropout_rate=0.5)
  x = _rows(3, b=6)
  params = enc.init(jax.random.PRNGKey(2), jnp.zeros((1, N_ITEMS)))
  for length in (None, N_ITEMS):  # The longest row, and extra padding slots.
    rows = _padded(x, length)
    dense = enc.apply(params, jnp.asarray(x))
    padded = enc.apply(params, rows)
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(padded)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Gradients with respect to the (shared) kernel agree too.
  loss = lambda p, r: jnp.sum(jnp.square(jax.tree.leaves(enc.apply(p, r))[0]))
  g_dense = jax.grad(loss)(params, jnp.asarray(x))
  g_sparse = jax.grad(loss)(params, _padded(x))
  for a, b in zip(jax.tree.leaves(g_dense), jax.tree.leaves(g_sparse)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_output_layer_on_chosen_items_equals_full_columns():
  dec = autoencoders.MLPDecoder(N_ITEMS, (5,))
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  params = dec.init(jax.random.PRNGKey(1), z)
  full = np.asarray(dec.apply(params, z))
  shared = np.array([0, 7, 7, 12], np.int32)
  np.testing.assert_allclose(dec.apply(params, z, jnp.asarray(shared)), full[:, shared],
                             rtol=1e-5, atol=1e-6)
  per_row = np.random.default_rng(0).integers(0, N_ITEMS, size=(4, 6)).astype(np.int32)
  np.testing.assert_allclose(dec.apply(params, z, jnp.asarray(per_row)),
                             np.take_along_axis(full, per_row, axis=1), rtol=1e-5, atol=1e-6)


def test_contains_and_to_dense():
  x = _rows(4, b=6)
  rows = _padded(x, N_ITEMS)
  np.testing.assert_array_equal(sparse.to_dense(rows, N_ITEMS), x)
  cand = jnp.asarray([0, 2, 5, 12, 2, 9], jnp.int32)
  np.testing.assert_array_equal(sparse.contains(rows, N_ITEMS, cand), x[:, np.asarray(cand)] > 0)


def test_padded_row_batches_follow_dense_row_batches():
  rng = np.random.default_rng(5)
  m = sp.random(23, 17, density=0.3, format="csr", random_state=rng, dtype=np.float32)
  m.data[:] = 1.0
  order = batching.shuffled_order(23, 0, 1)
  dense = list(batching.dense_row_batches(m, 8, order=order, pad_to_multiple_of=3))
  padded = list(batching.padded_row_batches(m, 8, order=order, pad_to_multiple_of=3))
  assert len(dense) == len(padded) == batching.n_batches(23, 8, 3)
  length = batching.longest_row(m)
  for d, p in zip(dense, padded):
    assert p.items.shape == p.values.shape == (9, length) and p.items.dtype == np.int32
    np.testing.assert_array_equal(p.mask, d.mask)
    np.testing.assert_array_equal(p.index, d.index)
    np.testing.assert_array_equal(sparse.to_dense(sparse.PaddedRows(p.items, p.values), 17),
                                  d.rows)
    real = p.values != 0
    assert all(np.all(np.diff(p.items[r][real[r]]) > 0) for r in range(len(p.items)))
  with pytest.raises(ValueError, match="longest row"):
    next(batching.padded_row_batches(m, 8, max_len=length - 1))
