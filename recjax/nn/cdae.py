"""The collaborative denoising autoencoder network (Wu et al., WSDM 2016).

    h = tanh(W_1ᵀ x̃ + V_u + b_1),    f = act(W_2ᵀ h + b_2)

with one hidden (bottleneck) layer, a per-user vector V_u added at the hidden
layer (the paper's "user node": a one-hot user input with its own weights),
and tanh at both layers as the Mult-VAE paper ran it (§4.4, footnote 8; Wu et
al. used sigmoid and report tanh as similar).  The module returns the output
*pre-activation* ``W_2ᵀ h + b_2``: the loss applies tanh, and ranking uses the
pre-activation (the same order, without tanh's float32 saturation ties).

Parameters: ``encoder`` (Dense, W_1 [I, K], b_1), ``users`` [n_users, K] (V),
``decoder`` (Dense, W_2 [K, I], b_2).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class CDAE(nn.Module):
  """[I → K → I] with a per-user vector at the bottleneck.

  Attributes:
    n_items: I.
    n_users: rows of the user table (training users).
    hidden: K, the bottleneck width.
    user_init_scale: standard deviation of the initial user vectors.
  """

  n_items: int
  n_users: int
  hidden: int = 200
  user_init_scale: float = 0.01

  def setup(self):
    self.encoder = nn.Dense(self.hidden, kernel_init=nn.initializers.glorot_uniform())
    self.decoder = nn.Dense(self.n_items, kernel_init=nn.initializers.glorot_uniform())
    self.users = self.param("users", nn.initializers.normal(self.user_init_scale),
                            (self.n_users, self.hidden))

  def encode_input(self, x: jax.Array) -> jax.Array:
    """W_1ᵀ x + b_1: [B, I] -> [B, K] (constant in V_u, so fold-in computes it once)."""
    return self.encoder(x)

  def user_vectors(self, index: jax.Array) -> jax.Array:
    """V_u of training users `index` [B] -> [B, K]."""
    return self.users[index]

  def decode(self, encoded: jax.Array, user_vectors: jax.Array) -> jax.Array:
    """Output pre-activation W_2ᵀ tanh(encoded + V_u) + b_2: [B, I]."""
    return self.decoder(jnp.tanh(encoded + user_vectors))

  def __call__(self, x: jax.Array, index: jax.Array) -> jax.Array:
    """Output pre-activation for inputs `x` [B, I] of training users `index` [B]."""
    return self.decode(self.encode_input(x), self.user_vectors(index))
