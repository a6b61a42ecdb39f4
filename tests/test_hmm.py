"""Baum–Welch in JAX against the numpy forward algorithm; EM never lowers the likelihood."""

import jax
import jax.numpy as jnp
import numpy as np

from recjax.data import sequences
from recjax.ops import hmm


def _numpy_forward(pi, a, b, seq):
  alpha = pi * b[:, seq[0]]
  for x in seq[1:]:
    alpha = (alpha @ a) * b[:, x]
  return np.log(alpha.sum())


def _data(seed=0, n_items=6):
  rng = np.random.default_rng(seed)
  seqs = [rng.integers(0, n_items, size=n) for n in (7, 3, 12, 1)]
  items, lengths = sequences.pad_sequences(seqs, multiple=8)
  mask = (np.arange(items.shape[1])[None] < lengths[:, None]).astype(np.float32)
  return seqs, jnp.asarray(items), jnp.asarray(mask)


def test_log_likelihood_matches_numpy_forward():
  seqs, items, mask = _data()
  params = hmm.init(jax.random.key(0), 3, 6)
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  want = sum(_numpy_forward(p["pi"], p["A"], p["B"], s) for s in seqs)
  got = float(hmm.log_likelihood(params, items, mask))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Predictive log-probs of each prefix sum to the prefix log-likelihood.
  lp = np.asarray(hmm.predictive_log_probs(params, items, mask))
  for n in range(1, 8):
    np.testing.assert_allclose(lp[0, :n].sum(), _numpy_forward(p["pi"], p["A"], p["B"], seqs[0][:n]),
                               rtol=1e-5)


def test_expected_counts_are_consistent():
  seqs, items, mask = _data(1)
  params = hmm.init(jax.random.key(1), 4, 6)
  c = hmm.e_step(params, items, mask)
  n_events = sum(map(len, seqs))
  np.testing.assert_allclose(float(c["B"].sum()), n_events, rtol=1e-5)
  np.testing.assert_allclose(float(c["A"].sum()), n_events - len(seqs), rtol=1e-5)
  np.testing.assert_allclose(float(c["pi"].sum()), len(seqs), rtol=1e-5)


def test_baum_welch_never_lowers_likelihood():
  _, items, mask = _data(2)
  params = hmm.init(jax.random.key(2), 3, 6)
  prev = -np.inf
  for _ in range(15):
    counts = hmm.e_step(params, items, mask)
    ll = float(counts["loglik"])
    assert ll >= prev - 1e-4
    prev = ll
    params = hmm.m_step(counts)
