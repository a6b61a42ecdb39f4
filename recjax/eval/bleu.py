"""Corpus BLEU (Papineni, Roukos, Ward & Zhu, ACL 2002), up to 4-grams.

For candidates c_1..c_N, each with one or more references:

  p_n  = Σ_s Σ_{g ∈ n-grams(c_s)} min(count_{c_s}(g), max_r count_{r}(g))
         / Σ_s |n-grams(c_s)|                       (clipped ("modified") precision)
  BP   = 1 if c > r else exp(1 − r / c)             (brevity penalty)
  BLEU = BP · exp(Σ_{n=1}^{N} w_n log p_n),  w_n = 1/N,

where c is the total candidate length and r the effective reference length:
the sum over sentences of the reference length closest to the candidate's
(ties go to the shorter reference, as in NIST mteval / multi-bleu.perl /
sacrebleu).  Counts are summed over the corpus *before* the ratio, so this is
corpus BLEU, not an average of sentence scores.

Smoothing.  The default is none, the paper's definition: if some order has no
match in the whole corpus, BLEU is 0 (and an empty candidate corpus scores 0).
``smoothing="floor"`` replaces a zero match count by ``floor`` (sacrebleu's
"floor" method, default 0.1) so short test corpora still get a finite score;
say which one a reported number used.  Scores are in [0, 1]; papers (the CRAE
paper's Table 3 included) print 100 x BLEU.

Host-side numpy/python: the inputs are ragged token lists, and the counting is
dictionary work.
"""

from __future__ import annotations

import collections
import math
from typing import Hashable, Sequence

SMOOTHING = ("none", "floor")


def ngram_counts(tokens: Sequence[Hashable], n: int) -> collections.Counter:
  """The n-grams of a token sequence (tuples) with their counts."""
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _closest_reference_length(candidate_length: int, lengths: Sequence[int]) -> int:
  return min(lengths, key=lambda r: (abs(r - candidate_length), r))


def corpus_bleu(candidates: Sequence[Sequence[Hashable]],
                references: Sequence[Sequence[Sequence[Hashable]]], *, max_order: int = 4,
                smoothing: str = "none", floor: float = 0.1) -> dict:
  """Corpus BLEU of tokenized candidates against their references.

  Args:
    candidates: N token sequences (any hashable tokens: words or ids).
    references: N lists of reference token sequences (at least one each).
    max_order: the largest n-gram order N (4 for BLEU-4).
    smoothing: "none" (Papineni: a zero precision gives BLEU 0) or "floor"
      (a zero match count becomes `floor`).
    floor: the count that replaces a zero match count under "floor".

  Returns:
    {"bleu": float in [0, 1], "precisions": [p_1..p_N], "brevity_penalty",
     "candidate_length": c, "reference_length": r, "matches": [...],
     "totals": [...]}.
  """
  if len(candidates) != len(references):
    raise ValueError(f"corpus_bleu: {len(candidates)} candidates but {len(references)} "
                     "reference lists")
  if smoothing not in SMOOTHING:
    raise ValueError(f"corpus_bleu: smoothing must be one of {SMOOTHING}, got {smoothing!r}")
  if max_order < 1:
    raise ValueError(f"corpus_bleu: max_order must be >= 1, got {max_order}")
  matches = [0] * max_order
  totals = [0] * max_order
  cand_len = ref_len = 0
  for s, (cand, refs) in enumerate(zip(candidates, references)):
    if len(refs) == 0:
      raise ValueError(f"corpus_bleu: candidate {s} has no reference")
    cand = list(cand)
    cand_len += len(cand)
    ref_len += _closest_reference_length(len(cand), [len(r) for r in refs])
    for n in range(1, max_order + 1):
      counts = ngram_counts(cand, n)
      best = collections.Counter()
      for r in refs:
        best |= ngram_counts(list(r), n)  # Elementwise max over references.
      matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
      totals[n - 1] += max(len(cand) - n + 1, 0)
  precisions = []
  for m, t in zip(matches, totals):
    if m == 0 and smoothing == "floor" and t > 0:
      m = floor
    precisions.append(m / t if t > 0 else 0.0)
  if cand_len == 0:
    bp = 0.0
  else:
    bp = 1.0 if cand_len > ref_len else math.exp(1.0 - ref_len / cand_len)
  if min(precisions) <= 0.0:
    bleu = 0.0
  else:
    bleu = bp * math.exp(sum(math.log(p) for p in precisions) / max_order)
  return {"bleu": bleu, "precisions": precisions, "brevity_penalty": bp,
          "candidate_length": cand_len, "reference_length": ref_len, "matches": matches,
          "totals": totals}
