"""n-gram baselines (Ko et al. Eq. 4–7) against hand counts; uniform error = log I."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import sequences
from recjax.eval import sequence as seq_eval
from recjax.models import ngram


def _error(config, train_seqs, n_items, history, tail):
  """E of the tails under the registered model trained (one block step) on `train_seqs`."""
  model = ngram.make(config)
  train = sequences.count_matrix(train_seqs, n_items)
  params, factors = model.init(jax.random.key(0), train, train_sequences=train_seqs)
  factors = model.block_step(params, factors, model.prepare(train, train_sequences=train_seqs),
                             None)
  eval_set = sequences.SequenceEvalSet(histories=history, tails=tail,
                                       users=np.arange(len(tail)),
                                       held_out=sequences.count_matrix(tail, n_items),
                                       per_user=True)
  out = seq_eval.evaluate_sequence(lambda st, b: model.score(st[0], st[1], b), (params, factors),
                                   eval_set, batch_size=4)
  return out["error"], np.array(out["per_user_error"], dtype=float)


def test_bigram_nll_matches_hand_count():
  # Items 0..2 (I = 3). Pairs (prev, next): (0,1),(1,0),(0,1),(1,2),(2,1):
  # row 0 -> {1: 2}, row 1 -> {0: 1, 2: 1}, row 2 -> {1: 1}.
  seqs = [np.array([0, 1, 0, 1, 2]), np.array([2, 1])]
  eps = 0.5
  history = [np.array([0]), np.array([1])]
  tail = [np.array([1, 2]), np.array([1])]
  err, per_user = _error(ngram.Config(order=2, eps=eps), seqs, 3, history, tail)
  # User 0: P(1|0) = (2+.5)/(2+1.5); P(2|1) = (1+.5)/(2+1.5).  User 1: P(1|1) = (0+.5)/(2+1.5).
  u0 = -(np.log(2.5 / 3.5) + np.log(1.5 / 3.5)) / 2
  u1 = -np.log(0.5 / 3.5)
  np.testing.assert_allclose(per_user, [u0, u1], rtol=1e-6)
  np.testing.assert_allclose(err, (u0 + u1) / 2, rtol=1e-6)


def test_unigram_is_smoothed_frequency():
  seqs = [np.array([0, 0, 1]), np.array([0])]
  model = ngram.fit(seqs, 4, ngram.Config(order=1, eps=1.0))
  lp = ngram.log_probs(ngram.count_arrays(model), None, np.arange(4), 4, model.config)
  np.testing.assert_allclose(np.exp(lp), np.array([4, 2, 1, 1]) / 8, rtol=1e-6)


def test_bigram_rows_are_distributions_and_lookups_match_scipy():
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, 7, size=30) for _ in range(5)] + [np.array([6, 6, 6])]
  model = ngram.fit(seqs, 7, ngram.Config(order=2, eps=0.1))
  counts = ngram.count_arrays(model)
  prev, nxt = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
  lp = np.asarray(ngram.log_probs(counts, prev, nxt, 7, model.config))
  np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-5)
  b = sp.csr_matrix(model.bigram_counts).toarray()
  expected = np.log(b + 0.1) - np.log(b.sum(axis=1, keepdims=True) + 0.7)
  np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_uniform_error_is_log_items():
  err, _ = _error(ngram.Config(order=0), [np.array([0, 1, 2, 3])], 50,
                  [np.array([0, 1])], [np.array([2, 3, 4])])
  np.testing.assert_allclose(err, seq_eval.uniform_error(50), rtol=1e-6)
  np.testing.assert_allclose(err, np.log(50), rtol=1e-6)


def test_errors_reject_bad_inputs():
  with pytest.raises(ValueError, match="eps"):
    ngram.fit([np.array([0, 1])], 2, ngram.Config(order=1, eps=0.0))
  with pytest.raises(ValueError, match="<= 0"):
    seq_eval.sequence_error([np.array([0.5])])
  with pytest.raises(ValueError, match="cannot rank items"):
    ngram.make(ngram.Config()).score({}, {}, np.zeros((1, 3)))
