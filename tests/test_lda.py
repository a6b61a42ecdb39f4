"""LDA by variational EM: the E-step and bound against numpy, monotone EM, planted topics, θ step."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma, gammaln

from recjax.ops import lda


def _corpus(seed=0, n_docs=7, n_words=12):
  rng = np.random.default_rng(seed)
  x = (rng.random((n_docs, n_words)) < 0.4) * rng.integers(1, 5, (n_docs, n_words))
  x[3] = 0  # An empty document.
  return sp.csr_matrix(x.astype(np.float32))


def _numpy_e_step(beta, ids, counts, alpha, tol=1e-12, max_iter=20000):
  """Blei et al.'s coordinate ascent with an explicit φ [L, K], run to convergence (float64)."""
  k = beta.shape[0]
  gamma = np.full(k, alpha + counts.sum() / k)
  for _ in range(max_iter):
    phi = beta[:, ids].T * np.exp(digamma(gamma))[None, :]
    phi /= phi.sum(axis=1, keepdims=True)
    new = alpha + counts @ phi
    if np.max(np.abs(new - gamma)) < tol:
      return new, phi
    gamma = new
  return gamma, phi


def _numpy_elbo(beta, ids, counts, gamma, phi, alpha):
  """The full ELBO of one document with its φ (Blei et al. 2003, appendix A.3)."""
  k = len(gamma)
  elog = digamma(gamma) - digamma(gamma.sum())
  out = gammaln(k * alpha) - k * gammaln(alpha) + (alpha - 1) * elog.sum()
  out += np.sum(counts[:, None] * phi * (elog[None, :] + np.log(beta[:, ids].T) - np.log(phi)))
  out += -gammaln(gamma.sum()) + gammaln(gamma).sum() - np.sum((gamma - 1) * elog)
  return out


def test_e_step_fixed_point_and_bound_match_numpy():
  docs = _corpus()
  k, alpha = 3, 0.3
  rng = np.random.default_rng(1)
  beta = rng.random((k, docs.shape[1])) + 0.05
  beta /= beta.sum(axis=1, keepdims=True)
  buckets = lda.document_buckets(docs)
  for rows, ids, counts in lda.doc_chunks(buckets, chunk_docs=100):
    g0 = alpha + counts.sum(axis=1, keepdims=True) / k * np.ones((1, k))
    got = np.asarray(lda.e_step(jnp.asarray(beta, jnp.float32), jnp.asarray(ids),
                                jnp.asarray(counts), jnp.asarray(g0, jnp.float32),
                                alpha=alpha, n_iter=2000))
    bound = np.asarray(lda.doc_bound(jnp.asarray(beta, jnp.float32), jnp.asarray(ids),
                                     jnp.asarray(counts), jnp.asarray(got), alpha=alpha))
    for r, d in enumerate(rows):
      if d < 0:
        continue
      row = docs[d]
      if row.nnz == 0:
        np.testing.assert_allclose(got[r], alpha, rtol=1e-6)
        assert abs(bound[r]) < 1e-4
        continue
      want, phi = _numpy_e_step(beta, row.indices, row.data.astype(np.float64), alpha)
      np.testing.assert_allclose(got[r], want, rtol=2e-4, atol=2e-4)
      elbo = _numpy_elbo(beta, row.indices, row.data.astype(np.float64), want, phi, alpha)
      np.testing.assert_allclose(bound[r], elbo, rtol=1e-4, atol=1e-3)


def test_expected_counts_match_explicit_phi():
  docs = _corpus(seed=2)
  k, alpha = 4, 0.2
  rng = np.random.default_rng(3)
  beta = rng.random((k, docs.shape[1])) + 0.05
  beta /= beta.sum(axis=1, keepdims=True)
  gamma = rng.random((docs.shape[0], k)) + 0.5
  want = np.zeros((docs.shape[1], k))
  for d in range(docs.shape[0]):
    row = docs[d]
    elog = digamma(gamma[d]) - digamma(gamma[d].sum())
    phi = beta[:, row.indices].T * np.exp(elog)[None, :]
    phi /= phi.sum(axis=1, keepdims=True)
    want[row.indices] += row.data[:, None] * phi
  got = np.zeros_like(want)
  for rows, ids, counts in lda.doc_chunks(lda.document_buckets(docs), chunk_docs=3):
    g = gamma[np.maximum(rows, 0)]
    got += np.asarray(lda.expected_word_topic_counts(
        jnp.asarray(beta, jnp.float32), jnp.asarray(ids), jnp.asarray(counts),
        jnp.asarray(g, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _planted(seed=0, n_docs=300, k=3, words_per_topic=10, doc_len=60):
  rng = np.random.default_rng(seed)
  n_words = k * words_per_topic
  beta = np.zeros((k, n_words))
  for t in range(k):
    beta[t, t * words_per_topic:(t + 1) * words_per_topic] = rng.dirichlet(np.ones(words_per_topic))
  theta = rng.dirichlet(np.full(k, 0.3), n_docs)
  x = np.stack([rng.multinomial(doc_len, theta[d] @ beta) for d in range(n_docs)])
  return sp.csr_matrix(x.astype(np.float32)), beta, theta


def test_bound_never_falls_and_planted_topics_are_recovered():
  docs, beta_true, theta_true = _planted()
  buckets = lda.document_buckets(docs, growth=10.0)  # One shape: one compile.
  fit = lda.fit_lda(docs, 3, jax.random.PRNGKey(0), alpha=0.3, eta=0.0, em_iters=60, e_steps=5,
                    buckets=buckets)
  b = np.asarray(fit.bounds)
  assert np.all(np.diff(b) >= -1e-5 * np.abs(b[1:])), b
  assert b[-1] > b[0]
  # Match fitted topics to planted ones by total-variation distance.
  tv = 0.5 * np.abs(fit.beta[:, None, :] - beta_true[None, :, :]).sum(-1)
  rows, cols = linear_sum_assignment(tv)
  assert tv[rows, cols].max() < 0.1, tv
  theta = fit.theta[:, rows[np.argsort(cols)]]
  assert np.mean(np.abs(theta - theta_true)) < 0.05


def test_smoothed_bound_never_falls():
  docs = _corpus(seed=5, n_docs=40, n_words=25)
  fit = lda.fit_lda(docs, 4, jax.random.PRNGKey(1), eta=0.1, em_iters=20, e_steps=3,
                    chunk_docs=16)  # Several chunks of buckets of two lengths.
  b = np.asarray(fit.bounds)
  assert np.all(np.diff(b) >= -1e-5 * np.abs(b[1:])), b
  assert np.all(fit.beta > 0)


def test_simplex_projection_against_brute_force():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(20, 5)).astype(np.float32)
  got = np.asarray(lda.project_to_simplex(jnp.asarray(x)))
  np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)
  assert got.min() >= 0
  # KKT: p = max(x - τ, 0) for a scalar τ per row, found by bisection.
  for r in range(len(x)):
    lo, hi = x[r].min() - 1, x[r].max()
    for _ in range(100):
      mid = 0.5 * (lo + hi)
      lo, hi = (mid, hi) if np.maximum(x[r] - mid, 0).sum() > 1 else (lo, mid)
    np.testing.assert_allclose(got[r], np.maximum(x[r] - lo, 0), atol=1e-5)


def test_theta_map_steps_raise_the_ctr_objective_toward_its_maximum():
  docs = _corpus(seed=6, n_docs=6, n_words=10)
  k, reg = 3, 2.0
  rng = np.random.default_rng(7)
  beta = rng.random((k, docs.shape[1])) + 0.05
  beta /= beta.sum(axis=1, keepdims=True)
  (rows, ids, counts), = lda.doc_chunks(lda.document_buckets(docs), chunk_docs=100)
  v = jnp.asarray(rng.normal(size=(len(rows), k)), jnp.float32)
  theta = jnp.full((len(rows), k), 1.0 / k)
  b, ids, counts = jnp.asarray(beta, jnp.float32), jnp.asarray(ids), jnp.asarray(counts)

  def objective(t):
    return np.asarray(lda.word_loglik(t, b, ids, counts) + jnp.sum(jnp.log(t), -1)
                      - 0.5 * reg * jnp.sum((v - t) ** 2, -1))

  step = jax.jit(lambda t: lda.theta_map_step(t, v, b, ids, counts, reg=reg))
  values = [objective(theta)]
  for _ in range(100):
    theta = step(theta)
    values.append(objective(theta))
  values = np.stack(values)
  assert np.all(np.diff(values, axis=0) >= -1e-4 * np.abs(values[1:])), values
  np.testing.assert_allclose(np.asarray(theta).sum(1), 1.0, rtol=1e-5)
  assert np.asarray(theta).min() > 0
  # Brute force: the objective's maximum over a fine grid of the 2-simplex.
  grid = np.stack(np.meshgrid(np.linspace(1e-3, 1, 300), np.linspace(1e-3, 1, 300)), -1).reshape(-1, 2)
  grid = grid[grid.sum(1) < 1 - 1e-3]
  grid = np.concatenate([grid, 1 - grid.sum(1, keepdims=True)], 1).astype(np.float32)
  for r in range(len(rows)):
    rep = lambda a: jnp.broadcast_to(a[r:r + 1], (len(grid),) + a.shape[1:])
    vals = np.asarray(lda.word_loglik(jnp.asarray(grid), b, rep(ids), rep(counts))
                      + jnp.sum(jnp.log(jnp.asarray(grid)), -1)
                      - 0.5 * reg * jnp.sum((rep(v) - grid) ** 2, -1))
    assert values[-1][r] >= vals.max() - 1e-2 * (1 + abs(vals.max()))
