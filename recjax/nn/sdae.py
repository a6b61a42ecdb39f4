"""The stacked denoising autoencoder of CDL (Wang, Wang & Yeung 2015, §3.1), λ_s → ∞.

With ``hidden = (200, 50)`` (the "two-layer" SDAE the CVAE paper adopts for
CDL; the last width is K)::

  X_1 = σ(X_0 W_1 + b_1),  X_2 = σ(X_1 W_2 + b_2)            (encoder; X_2 is the code)
  X_3 = σ(X_2 W_3 + b_3),  X_4 = σ(X_3 W_4 + b_4)            (decoder; X_4 ≈ clean X_c)

X_0 is the corrupted content (masking noise is applied by the caller, which
owns the random key), the middle layer X_{L/2} is the prior mean of the item
factors v_j, and every layer is a sigmoid as in the paper.  Dropout (the
paper's 0.1) acts on the non-code hidden layers in training.  Weights are not
tied.  For greedy layerwise pretraining, `layer_reconstruction` trains the
encoder layer l and its mirror decoder layer as a one-hidden-layer
autoencoder of the layer's input.

Content rows come dense [B, W] or as `recjax.nn.sparse.PaddedRows`; the first
layer reads either (`recjax.nn.sparse.InputDense`), and `squared_error`
compares a dense reconstruction with padded targets, so training never builds
a [B, W] input.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.nn import sparse

KERNEL_INIT = nn.initializers.xavier_uniform()


def masking_noise(key: jax.Array, x: sparse.Rows, level: float) -> sparse.Rows:
  """Each entry of x set to 0 with probability `level` (CDL's masking noise); dense or padded.

  Zeros stay zero either way, so masking the stored slots of padded rows is
  the same corruption as masking every entry of the dense rows.
  """
  if not 0.0 <= level < 1.0:
    raise ValueError(f"masking noise level must be in [0, 1), got {level}")
  if level == 0.0:
    return x
  values = sparse.row_values(x)
  keep = jax.random.bernoulli(key, 1.0 - level, values.shape)
  return sparse.with_values(x, jnp.where(keep, values, jnp.zeros_like(values)))


def squared_error(f: jax.Array, x: sparse.Rows) -> jax.Array:
  """||f − x||² per row [B] for a dense f [B, W] and dense or padded targets x."""
  if isinstance(x, sparse.PaddedRows):
    picked = jnp.take_along_axis(f, jnp.clip(x.items, 0, f.shape[-1] - 1), axis=-1)
    cross = jnp.sum(x.values * picked, axis=-1)
  else:
    cross = jnp.sum(x * f, axis=-1)
  return (jnp.sum(jnp.square(f), axis=-1) - 2.0 * cross
          + jnp.sum(jnp.square(sparse.row_values(x)), axis=-1))


class SDAE(nn.Module):
  """x [B, n_inputs] ↦ (reconstruction [B, n_inputs] in (0, 1), code [B, K] in (0, 1))."""

  n_inputs: int
  hidden: Sequence[int] = (200, 50)
  dropout: float = 0.1

  def setup(self):
    if not self.hidden:
      raise ValueError("SDAE: needs at least one hidden layer (the code)")
    first = sparse.InputDense(self.n_inputs, self.hidden[0], kernel_init=KERNEL_INIT, name="enc_0")
    self.encoder = [first] + [nn.Dense(d, kernel_init=KERNEL_INIT, name=f"enc_{l}")
                              for l, d in enumerate(self.hidden) if l > 0]
    widths = (*reversed(self.hidden[:-1]), self.n_inputs)
    self.decoder = [nn.Dense(d, kernel_init=KERNEL_INIT, name=f"dec_{l}")
                    for l, d in enumerate(widths)]
    self.drop = nn.Dropout(self.dropout)

  def _sigmoid_stack(self, layers, h, deterministic: bool) -> jax.Array:
    """σ(layer(h)) through `layers`, with dropout after every layer but the last."""
    for l, layer in enumerate(layers):
      h = nn.sigmoid(layer(h))
      if l < len(layers) - 1:
        h = self.drop(h, deterministic=deterministic)
    return h

  def encode(self, x: sparse.Rows, deterministic: bool = True) -> jax.Array:
    """The code X_{L/2} [B, K] (the middle layer)."""
    return self._sigmoid_stack(self.encoder, x, deterministic)

  def features(self, x: sparse.Rows, n_layers: int) -> jax.Array:
    """The first `n_layers` encoder layers without dropout (x itself for 0)."""
    h = x
    for layer in self.encoder[:n_layers]:
      h = nn.sigmoid(layer(h))
    return h

  def layer_reconstruction(self, h: sparse.Rows, l: int) -> jax.Array:
    """Layer pair l as its own autoencoder: σ(dec_{L-1-l}(σ(enc_l(h)))) (layerwise pretraining)."""
    return nn.sigmoid(self.decoder[len(self.encoder) - 1 - l](nn.sigmoid(self.encoder[l](h))))

  def decode(self, code: jax.Array, deterministic: bool = True) -> jax.Array:
    """The reconstruction X_L [B, n_inputs] in (0, 1)."""
    return self._sigmoid_stack(self.decoder, code, deterministic)

  def __call__(self, x: sparse.Rows, deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
    code = self.encode(x, deterministic)
    return self.decode(code, deterministic), code

  @staticmethod
  def for_params(params, hidden: Sequence[int], dropout: float) -> "SDAE":
    """The module whose parameters `params` ({"params": ...}) are."""
    return SDAE(n_inputs=params["params"]["enc_0"]["kernel"].shape[0], hidden=tuple(hidden),
                dropout=dropout)
