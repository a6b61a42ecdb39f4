"""n-gram baselines (Ko et al. Eq. 4–7) against hand counts; uniform error = log I."""

import numpy as np
import pytest

from recjax.eval import sequence as seq_eval
from recjax.models import ngram


def test_bigram_nll_matches_hand_count():
  # Items 0..2 (I = 3). Bigrams (prev -> next): 0->1, 1->0, 0->1, 1->2 ; 2->1.
  seqs = [np.array([0, 1, 0, 1, 2]), np.array([2, 1])]
  eps = 0.5
  model = ngram.fit(seqs, 3, ngram.Config(order=2, eps=eps))
  # From prev 1: counts to (0, 1, 2) = (1, 1, 1) plus 2->1 is prev 2. Row 1 total 2.
  # Careful count: pairs (0,1),(1,0),(0,1),(1,2),(2,1): row 0 -> {1: 2}, row 1 -> {0: 1, 2: 1}, row 2 -> {1: 1}.
  history = [np.array([0]), np.array([1])]
  tail = [np.array([1, 2]), np.array([1])]
  lps = ngram.tail_log_probs(model, history, tail)
  # User 0: P(1|0) = (2+.5)/(2+1.5); P(2|1) = (1+.5)/(2+1.5).  User 1: P(1|1) = (0+.5)/(2+1.5).
  u0 = -(np.log(2.5 / 3.5) + np.log(1.5 / 3.5)) / 2
  u1 = -np.log(0.5 / 3.5)
  err, per_user = seq_eval.sequence_error(lps)
  np.testing.assert_allclose(per_user, [u0, u1], rtol=1e-12)
  np.testing.assert_allclose(err, (u0 + u1) / 2, rtol=1e-12)


def test_unigram_is_smoothed_frequency():
  seqs = [np.array([0, 0, 1]), np.array([0])]
  model = ngram.fit(seqs, 4, ngram.Config(order=1, eps=1.0))
  lp = ngram.log_prob(model, None, np.arange(4))
  np.testing.assert_allclose(np.exp(lp), np.array([4, 2, 1, 1]) / 8)


def test_bigram_rows_are_distributions():
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, 7, size=30) for _ in range(5)]
  model = ngram.fit(seqs, 7, ngram.Config(order=2, eps=0.1))
  for prev in range(7):
    p = np.exp(ngram.log_prob(model, np.full(7, prev), np.arange(7)))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)


def test_uniform_error_is_log_items():
  seqs = [np.array([0, 1, 2, 3])]
  model = ngram.fit(seqs, 50, ngram.Config(order=0))
  lps = ngram.tail_log_probs(model, [np.array([0, 1])], [np.array([2, 3, 4])])
  err, _ = seq_eval.sequence_error(lps)
  np.testing.assert_allclose(err, seq_eval.uniform_error(50))
  np.testing.assert_allclose(err, np.log(50))


def test_errors_reject_bad_inputs():
  with pytest.raises(ValueError, match="eps"):
    ngram.fit([np.array([0, 1])], 2, ngram.Config(order=1, eps=0.0))
  with pytest.raises(ValueError, match="<= 0"):
    seq_eval.sequence_error([np.array([0.5])])
