"""The inference and generation networks of CVAE (Li & She 2017, §2.1 and §3.3), weights tied.

Inference network (``hidden = (200, 100)``, K = 50)::

  h_1 = σ(x W_1 + c_1),  h_2 = σ(h_1 W_2 + c_2),
  μ = h_2 W_μ + c_μ,  log σ² = h_2 W_σ + c_σ.

Generation network (the mirror, "100-200")::

  g_2 = σ(z W_z + d_2),  g_1 = σ(g_2 W_2ᵀ + d_1),  f(z) = g_1 W_1ᵀ + d_0,

so the content is Bernoulli(σ(f(z))) for binary (or [0, 1]-scaled) content,
or N(f(z), λ_x⁻¹ I) for real-valued content.  The weights are **tied**: W_1
and W_2 are single parameters (``kernel_0``, ``kernel_1``) used by both
networks, as the paper found best ("the weights of the inference network are
set to be the transpose of the generation network").  Biases are not tied
(the paper ties weights only); the latent heads W_μ, W_σ and the first
generation layer W_z have no counterpart and are their own parameters.
Activations are sigmoids, as in the paper.

Layerwise pretraining (the CVAE authors' code): each inference layer l is
first trained as a tied denoising autoencoder of its own input
(`layer_reconstruction`: σ(h̃ W_l + c_l) W_lᵀ + d_l with masking noise on h),
then the latent heads as a small VAE of the top features
(`latent_reconstruction`), before the whole network is trained.

Content rows come dense [B, W] or as `recjax.nn.sparse.PaddedRows` (word
ids and values, [B, L]): the first inference layer is then a gather-sum over
the rows of W_1, and the likelihoods read the padded targets, so training
never builds a [B, W] input (bags of words are ~0.1% dense).  The generation
network's output f(z) is always dense [B, W].

The module is sized by ``n_inputs`` (the vocabulary); `TiedVAE.for_params`
rebuilds it from a parameter tree.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.nn import sparse
from recjax.nn.likelihoods import gaussian_kl

# Bias layouts.  "untied" (default): every generation layer has its own bias d_l, and
# layer l's layerwise denoising autoencoder decodes with that same d_l, so pretraining
# carries it into the whole network.  "authors_code" (eelxpeng/CollaborativeVAE,
# lib/vae.py run_all and lib/cvae.py): the generation layer that rebuilds hidden layer
# l - 1 uses the inference bias c_{l-1} ("gen b1 = rec b1"), the layerwise autoencoders
# decode with biases of their own (``dae_bias_l``, discarded after their stage), and the
# output bias d_0 is trained only from the whole-network stage on (their b_x starts at 0
# there).
BIAS_LAYOUTS = ("untied", "authors_code")
KERNEL_INIT = nn.initializers.xavier_uniform()
ZEROS = nn.initializers.zeros


class TiedVAE(nn.Module):
  """x [B, n_inputs] ↦ (μ, log σ²) [B, K]; z [B, K] ↦ logits f(z) [B, n_inputs]."""

  n_inputs: int
  hidden: Sequence[int] = (200, 100)
  latent: int = 50
  bias_layout: str = "untied"  # See BIAS_LAYOUTS.

  def setup(self):
    if not self.hidden:
      raise ValueError("TiedVAE: needs at least one hidden layer")
    if self.bias_layout not in BIAS_LAYOUTS:
      raise ValueError(f"TiedVAE: bias_layout must be one of {BIAS_LAYOUTS}, "
                       f"got {self.bias_layout!r}")
    dims = (self.n_inputs, *self.hidden)
    # kernel_l [dims[l], dims[l+1]]: x-side layer l of the inference network, and
    # (transposed) the layer that produces dims[l] in the generation network.
    self.kernels = [self.param(f"kernel_{l}", KERNEL_INIT, (dims[l], dims[l + 1]))
                    for l in range(len(self.hidden))]
    self.enc_biases = [self.param(f"enc_bias_{l}", ZEROS, (dims[l + 1],))
                       for l in range(len(self.hidden))]
    if self.bias_layout == "untied":
      self.dec_biases = [self.param(f"dec_bias_{l}", ZEROS, (dims[l],))
                         for l in range(len(self.hidden))]
      self.dae_biases = self.dec_biases
    else:  # authors_code: generation layer l >= 1 reuses enc_bias_{l-1}; DAE biases apart.
      self.dec_biases = [self.param("dec_bias_0", ZEROS, (dims[0],))] + [
          self.enc_biases[l - 1] for l in range(1, len(self.hidden))]
      self.dae_biases = [self.param(f"dae_bias_{l}", ZEROS, (dims[l],))
                         for l in range(len(self.hidden))]
    self.mu_head = nn.Dense(self.latent, kernel_init=KERNEL_INIT, name="mu")
    self.logvar_head = nn.Dense(self.latent, kernel_init=KERNEL_INIT, name="logvar")
    self.latent_in = nn.Dense(self.hidden[-1], kernel_init=KERNEL_INIT, name="latent_in")

  def layer(self, h: sparse.Rows, l: int) -> jax.Array:
    """Inference layer l: σ(h W_l + c_l), [B, hidden[l]]; h dense or (for l = 0) padded."""
    w = self.kernels[l]
    if isinstance(h, sparse.PaddedRows):  # Padding slots have value 0.
      pre = jnp.einsum("bl,blh->bh", h.values, jnp.take(w, h.items, axis=0, mode="clip"))
    else:
      pre = h @ w
    return nn.sigmoid(pre + self.enc_biases[l][None, :])

  def features(self, x: sparse.Rows, n_layers: int) -> jax.Array:
    """The output of the first `n_layers` inference layers (x itself for 0)."""
    h = x
    for l in range(n_layers):
      h = self.layer(h, l)
    return h

  def encode(self, x: sparse.Rows) -> tuple[jax.Array, jax.Array]:
    """The inference network: (μ, log σ²) of q(z | x), each [B, K]; x dense or padded."""
    h = self.features(x, len(self.hidden))
    return self.mu_head(h), self.logvar_head(h)

  def layer_reconstruction(self, h: sparse.Rows, l: int) -> jax.Array:
    """Logits of layer l's own tied autoencoder, σ(h W_l + c_l) W_lᵀ + d_l (layerwise pretraining)."""
    return self.layer(h, l) @ self.kernels[l].T + self.dae_biases[l][None, :]

  def latent_reconstruction(self, h: jax.Array, eps: jax.Array):
    """The latent layer as a VAE of the top features h [B, hidden[-1]] (layerwise pretraining).

    Returns:
      (logits of h given z = μ + σ ⊙ eps, μ, log σ²); the logits are the first
      generation layer's pre-activations.
    """
    mu, logvar = self.mu_head(h), self.logvar_head(h)
    return self.latent_in(mu + eps * jnp.exp(0.5 * logvar)), mu, logvar

  def decode(self, z: jax.Array) -> jax.Array:
    """The generation network: f(z) [B, n_inputs] (logits for Bernoulli, means for Gaussian)."""
    h = nn.sigmoid(self.latent_in(z))
    for l in range(len(self.hidden) - 1, 0, -1):
      h = nn.sigmoid(h @ self.kernels[l].T + self.dec_biases[l][None, :])
    return h @ self.kernels[0].T + self.dec_biases[0][None, :]

  def __call__(self, x: sparse.Rows, eps: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(f(z), μ, log σ²) with z = μ + σ ⊙ eps (the reparameterization trick)."""
    mu, logvar = self.encode(x)
    return self.decode(mu + eps * jnp.exp(0.5 * logvar)), mu, logvar

  @staticmethod
  def for_params(params, hidden: Sequence[int], latent: int) -> "TiedVAE":
    """The module whose parameters `params` ({"params": ...}) are."""
    layout = "authors_code" if "dae_bias_0" in params["params"] else "untied"
    return TiedVAE(n_inputs=params["params"]["kernel_0"].shape[0], hidden=tuple(hidden),
                   latent=latent, bias_layout=layout)


def _sum_x_times(f: jax.Array, x: sparse.Rows) -> jax.Array:
  """Σ_w x_w f_w per row, for dense or padded x."""
  if isinstance(x, sparse.PaddedRows):
    picked = jnp.take_along_axis(f, jnp.clip(x.items, 0, f.shape[-1] - 1), axis=-1)
    return jnp.sum(x.values * picked, axis=-1)
  return jnp.sum(x * f, axis=-1)


def _sum_x_squared(x: sparse.Rows) -> jax.Array:
  return jnp.sum(jnp.square(sparse.row_values(x)), axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: sparse.Rows) -> jax.Array:
  """log Ber(x | σ(f)) = Σ_w x_w log σ(f_w) + (1 − x_w) log(1 − σ(f_w)), per row [B].

  Computed as Σ_w x_w f_w − Σ_w softplus(f_w) (the same identity), so x may
  be padded rows; x in [0, 1] (scaled counts) gives the cross-entropy the
  CVAE authors' code uses.

  Args:
    logits: [B, W] f(z).
    x: [B, W] dense rows or `PaddedRows` of targets in [0, 1].
  """
  return _sum_x_times(logits, x) - jnp.sum(jax.nn.softplus(logits), axis=-1)


def gaussian_log_density(f: jax.Array, x: sparse.Rows, precision: float) -> jax.Array:
  """log N(x | f, λ⁻¹ I) = −λ/2 ||x − f||² + (W/2) log(λ / 2π), per row [B]; x dense or padded."""
  w = f.shape[-1]
  sq = jnp.sum(jnp.square(f), axis=-1) - 2.0 * _sum_x_times(f, x) + _sum_x_squared(x)
  return -0.5 * precision * sq + 0.5 * w * math.log(precision / (2.0 * math.pi))


def content_log_likelihood(name: str, f: jax.Array, x: sparse.Rows,
                           precision: float = 1.0) -> jax.Array:
  """log p_θ(x | z) per row for `name` in ("bernoulli", "gaussian")."""
  if name == "bernoulli":
    return bernoulli_log_likelihood(f, x)
  if name == "gaussian":
    return gaussian_log_density(f, x, precision)
  raise ValueError(f"unknown content likelihood {name!r}; valid: bernoulli, gaussian")


__all__ = ["TiedVAE", "bernoulli_log_likelihood", "gaussian_log_density",
           "content_log_likelihood", "gaussian_kl"]
