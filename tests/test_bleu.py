"""Corpus BLEU against hand-worked examples (Papineni et al. 2002)."""

import math

import pytest

from recjax.eval.bleu import corpus_bleu, ngram_counts


def test_two_sentence_corpus_worked_by_hand():
  # Sentence 1: "the cat sat on the mat" vs "the cat is on the mat".
  #   1-grams: the(2, ref 2) cat sat(0) on mat -> 5/6;  2-grams: the cat, on the, the mat -> 3/5;
  #   3-grams: on the mat -> 1/4;  4-grams: none -> 0/3.
  # Sentence 2: "a b c d e" vs "a b c d e f g": every n-gram matches -> 5/5, 4/4, 3/3, 2/2.
  # Corpus: p = 10/11, 7/9, 4/7, 2/5; c = 11, r = 6 + 7 = 13 -> BP = exp(1 - 13/11);
  # BLEU = exp(-2/11) (10/11 · 7/9 · 4/7 · 2/5)^(1/4) = exp(-2/11) (16/99)^(1/4).
  cands = ["the cat sat on the mat".split(), "a b c d e".split()]
  refs = [["the cat is on the mat".split()], ["a b c d e f g".split()]]
  out = corpus_bleu(cands, refs)
  assert out["matches"] == [10, 7, 4, 2]
  assert out["totals"] == [11, 9, 7, 5]
  assert out["precisions"] == pytest.approx([10 / 11, 7 / 9, 4 / 7, 2 / 5])
  assert (out["candidate_length"], out["reference_length"]) == (11, 13)
  assert out["brevity_penalty"] == pytest.approx(math.exp(-2 / 11))
  assert out["bleu"] == pytest.approx(math.exp(-2 / 11) * (16 / 99) ** 0.25, rel=1e-12)


def test_clipping_and_no_smoothing():
  # Papineni's example: "the the the the the the the" against two references: p_1 = 2/7.
  cand = ["the"] * 7
  refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
  out = corpus_bleu([cand], [refs], max_order=1)
  assert out["precisions"] == [pytest.approx(2 / 7)]
  assert out["reference_length"] == 7 and out["brevity_penalty"] == 1.0  # c = r = 7: exp(0).
  assert out["bleu"] == pytest.approx(2 / 7)
  # With 4-grams nothing of order >= 2 matches: unsmoothed BLEU is exactly 0.
  assert corpus_bleu([cand], [refs])["bleu"] == 0.0
  floored = corpus_bleu([cand], [refs], smoothing="floor", floor=0.1)
  assert floored["precisions"] == pytest.approx([2 / 7, 0.1 / 6, 0.1 / 5, 0.1 / 4])
  assert floored["bleu"] == pytest.approx((2 / 7 * 0.1 / 6 * 0.1 / 5 * 0.1 / 4) ** 0.25)


def test_closest_reference_length_and_brevity_penalty():
  # Candidate of 4 words, references of 3 and 5 words: both are 1 away; the shorter one (3) counts.
  cand = "a b c d".split()
  refs = ["a b c".split(), "a b c d e".split()]
  out = corpus_bleu([cand], [refs], max_order=2)
  assert out["reference_length"] == 3 and out["brevity_penalty"] == 1.0
  short = corpus_bleu([["a", "b"]], [[list("abcd")]], max_order=2)
  assert short["brevity_penalty"] == pytest.approx(math.exp(1 - 4 / 2))
  assert short["bleu"] == pytest.approx(math.exp(-1.0))  # p_1 = p_2 = 1.
  # Identical corpora score 1; integer tokens work like words.
  assert corpus_bleu([[1, 2, 3, 4, 5]], [[[1, 2, 3, 4, 5]]])["bleu"] == pytest.approx(1.0)


def test_ngram_counts_and_errors():
  assert ngram_counts("a b a b".split(), 2) == {("a", "b"): 2, ("b", "a"): 1}
  assert corpus_bleu([[]], [[["a"]]])["bleu"] == 0.0
  with pytest.raises(ValueError, match="reference lists"):
    corpus_bleu([["a"]], [])
  with pytest.raises(ValueError, match="no reference"):
    corpus_bleu([["a"]], [[]])
  with pytest.raises(ValueError, match="smoothing"):
    corpus_bleu([["a"]], [[["a"]]], smoothing="add1")
