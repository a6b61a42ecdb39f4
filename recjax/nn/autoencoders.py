"""MLP encoder and decoder of Mult-VAE / Mult-DAE (Liang et al. 2018, §4.3; their vae_cf code).

The architecture is symmetric, ``[I → hidden... → K → reversed(hidden)... → I]``,
with tanh between layers and none on the outputs: ``hidden=(600,)``, ``K=200``
gives ``[I → 600 → 200 → 600 → I]``; ``hidden=()`` the 0-hidden-layer
``[I → 200 → I]``.  The encoder L2-normalizes each input row and applies
dropout to it (training only).  A variational encoder's last layer has 2K
outputs, split into the mean and log-variance of q(z | x) (no activation); a
denoising encoder's K outputs go through tanh, as in vae_cf's MultiDAE.
Kernels start Xavier-uniform, biases N(0, 0.001²) truncated (vae_cf).  No
weights are tied.

Inputs are dense rows [B, I] or `recjax.nn.sparse.PaddedRows`; the first
layer handles both with one kernel.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.nn import sparse

KERNEL_INIT = nn.initializers.xavier_uniform()
BIAS_INIT = nn.initializers.truncated_normal(stddev=0.001)


def l2_normalize_rows(rows: sparse.Rows, eps: float = 1e-12) -> sparse.Rows:
  """Each row divided by its L2 norm (max(‖x‖², eps) under the root, as tf.nn.l2_normalize)."""
  v = sparse.row_values(rows)
  norm_sq = jnp.sum(jnp.square(v), axis=-1, keepdims=True)
  return sparse.with_values(rows, v * jax.lax.rsqrt(jnp.maximum(norm_sq, eps)))


class MLPEncoder(nn.Module):
  """x ↦ (mu, logvar) [B, K] each (variational) or z [B, K] (denoising).

  Attributes:
    n_items: I, the input width.
    hidden_dims: widths of the hidden layers, input side first (e.g. (600,)).
    latent_dim: K.
    variational: output the Gaussian's mean and log-variance instead of z.
    dropout_rate: dropout on the normalized input during training.
  """

  n_items: int
  hidden_dims: Sequence[int] = (600,)
  latent_dim: int = 200
  variational: bool = True
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, rows: sparse.Rows, *, deterministic: bool = True):
    """Encodes rows; a non-deterministic call needs a ``"dropout"`` rng."""
    rows = l2_normalize_rows(rows)
    dropped = nn.Dropout(self.dropout_rate)(sparse.row_values(rows), deterministic=deterministic)
    rows = sparse.with_values(rows, dropped)
    out_dims = (*self.hidden_dims, 2 * self.latent_dim if self.variational else self.latent_dim)
    h = sparse.InputDense(self.n_items, out_dims[0], kernel_init=KERNEL_INIT,
                          bias_init=BIAS_INIT, name="input")(rows)
    for i, width in enumerate(out_dims[1:]):
      h = nn.Dense(width, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
                   name=f"dense_{i}")(jnp.tanh(h))
    if self.variational:
      return h[:, :self.latent_dim], h[:, self.latent_dim:]
    return jnp.tanh(h)


class MLPDecoder(nn.Module):
  """z [B, K] ↦ logits f_θ(z) over all items [B, I] (or over chosen items).

  Attributes:
    n_items: I, the output width.
    hidden_dims: widths of the hidden layers, latent side first (the
      encoder's reversed, e.g. (600,)).
  """

  n_items: int
  hidden_dims: Sequence[int] = (600,)

  @nn.compact
  def __call__(self, z: jax.Array, items: jax.Array | None = None) -> jax.Array:
    """Logits; `items` as in `recjax.nn.sparse.OutputDense` (None: all items)."""
    h = z
    for i, width in enumerate(self.hidden_dims):
      h = jnp.tanh(nn.Dense(width, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
                            name=f"dense_{i}")(h))
    return sparse.OutputDense(self.n_items, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
                              name="output")(h, items)


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """z = mu + ε ⊙ exp(logvar / 2), ε ~ N(0, I): a differentiable draw from q(z | x)."""
  return mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
