"""Item content as hybrid models read it: bags of words, their scaling, fixed-shape batches.

citeulike-t ships its bag of words (``mult.dat``); citeulike-a here has only
the article titles (``citeutitles.txt``) and the 8,000-word vocabulary of the
missing ``mult.dat``, so `bag_of_words` rebuilds a (title-only) bag of words
over that vocabulary.  CDL/CVAE scale each word's counts by that word's
largest count over all articles (`scale_by_word_max`; CVAE paper §3.1), which
puts every entry in [0, 1]; `scale` names every scaling the hybrids offer, and
`marginal_output_bias` is where their networks' output bias starts.

numpy/scipy only, like the rest of `recjax.data`.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
  """Lower-cased runs of letters and digits ("Protein-protein networks." -> protein, protein, networks)."""
  return _TOKEN.findall(text.lower())


def bag_of_words(texts: Sequence[str], vocabulary: Sequence[str]) -> sp.csr_matrix:
  """Word counts of each text over a fixed vocabulary; words outside it are dropped.

  Args:
    texts: one string per document (item), in item order.
    vocabulary: the words, by column; duplicates are an error.

  Returns:
    float32 csr [len(texts), len(vocabulary)] of counts.
  """
  index = {w: i for i, w in enumerate(vocabulary)}
  if len(index) != len(vocabulary):
    raise ValueError(f"bag_of_words: the vocabulary has {len(vocabulary) - len(index)} "
                     "duplicate words")
  rows, cols = [], []
  for d, text in enumerate(texts):
    ids = [index[t] for t in tokenize(text) if t in index]
    rows.extend([d] * len(ids))
    cols.extend(ids)
  counts = sp.csr_matrix((np.ones(len(rows), np.float32), (np.asarray(rows, np.int64),
                                                           np.asarray(cols, np.int64))),
                         shape=(len(texts), len(vocabulary)), dtype=np.float32)
  counts.sum_duplicates()
  return counts


def scale_by_word_max(content: sp.spmatrix) -> sp.csr_matrix:
  """Each word's counts divided by its largest count over all items (entries in [0, 1]).

  "All the content vectors are then normalized over the maximum occurrences
  of each word in all articles" (Li & She 2017, §3.1).  Words that never occur
  stay 0.

  Args:
    content: [n_items, n_words] non-negative counts.

  Returns:
    float32 csr of the same shape.
  """
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  x.sum_duplicates()
  if x.nnz and x.data.min() < 0:
    raise ValueError("scale_by_word_max: content has negative entries")
  word_max = np.asarray(x.max(axis=0).todense()).ravel()
  scale = np.where(word_max > 0, word_max, 1.0).astype(np.float32)
  x.data /= scale[x.indices]
  return x


def binarize(content: sp.spmatrix) -> sp.csr_matrix:
  """1 where a word occurs in an item, else 0 (float32 csr)."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  x.sum_duplicates()
  x.eliminate_zeros()
  x.data[:] = 1.0
  return x


SCALES = ("word_max", "row_max", "binary", "none")  # The `how` of `scale`.


def scale_by_row_max(content: sp.spmatrix) -> sp.csr_matrix:
  """Each item's counts divided by its own largest count (float32 csr; empty rows stay empty)."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  x.sum_duplicates()
  x.eliminate_zeros()
  lengths = np.diff(x.indptr)
  row_max = np.asarray(x.max(axis=1).todense()).ravel()
  x.data /= np.repeat(np.maximum(row_max, 1e-30), lengths).astype(np.float32)
  return x


def scale(content: sp.spmatrix, how: str) -> sp.csr_matrix:
  """The content rows as a hybrid's network reads them: float32 csr, explicit zeros dropped.

  Args:
    content: [n_items, n_words] non-negative word counts.
    how: one of `SCALES`: "word_max" (`scale_by_word_max`, the CVAE paper's),
      "row_max" (`scale_by_row_max`), "binary" (`binarize`) or "none" (the
      counts themselves).
  """
  if how == "word_max":
    x = scale_by_word_max(content)
  elif how == "row_max":
    return scale_by_row_max(content)
  elif how == "binary":
    return binarize(content)
  elif how == "none":
    x = sp.csr_matrix(content, dtype=np.float32, copy=True)
    x.sum_duplicates()
  else:
    raise ValueError(f"content_scale must be one of {SCALES}, got {how!r}")
  x.eliminate_zeros()
  return x


def marginal_output_bias(content: sp.spmatrix, likelihood: str = "bernoulli") -> np.ndarray:
  """float32 [n_words]: the bias-only optimum of an output layer that reconstructs `content`.

  "bernoulli": the logit of each word's mean over items (clipped to [1e-6,
  1 - 1e-6]); "gaussian": the mean itself.  CDL's and CVAE's output biases
  start here instead of at 0: the optimal logits of rare words are around -8,
  which Adam at 1e-3 takes thousands of steps to reach from 0 (measured: a zero
  start had not reached the bias-only reconstruction after 5 epochs on
  citeulike-a).
  """
  mean = np.asarray(content.mean(axis=0), np.float64).ravel()
  if likelihood == "gaussian":
    return mean.astype(np.float32)
  if likelihood != "bernoulli":
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
  p = np.clip(mean, 1e-6, 1 - 1e-6)
  return (np.log(p) - np.log1p(-p)).astype(np.float32)


def content_batches(content: sp.csr_matrix, batch_size: int, order: np.ndarray | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Fixed-shape dense batches of content rows, the last one padded.

  Args:
    content: csr [n_items, n_words].
    batch_size: rows per batch.
    order: the row order (e.g. a shuffled permutation); default 0..n-1.

  Yields:
    (index int32 [B] with -1 on padding, rows float32 [B, n_words] with zero
    padding, mask bool [B]).
  """
  if batch_size < 1:
    raise ValueError(f"content_batches: batch_size must be >= 1, got {batch_size}")
  n = content.shape[0]
  order = np.arange(n) if order is None else np.asarray(order)
  for start in range(0, len(order), batch_size):
    ids = order[start:start + batch_size]
    index = np.full(batch_size, -1, np.int32)
    index[:len(ids)] = ids
    rows = np.zeros((batch_size, content.shape[1]), np.float32)
    content[ids].toarray(out=rows[:len(ids)])
    yield index, rows, index >= 0
