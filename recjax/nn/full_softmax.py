"""A full-softmax output layer over a large catalog, in item chunks.

The rows h [N, D] are scored against every item of W [I, D] (logits h Wᵀ),
but the [N, I] logits are never held whole: the items are swept in chunks of
`chunk` rows of W (a `lax.fori_loop`; the last chunk is shifted back to end at
item I and its columns that the previous chunk already covered are masked),
so each chunk's [N, chunk] block stays in cache between its matrix products.

* `logsumexp` — log Σ_i exp(h·w_i) per row (one sweep, running max).
* `nll_and_rmsprop` — the training step of the layer: the per-row NLL, the
  gradient with respect to h, and W and its RMSprop second moment updated
  chunk by chunk in the second sweep (the gradient of W is never stored
  whole).  The rule is optax's ``rmsprop`` (``scale_by_rms`` with ε inside the
  square root, then ``-learning_rate``): with the same gradient it gives the
  same W and ν, so the model's arithmetic is that of autodiff plus optax,
  done in 8·N·D·I FLOPs (the logits twice, the two gradient products once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CHUNK = 2048  # Items per chunk: a [N, 2048] float32 block is 1 MiB at N = 128.


def _chunks(n_items: int, chunk: int) -> tuple[int, int]:
  chunk = min(chunk, n_items)
  return chunk, -(-n_items // chunk)


def _slice(a: jax.Array, k, chunk: int):
  """Rows [start, start + chunk) of `a` for chunk k, and which of them are new (not in chunk k-1)."""
  start = jnp.minimum(k * chunk, a.shape[0] - chunk)
  fresh = start + jnp.arange(chunk) >= k * chunk
  return start, jax.lax.dynamic_slice_in_dim(a, start, chunk), fresh


def logsumexp(h: jax.Array, w: jax.Array, chunk: int = CHUNK) -> jax.Array:
  """[N] log Σ_i exp(h_n · w_i) over all I rows of `w` ([I, D]), in item chunks."""
  chunk, n_chunks = _chunks(w.shape[0], chunk)

  def body(k, carry):
    m, s = carry
    _, wk, fresh = _slice(w, k, chunk)
    logits = jnp.where(fresh[None, :], h @ wk.T, -jnp.inf)
    m_new = jnp.maximum(m, logits.max(axis=-1))
    s = s * jnp.exp(m - m_new) + jnp.exp(logits - m_new[:, None]).sum(axis=-1)
    return m_new, s

  init = (jnp.full(h.shape[:1], -jnp.inf, h.dtype), jnp.zeros(h.shape[:1], h.dtype))
  m, s = jax.lax.fori_loop(0, n_chunks, body, init)
  return m + jnp.log(s)


def nll_and_rmsprop(h, targets, weight, w, nu, *, learning_rate, decay, eps, chunk: int = CHUNK):
  """One step of the softmax layer on the loss Σ_n weight_n · NLL_n.

  Args:
    h: [N, D] rows (hidden states after dropout); rows of weight 0 add nothing.
    targets: [N] int target item of each row.
    weight: [N] the loss weight of each row (mask / number of events).
    w, nu: [I, D] the output matrix and its RMSprop second moment.
    learning_rate, decay, eps: optax.rmsprop's settings (ε inside the square root).
    chunk: items per chunk.

  Returns:
    (nll [N] = logsumexp - logit of the target, g_h [N, D] = d loss / d h,
    w updated, nu updated); the gradient of W is Σ_n weight_n (softmax_n - e_target)ᵀ h_n.
  """
  chunk, n_chunks = _chunks(w.shape[0], chunk)
  lse = logsumexp(h, w, chunk)
  nll = lse - jnp.sum(h * w[targets], axis=-1)

  def body(k, carry):
    g_h, w_all, nu_all = carry
    start, wk, fresh = _slice(w_all, k, chunk)  # Fresh rows are not updated yet: old W.
    nuk = jax.lax.dynamic_slice_in_dim(nu_all, start, chunk)
    p = jnp.exp(h @ wk.T - lse[:, None])
    p = p - (targets[:, None] == start + jnp.arange(chunk)[None, :])
    p = jnp.where(fresh[None, :], p * weight[:, None], 0.0)
    g_h = g_h + p @ wk
    g_w = p.T @ h
    nu_new = (1 - decay) * g_w ** 2 + decay * nuk
    w_new = wk + (-learning_rate) * (jax.lax.rsqrt(nu_new + eps) * g_w)
    w_all = jax.lax.dynamic_update_slice_in_dim(
        w_all, jnp.where(fresh[:, None], w_new, wk), start, 0)
    nu_all = jax.lax.dynamic_update_slice_in_dim(
        nu_all, jnp.where(fresh[:, None], nu_new, nuk), start, 0)
    return g_h, w_all, nu_all

  g_h, w, nu = jax.lax.fori_loop(0, n_chunks, body, (jnp.zeros_like(h), w, nu))
  return nll, g_h, w, nu
