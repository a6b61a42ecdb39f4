"""Discrete hidden Markov model by Baum–Welch (Rabiner and Juang 1986), in JAX.

The HMM baseline of Ko et al. 2016: one model pooled over all users, K hidden
states, emissions over the I items.  Forward–backward is the scaled recursion
under `lax.scan`, vmapped over a padded batch of sequences (padding steps keep
the forward state and contribute nothing).  The E-step returns expected counts
summed over the batch, so a host loop over user batches accumulates them for
one M-step.  The scale factors c_t of the forward pass are exactly the
predictive probabilities P(x_t | x_<t), which is what the sequence protocol
scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init(key: jax.Array, n_states: int, n_items: int, item_counts=None,
         noise: float = 0.5) -> dict:
  """Random parameters {"pi" [K], "A" [K, K], "B" [K, I]} (rows are distributions).

  Emissions start at the item frequencies (when given) times random noise per state.
  """
  kp, ka, kb = jax.random.split(key, 3)
  pi = jax.random.uniform(kp, (n_states,), minval=0.5, maxval=1.5)
  a = jax.random.uniform(ka, (n_states, n_states), minval=0.5, maxval=1.5)
  base = jnp.ones(n_items) if item_counts is None else jnp.asarray(item_counts, jnp.float32) + 1.0
  b = base[None, :] * jnp.exp(noise * jax.random.normal(kb, (n_states, n_items)))
  return {"pi": pi / pi.sum(), "A": a / a.sum(1, keepdims=True), "B": b / b.sum(1, keepdims=True)}


def _forward_backward(params, items, mask):
  """One sequence: (log c [T] zero on padding, gamma [T, K], xi summed [K, K])."""
  pi, a, b = params["pi"], params["A"], params["B"]
  e = b[:, items].T * mask[:, None] + (1.0 - mask[:, None])  # [T, K]; padding emits 1.

  def fwd(alpha_prev, x):
    e_t, m_t, first = x
    pred = jnp.where(first, pi, alpha_prev @ a)
    alpha = pred * e_t
    c = alpha.sum()
    alpha = alpha / c
    alpha = jnp.where(m_t > 0, alpha, alpha_prev)
    return alpha, (alpha, jnp.where(m_t > 0, jnp.log(c), 0.0))

  first = jnp.arange(items.shape[0]) == 0
  _, (alphas, logc) = jax.lax.scan(fwd, jnp.zeros_like(pi), (e, mask, first))
  c = jnp.exp(logc)

  def bwd(beta_next, x):
    e_next, c_next, m_next = x
    beta = jnp.where(m_next > 0, a @ (e_next * beta_next) / c_next, jnp.ones_like(beta_next))
    return beta, beta

  # beta_t from (e, c, mask) at t + 1; the last step's beta is 1.
  nxt = (jnp.roll(e, -1, 0), jnp.roll(c, -1), jnp.roll(mask, -1).at[-1].set(0.0))
  _, betas = jax.lax.scan(bwd, jnp.ones_like(pi), nxt, reverse=True)
  gamma = alphas * betas * mask[:, None]
  beta_next = jnp.roll(betas, -1, 0)  # the last row's weight is masked below.
  w_next = (nxt[0] * beta_next) / nxt[1][:, None] * nxt[2][:, None]
  xi = jnp.einsum("ti,ij,tj->ij", alphas * mask[:, None], a, w_next)
  return logc, gamma, xi


@jax.jit
def e_step(params, items, mask):
  """Expected counts of a padded batch.

  Args:
    params: {"pi", "A", "B"}.
    items: [N, T] int32 items.
    mask: [N, T] float 1 on real events (each row a prefix).

  Returns:
    dict of "pi" [K], "A" [K, K], "B" [K, I] expected counts and "loglik" (summed).
  """
  logc, gamma, xi = jax.vmap(_forward_backward, in_axes=(None, 0, 0))(params, items, mask)
  k = params["pi"].shape[0]
  em = jnp.zeros((params["B"].shape[1], k)).at[items.reshape(-1)].add(gamma.reshape(-1, k))
  return {"pi": gamma[:, 0].sum(0), "A": xi.sum(0), "B": em.T, "loglik": logc.sum()}


def m_step(counts: dict, smoothing: float = 0.0) -> dict:
  """Normalized expected counts (+ `smoothing` pseudo-counts per entry)."""
  def norm(x):
    x = x + smoothing
    return x / x.sum(axis=-1, keepdims=True)
  return {"pi": norm(counts["pi"]), "A": norm(counts["A"]), "B": norm(counts["B"])}


@jax.jit
def predictive_log_probs(params, items, mask):
  """[N, T] log P(x_t | x_<t) (the log scale factors of the forward pass; 0 on padding)."""
  logc, _, _ = jax.vmap(_forward_backward, in_axes=(None, 0, 0))(params, items, mask)
  return logc


def add_counts(total: dict | None, counts: dict) -> dict:
  """Sums two count dicts (host accumulation over batches)."""
  if total is None:
    return counts
  return jax.tree.map(jnp.add, total, counts)


@jax.jit
def log_likelihood(params, items, mask):
  """Total log-likelihood of a padded batch."""
  return predictive_log_probs(params, items, mask).sum()
