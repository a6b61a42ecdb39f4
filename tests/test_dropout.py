"""bit_dropout / BitDropout: exact drop rate, independence, scaling, fallback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from recjax.nn.dropout import BitDropout, bit_dropout, bits_per_entry


def test_bits_per_entry():
  assert bits_per_entry(0.5) == 1
  assert bits_per_entry(0.25) == 2
  assert bits_per_entry(0.75) == 2
  assert bits_per_entry(0.125) == 4
  assert bits_per_entry(3 / 256) == 8
  assert bits_per_entry(1 / 65536) == 16
  assert bits_per_entry(0.2) is None
  assert bits_per_entry(0.3) is None


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.75, 0.125, 3 / 256])
def test_drop_rate_and_scale(rate):
  x = jnp.full((301, 997), 2.0, jnp.float32)  # n not a multiple of 32: tail fields cut
  y = np.asarray(bit_dropout(x, rate, jax.random.PRNGKey(7)))
  n = y.size
  dropped = (y == 0).mean()
  # 5 standard deviations of a Binomial(n, rate) fraction.
  assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
  kept = y[y != 0]
  np.testing.assert_allclose(kept, 2.0 / (1 - rate), rtol=1e-6)


def test_neighbouring_entries_independent():
  # Fields of one word sit side by side in a row: their pairs must be uniform.
  y = np.asarray(bit_dropout(jnp.ones((400, 1024)), 0.5, jax.random.PRNGKey(3))) != 0
  a, b = y[:, :-1].ravel(), y[:, 1:].ravel()
  n = a.size
  for va in (0, 1):
    for vb in (0, 1):
      frac = ((a == va) & (b == vb)).mean()
      assert abs(frac - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)
  # Entries 32 apart come from different words.
  c, d = y[:, :-32].ravel(), y[:, 32:].ravel()
  assert abs((c & d).mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / c.size)


def test_keys_give_different_masks_and_same_key_same_mask():
  x = jnp.ones((64, 100))
  m1 = bit_dropout(x, 0.5, jax.random.PRNGKey(0))
  m2 = bit_dropout(x, 0.5, jax.random.PRNGKey(1))
  m1b = bit_dropout(x, 0.5, jax.random.PRNGKey(0))
  assert not np.array_equal(m1, m2)
  np.testing.assert_array_equal(m1, m1b)


def test_module_deterministic_and_fallback():
  x = jnp.arange(1, 1 + 40 * 50, dtype=jnp.float32).reshape(40, 50)
  np.testing.assert_array_equal(BitDropout(0.5).apply({}, x, deterministic=True), x)
  rngs = {"dropout": jax.random.PRNGKey(5)}
  # A rate with no exact k-bit form falls back to flax's float mask: still that rate.
  big = jnp.ones((300, 1000))
  z = np.asarray(BitDropout(0.2).apply({}, big, deterministic=False, rngs=rngs))
  assert abs((z == 0).mean() - 0.2) < 5 * np.sqrt(0.2 * 0.8 / z.size)
  np.testing.assert_allclose(z[z != 0], 1.25, rtol=1e-6)
  y = BitDropout(0.5).apply({}, x, deterministic=False, rngs=rngs)
  nz = np.asarray(y) != 0
  np.testing.assert_allclose(np.asarray(y)[nz], 2 * np.asarray(x)[nz])


def test_rejects_bad_rates():
  with pytest.raises(ValueError, match="rate"):
    bit_dropout(jnp.ones(4), 1.0, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="m / 2"):
    bit_dropout(jnp.ones(4), 0.2, jax.random.PRNGKey(0))


def test_gradient_is_the_mask():
  x = jnp.ones((8, 33))
  key = jax.random.PRNGKey(2)
  g = jax.grad(lambda v: bit_dropout(v, 0.5, key).sum())(x)
  y = bit_dropout(x, 0.5, key)
  np.testing.assert_allclose(np.asarray(g), np.where(np.asarray(y) != 0, 2.0, 0.0))
