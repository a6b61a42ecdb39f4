"""Latent Dirichlet allocation by batch mean-field variational EM (Blei, Ng & Jordan 2003).

Documents are bag-of-words count rows.  For a document d with distinct words
w_1..w_L of counts c_1..c_L, topic-word distributions β [K, W] and a symmetric
Dirichlet prior α on the topic proportions θ_d, the variational posterior
q(θ_d) = Dir(γ_d), q(z_dn) = Mult(φ_dn) is found by coordinate ascent
(Blei et al. 2003, Eq. 6-7; one φ per distinct word, shared by its copies):

  φ_lk ∝ β_{k,w_l} exp(E_q[log θ_k]),  E_q[log θ_k] = ψ(γ_k) − ψ(Σ_k γ_k),
  γ_k  = α + Σ_l c_l φ_lk,

a fixed number of times per document (`e_step`), all documents of a padded
chunk at once (vectorized, jitted; no Python loop over documents).  φ is never
stored: with e = exp(E_q[log θ]) and the normalizer n_l = Σ_k β_{k,w_l} e_k,
γ_k = α + e_k Σ_l (c_l / n_l) β_{k,w_l}.  The M-step sets

  β_kw ∝ η + Σ_d Σ_l c_dl φ_dlk [w_dl = w],

η = 0 being Blei's maximum-likelihood update (η > 0: the MAP estimate under a
symmetric Dirichlet(1 + η) prior on each topic, which keeps every word's
probability positive).  The bound per document is

  L_d = Σ_l c_l log n_l + Σ_k (α − γ_k) E_q[log θ_k] + log Γ(Kα) − K log Γ(α)
        − log Γ(Σ_k γ_k) + Σ_k log Γ(γ_k),

(the word terms of the ELBO collapse to c_l log n_l at the optimal φ); `fit_lda`
reports Σ_d L_d + η Σ_kw log β_kw, which never falls between EM iterations
because γ is warm-started from the previous iteration and every update is an
exact coordinate maximizer.  α is fixed (not re-estimated).

Documents reach the device as length buckets of padded (word id, count) lists
(`recjax.data.batching.bucketed_rows`), never as dense [D, W] rows.

`theta_map_step` is the other half of collaborative topic regression (Wang &
Blei 2011, §3.3): a projected-gradient step on the simplex for θ_j pulled
toward the item factor v_j.

References:
  D. Blei, A. Ng, M. Jordan.  Latent Dirichlet Allocation.  JMLR 3, 2003.
  C. Wang, D. Blei.  Collaborative topic regression for recommending scientific
  articles.  KDD 2011 (and its code, ctr/opt.cpp: `optimize_simplex`).
  J. Duchi et al.  Efficient projections onto the l1-ball.  ICML 2008.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.scipy.special import digamma, gammaln

from recjax.data.batching import Bucket, bucketed_rows, default_bucket_edges

_TINY = 1e-30


# ----------------------------------------------------------------------------- host data


def document_buckets(docs: sp.spmatrix, growth: float = 2.0) -> list[Bucket]:
  """Documents (rows of a docs x words count matrix) as length buckets of padded word lists.

  Args:
    docs: csr [D, W] word counts (any non-negative values).
    growth: ratio of successive padded lengths (each bucket compiles the
      E-step once: growth 2 pads < 2x and compiles ~7 shapes for 400 words).

  Returns:
    list of `Bucket` (rows = document ids, cols = word ids, vals = counts).
  """
  m = sp.csr_matrix(docs, dtype=np.float32)
  if m.nnz and m.data.min() < 0:
    raise ValueError("lda: word counts must be non-negative")
  longest = int(np.diff(m.indptr).max()) if m.shape[0] else 1
  return bucketed_rows(m, default_bucket_edges(max(longest, 1), growth=growth))


def doc_chunks(buckets: Sequence[Bucket], chunk_docs: int):
  """Yields (doc ids, word ids, counts) of at most `chunk_docs` documents, one shape per bucket.

  Each bucket is cut into equal chunks (the last padded with document id -1
  and zero counts), so a jitted function of a chunk compiles once per bucket.
  """
  for bucket in buckets:
    n = bucket.n_rows
    n_chunks = -(-n // max(chunk_docs, 1))
    size = -(-n // n_chunks)
    for start in range(0, n, size):
      stop = min(start + size, n)
      pad = size - (stop - start)
      rows, cols = bucket.rows[start:stop], bucket.cols[start:stop]
      vals = np.where(bucket.mask[start:stop], bucket.vals[start:stop], 0.0).astype(np.float32)
      if pad:
        rows = np.concatenate([rows, np.full(pad, -1, rows.dtype)])
        cols = np.concatenate([cols, np.zeros((pad, cols.shape[1]), cols.dtype)])
        vals = np.concatenate([vals, np.zeros((pad, vals.shape[1]), vals.dtype)])
      yield rows, cols, vals


# ----------------------------------------------------------------------------- pure pieces


def expected_log_theta(gamma: jax.Array) -> jax.Array:
  """E_q[log θ] = ψ(γ) − ψ(Σγ) for rows of Dirichlet parameters [R, K]."""
  return digamma(gamma) - digamma(jnp.sum(gamma, axis=-1, keepdims=True))


def e_step(beta: jax.Array, word_ids: jax.Array, counts: jax.Array, gamma: jax.Array, *,
           alpha: float, n_iter: int) -> jax.Array:
  """`n_iter` coordinate-ascent updates of (φ, γ) for a chunk of documents (pure, jittable).

  Args:
    beta: [K, W] topic-word probabilities.
    word_ids: int [R, L] distinct word ids of each document (anything on padding).
    counts: [R, L] their counts, 0 on padding slots.
    gamma: [R, K] starting Dirichlet parameters (e.g. α + N_d / K, or the last ones).
    alpha: the symmetric Dirichlet prior.
    n_iter: updates (static).

  Returns:
    [R, K] γ after `n_iter` updates (each computes φ from the current γ, then γ).
  """
  beta_w = jnp.take(beta.T, word_ids, axis=0)  # [R, L, K]

  def body(_, g):
    e = jnp.exp(expected_log_theta(g))
    norm = jnp.einsum("rlk,rk->rl", beta_w, e) + _TINY
    return alpha + e * jnp.einsum("rl,rlk->rk", counts / norm, beta_w)

  return jax.lax.fori_loop(0, n_iter, body, gamma)


def doc_bound(beta: jax.Array, word_ids: jax.Array, counts: jax.Array, gamma: jax.Array, *,
              alpha: float) -> jax.Array:
  """The per-document ELBO L_d at γ and the optimal φ for it (see the module docstring).

  Returns:
    [R] bounds (0 for an empty document whose γ = α).
  """
  beta_w = jnp.take(beta.T, word_ids, axis=0)
  elog = expected_log_theta(gamma)
  norm = jnp.einsum("rlk,rk->rl", beta_w, jnp.exp(elog)) + _TINY
  k = gamma.shape[-1]
  words = jnp.sum(counts * jnp.log(norm), axis=-1)
  prior = (jnp.sum((alpha - gamma) * elog, axis=-1) + gammaln(k * alpha) - k * gammaln(alpha)
           - gammaln(jnp.sum(gamma, axis=-1)) + jnp.sum(gammaln(gamma), axis=-1))
  return words + prior


def expected_word_topic_counts(beta: jax.Array, word_ids: jax.Array, counts: jax.Array,
                               gamma: jax.Array) -> jax.Array:
  """Σ_d Σ_l c_dl φ_dlk scattered to words: the M-step's sufficient statistics [W, K].

  φ is the optimal one for the given γ and β.
  """
  beta_w = jnp.take(beta.T, word_ids, axis=0)
  e = jnp.exp(expected_log_theta(gamma))
  norm = jnp.einsum("rlk,rk->rl", beta_w, e) + _TINY
  phi_c = beta_w * e[:, None, :] * (counts / norm)[..., None]  # c_l φ_lk, [R, L, K]
  k = beta.shape[0]
  return jax.ops.segment_sum(phi_c.reshape(-1, k), word_ids.reshape(-1),
                             num_segments=beta.shape[1])


@functools.partial(jax.jit, static_argnames=("alpha", "n_iter"))
def _em_chunk(beta, stats, bound, gamma, word_ids, counts, *, alpha, n_iter):
  """One chunk's E-step; adds its sufficient statistics and bound to the running sums."""
  gamma = e_step(beta, word_ids, counts, gamma, alpha=alpha, n_iter=n_iter)
  stats = stats + expected_word_topic_counts(beta, word_ids, counts, gamma)
  bound = bound + jnp.sum(doc_bound(beta, word_ids, counts, gamma, alpha=alpha))
  return gamma, stats, bound


def m_step(stats: jax.Array, eta: float) -> jax.Array:
  """β [K, W] from the expected counts [W, K]: each topic's η-smoothed counts, normalized."""
  smoothed = stats.T + eta
  return smoothed / jnp.maximum(jnp.sum(smoothed, axis=1, keepdims=True), _TINY)


# ----------------------------------------------------------------------------- the fit


@dataclasses.dataclass(frozen=True)
class LDAResult:
  """A fitted LDA.

  Attributes:
    beta: [K, W] topic-word probabilities (float32).
    gamma: [D, K] variational Dirichlet parameters of each document.
    bounds: the objective (Σ_d L_d + η Σ log β) at each EM iteration.
  """

  beta: np.ndarray
  gamma: np.ndarray
  bounds: list[float]

  @property
  def theta(self) -> np.ndarray:
    """Topic proportions E_q[θ_d] = γ_d / Σ_k γ_dk, [D, K]."""
    return self.gamma / self.gamma.sum(axis=1, keepdims=True)


def initial_beta(key: jax.Array, n_topics: int, n_words: int) -> jax.Array:
  """lda-c's random start: β_kw ∝ 1/W + U(0, 1)."""
  raw = jax.random.uniform(key, (n_topics, n_words), jnp.float32) + 1.0 / n_words
  return raw / jnp.sum(raw, axis=1, keepdims=True)


def fit_lda(docs: sp.spmatrix, n_topics: int, key: jax.Array, *, alpha: float | None = None,
            eta: float = 0.0, em_iters: int = 50, e_steps: int = 10, chunk_docs: int = 4096,
            beta0: jax.Array | None = None, buckets: Sequence[Bucket] | None = None,
            log=None) -> LDAResult:
  """Batch variational EM for LDA.

  Each EM iteration runs `e_steps` coordinate updates for every document
  (γ warm-started from the previous iteration; the first starts at
  α + N_d / K), chunk by chunk on the device, sums the expected word-topic
  counts, and re-estimates β.  Compiles once per document-length bucket.

  Args:
    docs: csr [D, W] word counts.
    n_topics: K.
    key: seeds the initial β.
    alpha: symmetric Dirichlet prior on θ; default 1/K.
    eta: topic-word smoothing added to the expected counts (0: ML M-step).
    em_iters: EM iterations.
    e_steps: coordinate updates per document per EM iteration.
    chunk_docs: documents per jitted call (bounds memory: chunk · L · K).
    beta0: optional [K, W] starting β instead of the random one.
    buckets: `document_buckets(docs)` when the caller already has them.
    log: optional callable for one line per EM iteration.

  Returns:
    `LDAResult`.
  """
  d, w = docs.shape
  if n_topics < 1 or em_iters < 1 or e_steps < 1:
    raise ValueError(f"lda: n_topics, em_iters and e_steps must be >= 1, got {n_topics}, "
                     f"{em_iters}, {e_steps}")
  alpha = float(1.0 / n_topics if alpha is None else alpha)
  if alpha <= 0 or eta < 0:
    raise ValueError(f"lda: need alpha > 0 and eta >= 0, got alpha={alpha}, eta={eta}")
  buckets = document_buckets(docs) if buckets is None else buckets
  chunks = [(rows, jnp.asarray(cols), jnp.asarray(vals))
            for rows, cols, vals in doc_chunks(buckets, chunk_docs)]
  lengths = np.asarray(sp.csr_matrix(docs).sum(axis=1), np.float32).ravel()
  gammas = [jnp.asarray(alpha + np.where(rows >= 0, lengths[np.maximum(rows, 0)], 0.0)[:, None]
                        / n_topics * np.ones((1, n_topics), np.float32), jnp.float32)
            for rows, _, _ in chunks]
  beta = initial_beta(key, n_topics, w) if beta0 is None else jnp.asarray(beta0, jnp.float32)
  bounds = []
  for it in range(em_iters):
    stats = jnp.zeros((w, n_topics), jnp.float32)
    bound = jnp.zeros((), jnp.float32)
    for c, (_, cols, vals) in enumerate(chunks):
      gammas[c], stats, bound = _em_chunk(beta, stats, bound, gammas[c], cols, vals,
                                          alpha=alpha, n_iter=e_steps)
    prior = float(eta * jnp.sum(jnp.log(beta))) if eta > 0 else 0.0
    bounds.append(float(bound) + prior)
    beta = m_step(stats, eta)
    if log is not None:
      log(f"lda em {it + 1}/{em_iters}: bound {bounds[-1]:.6g}")
  gamma = np.full((d, n_topics), alpha, np.float32)
  for (rows, _, _), g in zip(chunks, gammas):
    real = rows >= 0
    gamma[rows[real]] = np.asarray(g)[real]
  return LDAResult(beta=np.asarray(beta), gamma=gamma, bounds=bounds)


# ----------------------------------------------------------------------------- CTR's θ step


def project_to_simplex(x: jax.Array) -> jax.Array:
  """Euclidean projection of each row of x [R, K] onto the probability simplex (Duchi et al.)."""
  k = x.shape[-1]
  u = -jnp.sort(-x, axis=-1)
  css = jnp.cumsum(u, axis=-1) - 1.0
  ind = jnp.arange(1, k + 1, dtype=x.dtype)
  cond = u - css / ind[None, :] > 0
  rho = jnp.sum(cond, axis=-1, keepdims=True)  # The condition holds on a prefix.
  tau = jnp.take_along_axis(css, rho - 1, axis=-1) / rho.astype(x.dtype)
  return jnp.maximum(x - tau, 0.0)


def theta_objective(theta: jax.Array, counts_topic: jax.Array, v: jax.Array,
                    reg: float) -> jax.Array:
  """f(θ) = −Σ_k g_k log θ_k + reg/2 ||v − θ||² per row (minimized by `theta_map_step`)."""
  return (-jnp.sum(counts_topic * jnp.log(jnp.maximum(theta, _TINY)), axis=-1)
          + 0.5 * reg * jnp.sum((v - theta) ** 2, axis=-1))


def word_loglik(theta: jax.Array, beta: jax.Array, word_ids: jax.Array,
                counts: jax.Array) -> jax.Array:
  """Σ_l c_l log Σ_k θ_k β_{k,w_l} per document (CTR's word term at fixed β), [R]."""
  beta_w = jnp.take(beta.T, word_ids, axis=0)
  mix = jnp.einsum("rlk,rk->rl", beta_w, theta)
  return jnp.sum(jnp.where(counts > 0, counts * jnp.log(jnp.maximum(mix, _TINY)), 0.0), axis=-1)


def theta_map_step(theta: jax.Array, v: jax.Array, beta: jax.Array, word_ids: jax.Array,
                   counts: jax.Array, *, reg: float, pseudo_count: float = 1.0,
                   line_search: int = 20) -> jax.Array:
  """One MAP step for CTR's topic proportions given the item factors (pure, jittable).

  Maximizes Σ_l c_l log(θᵀβ_{·,w_l}) + ρ Σ_k log θ_k − reg/2 ||v − θ||² over
  the simplex as Wang & Blei's code does: φ_lk ∝ θ_k β_{k,w_l} (which makes
  the word term's bound tight), g = ρ + Σ_l c_l φ_l, then one projected-gradient
  step on f(θ) = −Σ g_k log θ_k + reg/2 ||v − θ||²: the gradient is scaled to
  an l1 norm of at most 1, d = Π(θ − ∇f) − θ, and t is the first of
  1/2, 1/4, ... (`line_search` tries) with f(θ + t d) ≤ f(θ) + t ∇f·d / 2
  (none: θ stays).  Each step is a minorize-maximize step: the objective never
  falls.  θ stays strictly positive because t < 1.

  Args:
    theta: [R, K] current proportions (rows on the simplex, positive).
    v: [R, K] item factors.
    beta: [K, W] topic-word probabilities.
    word_ids, counts: [R, L] the documents (counts 0 on padding).
    reg: λ_v.
    pseudo_count: ρ (the code's smoothing of g).
    line_search: backtracking tries (static).

  Returns:
    [R, K] new θ.
  """
  beta_w = jnp.take(beta.T, word_ids, axis=0)
  mix = jnp.einsum("rlk,rk->rl", beta_w, theta) + _TINY
  g_counts = pseudo_count + theta * jnp.einsum("rl,rlk->rk", counts / mix, beta_w)
  f_old = theta_objective(theta, g_counts, v, reg)
  grad = -g_counts / jnp.maximum(theta, _TINY) - reg * (v - theta)
  l1 = jnp.sum(jnp.abs(grad), axis=-1, keepdims=True)
  grad = jnp.where(l1 > 1.0, grad / jnp.maximum(l1, _TINY), grad)
  direction = project_to_simplex(theta - grad) - theta
  slope = 0.5 * jnp.sum(grad * direction, axis=-1)  # <= 0.
  steps = 0.5 ** jnp.arange(1, line_search + 1, dtype=theta.dtype)  # [T]
  trial = theta[:, None, :] + steps[None, :, None] * direction[:, None, :]  # [R, T, K]
  f_new = theta_objective(trial, g_counts[:, None, :], v[:, None, :], reg)  # [R, T]
  ok = f_new <= f_old[:, None] + steps[None, :] * slope[:, None]
  first = jnp.argmax(ok, axis=-1)
  t = jnp.where(jnp.any(ok, axis=-1), steps[first], 0.0)
  return theta + t[:, None] * direction


@functools.partial(jax.jit, static_argnames=("line_search",), donate_argnums=(0,))
def _theta_chunk(theta, v, beta, rows, word_ids, counts, reg, pseudo_count, *, line_search):
  safe = jnp.maximum(rows, 0)
  new = theta_map_step(theta[safe], v[safe], beta, word_ids, counts, reg=reg,
                       pseudo_count=pseudo_count, line_search=line_search)
  drop = jnp.where(rows >= 0, rows, theta.shape[0])
  return theta.at[drop].set(new, mode="drop")


def theta_map_sweep(theta, v, beta, chunks, *, reg: float, pseudo_count: float = 1.0,
                    line_search: int = 20) -> jax.Array:
  """`theta_map_step` for every document, chunk by chunk (host driver).

  Args:
    theta: [D, K] current topic proportions; not modified.
    v: [D, K] item factors.
    beta: [K, W] topic-word probabilities.
    chunks: (doc ids, word ids, counts) triples from `doc_chunks` (doc id -1 = padding).
    reg, pseudo_count, line_search: as in `theta_map_step`.

  Returns:
    [D, K] new θ (documents in no chunk keep theirs).
  """
  out = jnp.array(theta, copy=True)
  for rows, word_ids, counts in chunks:
    out = _theta_chunk(out, v, beta, jnp.asarray(rows, jnp.int32), word_ids, counts, float(reg),
                       float(pseudo_count), line_search=line_search)
  return out
