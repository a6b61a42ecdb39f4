"""Likelihoods and the KL term against closed forms from scipy, and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate, special, stats

from recjax.nn import likelihoods


def _data(seed=0, b=4, n=9):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, n))
  x = (rng.random((b, n)) < 0.4).astype(np.float64)
  x[:, 0] = 1.0  # Every row has a click.
  return logits, x


def test_multinomial_matches_scipy_up_to_the_coefficient():
  logits, _ = _data()
  counts = np.random.default_rng(1).integers(0, 4, size=logits.shape).astype(np.float64)
  counts[:, 1] += 1
  got = np.asarray(likelihoods.multinomial_log_likelihood(jnp.asarray(logits, jnp.float32),
                                                          jnp.asarray(counts, jnp.float32)))
  for u in range(len(logits)):
    pi = special.softmax(logits[u])
    n = counts[u].sum()
    log_coef = special.gammaln(n + 1) - special.gammaln(counts[u] + 1).sum()
    want = stats.multinomial.logpmf(counts[u], n, pi) - log_coef
    np.testing.assert_allclose(got[u], want, rtol=1e-5, atol=1e-5)


def test_gaussian_is_the_weighted_normal_log_density_up_to_constants():
  f, x = _data(2)
  c1, c0 = 5.0, 0.5
  got = np.asarray(likelihoods.gaussian_log_likelihood(jnp.asarray(f, jnp.float32),
                                                       jnp.asarray(x, jnp.float32), c1, c0))
  c = np.where(x > 0, c1, c0)
  # N(x; f, 1/c) = -c/2 (x - f)^2 - 1/2 log(2π / c).
  want = (stats.norm.logpdf(x, loc=f, scale=1 / np.sqrt(c)) + 0.5 * np.log(2 * np.pi / c)).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_logistic_matches_bernoulli():
  f, x = _data(3)
  f = f * 10.0  # Large logits: the stable form must not overflow.
  got = np.asarray(likelihoods.logistic_log_likelihood(jnp.asarray(f, jnp.float32),
                                                       jnp.asarray(x, jnp.float32)))
  want = stats.bernoulli.logpmf(x, special.expit(f)).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dispatch_and_unknown_name():
  f, x = _data(4)
  f, x = jnp.asarray(f, jnp.float32), jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(likelihoods.log_likelihood("logistic", f, x),
                             likelihoods.logistic_log_likelihood(f, x))
  np.testing.assert_allclose(likelihoods.log_likelihood("gaussian", f, x, pos_weight=3.0),
                             likelihoods.gaussian_log_likelihood(f, x, 3.0, 1.0))
  with pytest.raises(ValueError, match="multinomial"):
    likelihoods.log_likelihood("poisson", f, x)


def test_gaussian_kl_against_the_general_formula_and_quadrature():
  rng = np.random.default_rng(5)
  mu, logvar = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
  got = np.asarray(likelihoods.gaussian_kl(jnp.asarray(mu, jnp.float32),
                                           jnp.asarray(logvar, jnp.float32)))
  s1 = np.exp(0.5 * logvar)
  # KL(N(m1, s1²) ‖ N(m2, s2²)) = log(s2/s1) + (s1² + (m1 - m2)²) / (2 s2²) - 1/2 with m2=0, s2=1.
  want = (np.log(1.0 / s1) + (s1**2 + mu**2) / 2 - 0.5).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # One coordinate by numerical integration of q log(q / p).
  m, s = mu[0, 0], s1[0, 0]
  q = stats.norm(m, s)
  integrand = lambda z: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z))
  numeric, _ = integrate.quad(integrand, m - 12 * s, m + 12 * s)
  one = float(likelihoods.gaussian_kl(jnp.asarray([[m]], jnp.float32),
                                      jnp.asarray([[logvar[0, 0]]], jnp.float32))[0])
  assert one == pytest.approx(numeric, rel=1e-4, abs=1e-5)
  assert float(likelihoods.gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0


@pytest.mark.parametrize("name", ["multinomial", "gaussian", "logistic"])
def test_likelihood_gradients(name):
  f, x = _data(6)
  with jax.enable_x64(True):
    x64 = jnp.asarray(x)
    kw = {"pos_weight": 4.0, "neg_weight": 0.5} if name == "gaussian" else {}
    fn = lambda logits: jnp.sum(likelihoods.log_likelihood(name, logits, x64, **kw))
    check_grads(fn, (jnp.asarray(f),), order=2, modes=["rev", "fwd"])


def test_kl_gradients():
  rng = np.random.default_rng(7)
  with jax.enable_x64(True):
    mu, logvar = jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray(rng.normal(size=(3, 4)))
    check_grads(lambda m, v: jnp.sum(likelihoods.gaussian_kl(m, v)), (mu, logvar), order=2,
                modes=["rev", "fwd"])


def _padded(x):
  """Dense 0/1 rows -> (items [B, L], values [B, L]) padded with value 0."""
  length = int((x > 0).sum(1).max())
  items = np.zeros((len(x), length), np.int32)
  values = np.zeros((len(x), length), x.dtype)
  for u, row in enumerate(x):
    nz = np.flatnonzero(row)
    items[u, :len(nz)], values[u, :len(nz)] = nz, row[nz]
  return items, values


def test_sampled_softmax_with_every_item_sampled_is_the_full_softmax():
  logits, x = _data(8, b=5, n=11)
  items, values = _padded(x)
  pos_logits = np.take_along_axis(logits, items, axis=1)
  all_items = np.arange(logits.shape[1])
  got = likelihoods.sampled_multinomial_log_likelihood(
      jnp.asarray(pos_logits, jnp.float32), jnp.asarray(values, jnp.float32),
      jnp.asarray(logits, jnp.float32), jnp.zeros(len(all_items)), jnp.asarray(x > 0))
  want = likelihoods.multinomial_log_likelihood(jnp.asarray(logits, jnp.float32),
                                                jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sampled_softmax_normalizer_is_unbiased():
  """E[Σ_s exp(f_s) / (S q_s) · 1[s ∉ P]] = Σ_{j ∉ P} exp(f_j) under draws from q."""
  logits, x = _data(9, b=3, n=40)
  items, values = _padded(x)
  pos_logits = np.take_along_axis(logits, items, axis=1)
  q = np.random.default_rng(10).random(40) + 0.2
  q /= q.sum()
  n_s, n_draws = 16, 4000

  def z_hat(key):
    s = jax.random.choice(key, 40, (n_s,), p=jnp.asarray(q, jnp.float32))
    is_pos = jnp.asarray(x > 0)[:, s]
    ll = likelihoods.sampled_multinomial_log_likelihood(
        jnp.asarray(pos_logits, jnp.float32), jnp.asarray(values, jnp.float32),
        jnp.asarray(logits, jnp.float32)[:, s], jnp.log(n_s * jnp.asarray(q, jnp.float32))[s],
        is_pos)
    # ll = Σ v f - N log Z  =>  Z = exp((Σ v f - ll) / N).
    vf = jnp.sum(jnp.asarray(values * pos_logits, jnp.float32), axis=1)
    return jnp.exp((vf - ll) / jnp.asarray(values.sum(1), jnp.float32))

  z = np.asarray(jax.vmap(z_hat)(jax.random.split(jax.random.PRNGKey(0), n_draws)))
  exact = np.exp(logits).sum(1)
  np.testing.assert_allclose(z.mean(0), exact, rtol=0.03)
  # The positives are counted exactly: Z_hat never falls below their own mass.
  assert np.all(z >= (np.exp(logits) * (x > 0)).sum(1) * (1 - 1e-5))


def test_sampled_softmax_gradients():
  logits, x = _data(11, b=3, n=10)
  items, values = _padded(x)
  s = np.array([1, 3, 3, 7, 9])
  with jax.enable_x64(True):
    is_pos = jnp.asarray(x > 0)[:, s]
    log_e = jnp.log(jnp.full((len(s),), 0.5))

    def fn(f):
      return jnp.sum(likelihoods.sampled_multinomial_log_likelihood(
          jnp.take_along_axis(f, jnp.asarray(items), axis=1), jnp.asarray(values), f[:, s],
          log_e, is_pos))

    check_grads(fn, (jnp.asarray(logits),), order=1, modes=["rev"])
