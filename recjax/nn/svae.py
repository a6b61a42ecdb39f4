"""SVAE's network (Sachdeva, Manco, Ritacco & Pudi, WSDM 2019), pure Flax Linen.

items [B, T] --embed (E)--> GRU (H) --> h_t --encoder: Dense(hidden) tanh-->
Dense(2K) --> μ_t, log σ²_t --> z_t --decoder: Dense(hidden) tanh--> Dense(I)
--> logits_t [B, T, I] over all items, for every step t.

h_t is the GRU state after reading the items x_1..x_t, so logits_t model the
items that come after step t (Eq. 21–22 of the paper: q(z_t | x_{1:t})).
Sizes default to the paper's: E = 256, H = 200, hidden = 150, K = 64.

The GRU follows PyTorch's ``nn.GRU`` (the authors' code), with row vectors and
the gates in the column order r | z | n:

  r = σ(x W_ir + b_ir + h W_hr + b_hr)
  z = σ(x W_iz + b_iz + h W_hz + b_hz)
  n = tanh(x W_in + b_in + r ∘ (h W_hn + b_hn))
  h' = (1 - z) ∘ n + z ∘ h

The input projections of all steps are one matmul; `lax.scan` runs only the
recurrence.  At a masked step (padding) the state is carried unchanged, so a
sequence padded on either side reaches the same states at its real steps as
alone (left-aligned: padding after the last real step; right-aligned: h stays
h0 = 0 until the first real step).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def gru_scan(params: dict, x: jax.Array, mask: jax.Array, h0: jax.Array | None = None
             ) -> jax.Array:
  """Runs the GRU over time; masked steps keep the state.

  Args:
    params: {"w_i": [E, 3H], "b_i": [3H], "w_h": [H, 3H], "b_h": [3H]}.
    x: [B, T, E] inputs.
    mask: [B, T] bool/0-1, True at real steps.
    h0: [B, H] initial state (zeros when None).

  Returns:
    hs [B, T, H]: the state after each step (a masked step repeats the previous one).
  """
  w_i, b_i, w_h, b_h = params["w_i"], params["b_i"], params["w_h"], params["b_h"]
  hidden = w_h.shape[0]
  b = x.shape[0]
  if h0 is None:
    h0 = jnp.zeros((b, hidden), x.dtype)
  xi = jnp.einsum("bte,eg->btg", x, w_i) + b_i[None, None, :]  # [B, T, 3H], all steps at once.

  def body(h, inputs):
    xi_t, m_t = inputs
    hh = h @ w_h + b_h[None, :]
    r = jax.nn.sigmoid(xi_t[:, :hidden] + hh[:, :hidden])
    z = jax.nn.sigmoid(xi_t[:, hidden:2 * hidden] + hh[:, hidden:2 * hidden])
    n = jnp.tanh(xi_t[:, 2 * hidden:] + r * hh[:, 2 * hidden:])
    h_new = (1.0 - z) * n + z * h
    h_new = jnp.where(m_t[:, None], h_new, h)
    return h_new, h_new

  _, hs = jax.lax.scan(body, h0, (jnp.swapaxes(xi, 0, 1), jnp.swapaxes(mask.astype(bool), 0, 1)))
  return jnp.swapaxes(hs, 0, 1)


class GRU(nn.Module):
  """One GRU layer over padded sequences (PyTorch gate layout, see the module docstring)."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    e, h = x.shape[-1], self.features
    # PyTorch's nn.GRU initializes every weight and bias U(-1/√H, 1/√H).
    bound = 1.0 / float(h) ** 0.5
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                    -bound, bound)
    params = {"w_i": self.param("w_i", init, (e, 3 * h)),
              "b_i": self.param("b_i", init, (3 * h,)),
              "w_h": self.param("w_h", init, (h, 3 * h)),
              "b_h": self.param("b_h", init, (3 * h,))}
    return gru_scan(params, x, mask)


class SVAENet(nn.Module):
  """Embedding → GRU → per-step encoder → (μ, log σ²) → z → decoder → item logits.

  ``__call__(items, mask, key=None)`` returns (logits [B, T, I], mu [B, T, K],
  logvar [B, T, K]); with a ``key``, z = μ + ε σ (reparameterized), without,
  z = μ.  ``encode`` returns the per-step (mu, logvar) only and ``decode``
  maps z [..., K] to logits [..., I], so scoring can decode one step.
  """

  n_items: int
  embed_dim: int = 256
  rnn_dim: int = 200
  hidden_dim: int = 150
  latent_dim: int = 64

  def setup(self):
    xavier = nn.initializers.xavier_normal()  # The authors' init for the dense layers.
    self.embed = nn.Embed(self.n_items, self.embed_dim,
                          embedding_init=nn.initializers.normal(1.0))  # PyTorch's N(0, 1).
    self.gru = GRU(self.rnn_dim)
    self.enc_hidden = nn.Dense(self.hidden_dim, kernel_init=xavier)
    self.enc_out = nn.Dense(2 * self.latent_dim, kernel_init=xavier)
    self.dec_hidden = nn.Dense(self.hidden_dim, kernel_init=xavier)
    self.dec_out = nn.Dense(self.n_items, kernel_init=xavier)

  def states(self, items: jax.Array, mask: jax.Array) -> jax.Array:
    """GRU states [B, T, H] after each step; ids at masked steps are never read."""
    safe = jnp.where(mask, items, 0)
    return self.gru(self.embed(safe), mask)

  def latent(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(μ, log σ²) [..., K] from GRU states [..., H]."""
    out = self.enc_out(jnp.tanh(self.enc_hidden(h)))
    return out[..., :self.latent_dim], out[..., self.latent_dim:]

  def encode(self, items: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.latent(self.states(items, mask))

  def decode(self, z: jax.Array) -> jax.Array:
    return self.dec_out(jnp.tanh(self.dec_hidden(z)))

  def __call__(self, items: jax.Array, mask: jax.Array, key: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    mu, logvar = self.encode(items, mask)
    z = mu
    if key is not None:
      z = mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
    return self.decode(z), mu, logvar
