"""A full-softmax output layer over a large catalog, in item chunks.

The rows h [N, D] are scored against every item of W [I, D] (logits h Wᵀ),
but the [N, I] logits are never held whole: the items are swept in chunks of
`chunk` rows of W (a `lax.fori_loop`; the last chunk is shifted back to end at
item I and its columns that the previous chunk already covered are masked),
so each chunk's block of logits stays in cache between its operations.  The
gradient sweep lays its blocks out [chunk, N] (items major): both of its
products are then plain (non-transposed) dots, which XLA's CPU backend runs
2–3x faster than the [N, chunk] layout, whose product for W's gradient
contracts over the leading axis.

* `logsumexp` — log Σ_i exp(h·w_i) per row (one sweep, running max).
* `nll_and_rmsprop` — the training step of the layer: the per-row NLL, the
  gradient with respect to h, and W and its RMSprop second moment updated from
  W's gradient (gathered chunk by chunk in the second sweep, then one
  elementwise pass).  The rule is optax's ``rmsprop`` (``scale_by_rms`` with ε
  inside the square root, then ``-learning_rate``): with the same gradient it
  gives the same W and ν, so the model's arithmetic is that of autodiff plus
  optax, done in 8·N·D·I FLOPs (the logits twice, the two gradient products once).
* `nll_and_rmsprop_packed` — the same on the rows of nonzero weight only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CHUNK = 4096  # Items per chunk: a [4096, N] float32 block is 2 MiB at N = 128.


def _chunks(n_items: int, chunk: int | None) -> tuple[int, int]:
  chunk = min(chunk or CHUNK, n_items)
  return chunk, -(-n_items // chunk)


def _slice(a: jax.Array, k, chunk: int):
  """Rows [start, start + chunk) of `a` for chunk k, and which of them are new (not in chunk k-1)."""
  start = jnp.minimum(k * chunk, a.shape[0] - chunk)
  fresh = start + jnp.arange(chunk) >= k * chunk
  return start, jax.lax.dynamic_slice_in_dim(a, start, chunk), fresh


def logsumexp(h: jax.Array, w: jax.Array, chunk: int | None = None) -> jax.Array:
  """[N] log Σ_i exp(h_n · w_i) over all I rows of `w` ([I, D]), in item chunks."""
  chunk, n_chunks = _chunks(w.shape[0], chunk)

  def body(k, carry):
    m, s = carry
    _, wk, fresh = _slice(w, k, chunk)
    logits = jnp.where(fresh[:, None], wk @ h.T, -jnp.inf)  # [chunk, N]
    m_new = jnp.maximum(m, logits.max(axis=0))
    s = s * jnp.exp(m - m_new) + jnp.exp(logits - m_new[None, :]).sum(axis=0)
    return m_new, s

  init = (jnp.full(h.shape[:1], -jnp.inf, h.dtype), jnp.zeros(h.shape[:1], h.dtype))
  m, s = jax.lax.fori_loop(0, n_chunks, body, init)
  return m + jnp.log(s)


def nll_and_rmsprop(h, targets, weight, w, nu, *, learning_rate, decay, eps, chunk: int | None = None):
  """One step of the softmax layer on the loss Σ_n weight_n · NLL_n.

  Args:
    h: [N, D] rows (hidden states after dropout); rows of weight 0 add nothing.
    targets: [N] int target item of each row.
    weight: [N] the loss weight of each row (mask / number of events).
    w, nu: [I, D] the output matrix and its RMSprop second moment.
    learning_rate, decay, eps: optax.rmsprop's settings (ε inside the square root).
    chunk: items per chunk (default `CHUNK`).

  Returns:
    (nll [N] = logsumexp - logit of the target, g_h [N, D] = d loss / d h,
    w updated, nu updated); the gradient of W is Σ_n weight_n (softmax_n - e_target)ᵀ h_n.
  """
  chunk, n_chunks = _chunks(w.shape[0], chunk)
  lse = logsumexp(h, w, chunk)
  nll = lse - jnp.sum(h * w[targets], axis=-1)

  def body(k, carry):
    g_h, g_all = carry
    start, wk, fresh = _slice(w, k, chunk)
    p = jnp.exp(wk @ h.T - lse[None, :])  # [chunk, N]: d loss / d logits, items major.
    p = p - (targets[None, :] == start + jnp.arange(chunk)[:, None])
    p = jnp.where(fresh[:, None], p * weight[None, :], 0.0)
    g_all = jax.lax.dynamic_update_slice_in_dim(
        g_all, jnp.where(fresh[:, None], p @ h, jax.lax.dynamic_slice_in_dim(g_all, start, chunk)),
        start, 0)
    return g_h + wk.T @ p, g_all  # g_h: [D, N]

  g_h, g_w = jax.lax.fori_loop(0, n_chunks, body, (jnp.zeros_like(h.T), jnp.zeros_like(w)))
  nu = (1 - decay) * g_w ** 2 + decay * nu
  w = w + (-learning_rate) * (jax.lax.rsqrt(nu + eps) * g_w)
  return nll, g_h.T, w, nu


def nll_and_rmsprop_packed(h, targets, weight, w, nu, *, learning_rate, decay, eps,
                           chunk: int | None = None, steps: int = 8):
  """`nll_and_rmsprop` on the rows of nonzero weight only, packed to one of a few sizes.

  The rows are reordered nonzero-weight first and the layer runs on the k·N/`steps`
  leading rows (the smallest k that holds them all, chosen at run time by
  ``lax.switch``; sizes are multiples of 8): a window whose slots are mostly
  padding pays for its events, not its slots.  Rows of weight 0 add nothing to
  any gradient, so the result is `nll_and_rmsprop`'s up to the order of
  floating-point sums; their nll is 0.
  """
  n = h.shape[0]
  step = max(8, -(-n // steps))
  sizes = sorted({min(n, k * step) for k in range(1, -(-n // step) + 1)})
  order = jnp.argsort(weight == 0, stable=True)
  hp, yp, wp = h[order], targets[order], weight[order]
  used = jnp.sum(weight != 0)

  def branch(size):
    def run(w, nu):
      nll, g_h, w, nu = nll_and_rmsprop(hp[:size], yp[:size], wp[:size], w, nu,
                                        learning_rate=learning_rate, decay=decay, eps=eps,
                                        chunk=chunk)
      return jnp.pad(nll, (0, n - size)), jnp.pad(g_h, ((0, n - size), (0, 0))), w, nu
    return run

  pick = jnp.searchsorted(jnp.asarray(sizes), used)  # The first size >= the rows used.
  nll, g_h, w, nu = jax.lax.switch(jnp.minimum(pick, len(sizes) - 1),
                                   [branch(s) for s in sizes], w, nu)
  back = jnp.zeros_like(order).at[order].set(jnp.arange(n))
  return jnp.where(weight != 0, nll[back], 0.0), g_h[back], w, nu
