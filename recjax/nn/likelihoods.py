"""Per-user log-likelihoods of click rows and the Gaussian KL term (Liang et al. 2018, §2).

Every function returns one value per row ([B]); callers mask padding rows and
average.  ``logits`` are the decoder outputs f_θ(z) [B, I]; ``x`` the click
rows [B, I] (counts or 0/1).  "≐" means equal up to a constant in f.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LIKELIHOODS = ("multinomial", "gaussian", "logistic")


def multinomial_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Eq. 2: log p(x | z) ≐ Σ_i x_i log softmax(f)_i (the multinomial coefficient dropped).

  Args:
    logits: [B, I] unnormalized log-probabilities.
    x: [B, I] click counts.

  Returns:
    [B] log-likelihoods.
  """
  return jnp.sum(x * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def gaussian_log_likelihood(f: jax.Array, x: jax.Array, pos_weight: float = 1.0,
                            neg_weight: float = 1.0) -> jax.Array:
  """Eq. 3: log p(x | z) ≐ -Σ_i c_i/2 (x_i - f_i)², c_i = pos_weight if x_i > 0 else neg_weight.

  The confidence-weighted square loss of Hu et al. (2008), as the paper's
  Gaussian-VAE/DAE of Table 4 (c_1 > c_0 down-weights the many zeros).

  Args:
    f: [B, I] predicted means.
    x: [B, I] observations.
    pos_weight: c_1, the confidence of clicked entries.
    neg_weight: c_0, the confidence of the other entries.

  Returns:
    [B] log-likelihoods (without the -½ Σ log(2π/c_i) constant).
  """
  c = jnp.where(x > 0, pos_weight, neg_weight)
  return -0.5 * jnp.sum(c * jnp.square(x - f), axis=-1)


def logistic_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Eq. 4: Σ_i x_i log σ(f_i) + (1 - x_i) log(1 - σ(f_i)), computed stably.

  Args:
    logits: [B, I] log-odds f.
    x: [B, I] binary clicks.

  Returns:
    [B] log-likelihoods.
  """
  return -jnp.sum(x * jax.nn.softplus(-logits) + (1.0 - x) * jax.nn.softplus(logits), axis=-1)


def log_likelihood(name: str, logits: jax.Array, x: jax.Array, **kwargs) -> jax.Array:
  """Dispatches to the likelihood `name` in `LIKELIHOODS` (kwargs go to the Gaussian)."""
  if name == "multinomial":
    return multinomial_log_likelihood(logits, x)
  if name == "gaussian":
    return gaussian_log_likelihood(logits, x, **kwargs)
  if name == "logistic":
    return logistic_log_likelihood(logits, x)
  raise ValueError(f"unknown likelihood {name!r}; valid: {', '.join(LIKELIHOODS)}")


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) ‖ N(0, I)) = ½ Σ_k (exp(logvar) + mu² - 1 - logvar).

  Args:
    mu: [B, K] means of q(z | x).
    logvar: [B, K] log-variances of q(z | x).

  Returns:
    [B] KL divergences.
  """
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


def sampled_multinomial_log_likelihood(pos_logits: jax.Array, pos_values: jax.Array,
                                       neg_logits: jax.Array, neg_log_expected: jax.Array,
                                       neg_is_positive: jax.Array) -> jax.Array:
  """Eq. 2 with the softmax normalizer estimated from sampled items (log-Q correction).

  log Z = log Σ_i exp(f_i) is split into the user's own items P (exact) and the
  rest, estimated by importance sampling from items drawn from a proposal Q:
  Σ_{j ∉ P} exp(f_j) ≈ Σ_s exp(f_{j_s} - log E[count of j_s]) over samples not
  in P (the complementary sum sampling of Botev et al. 2017, which the paper
  cites for large catalogs).  With every item "sampled" exactly once
  (``neg_log_expected = 0``) this is the exact multinomial log-likelihood.

  Args:
    pos_logits: [B, L] logits of each row's items.
    pos_values: [B, L] their click counts (0 on padding).
    neg_logits: [B, S] logits of the sampled items (shared by the rows).
    neg_log_expected: [S] log of each sample's expected count, log(S · Q_j)
      for S draws with replacement from Q.
    neg_is_positive: [B, S] True where a sample is one of the row's items
      (dropped: those are already counted exactly).

  Returns:
    [B] estimated log-likelihoods.
  """
  pos = jnp.where(pos_values != 0, pos_logits, -jnp.inf)
  neg = jnp.where(neg_is_positive, -jnp.inf, neg_logits - neg_log_expected[None, :])
  log_z = jax.nn.logsumexp(jnp.concatenate([pos, neg], axis=-1), axis=-1)
  return jnp.sum(pos_values * (pos_logits - log_z[:, None]), axis=-1)


def anneal_beta(step, total_anneal_steps: int, anneal_cap: float):
  """β after `step` updates: min(anneal_cap, step / total_anneal_steps); the cap when total is 0."""
  if total_anneal_steps <= 0:
    return jnp.asarray(anneal_cap, jnp.float32)
  return jnp.minimum(jnp.float32(anneal_cap),
                     jnp.asarray(step, jnp.float32) / jnp.float32(total_anneal_steps))
