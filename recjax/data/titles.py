"""Item titles as word sequences (CRAE reads each title in order, not as a bag of words).

citeulike-a ships its titles (``citeutitles.txt``) and the 8,000-word
vocabulary of CTR/CDL (``vocabulary.dat``; stop words are not in it).  A title
becomes the ids of its words over that vocabulary, in reading order, after
`recjax.data.content.tokenize` (lower-cased runs of letters and digits).

Words outside the vocabulary (36% of the citeulike-a title tokens, nearly all
stop words: "of", "the", "in", ...) are either **dropped** (the default, so a
title reads as its ordered content words: "metabolic world escherichia coli
small") or mapped to one **<unk>** id, ``len(vocabulary)``.  71 of the 16,980
citeulike-a titles have no vocabulary word at all and become empty sequences
under "drop".

numpy only, like the rest of `recjax.data`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from recjax.data.content import tokenize

OOV_POLICIES = ("drop", "unk")
PAD = -1  # The padding id of `title_sequences`.


def title_sequences(texts: Sequence[str], vocabulary: Sequence[str], *, oov: str = "drop",
                    max_length: int | None = None) -> np.ndarray:
  """Each text as the word ids of its tokens, in order, padded with -1.

  Args:
    texts: one string per item, in item order.
    vocabulary: the words; word ``vocabulary[w]`` gets id w.  Duplicates are an error.
    oov: "drop" (words outside the vocabulary are left out) or "unk" (they
      become the id ``len(vocabulary)``).
    max_length: keep at most this many ids per text (the first ones); None keeps all.

  Returns:
    int32 [len(texts), L] ids, each row's ids first and -1 after them; L is the
    longest row (at least 1, so the array is never zero-width).
  """
  if oov not in OOV_POLICIES:
    raise ValueError(f"title_sequences: oov must be one of {OOV_POLICIES}, got {oov!r}")
  if max_length is not None and max_length < 1:
    raise ValueError(f"title_sequences: max_length must be >= 1 or None, got {max_length}")
  index = {w: i for i, w in enumerate(vocabulary)}
  if len(index) != len(vocabulary):
    raise ValueError(f"title_sequences: the vocabulary has {len(vocabulary) - len(index)} "
                     "duplicate words")
  unk = len(vocabulary)
  rows = []
  for text in texts:
    if oov == "drop":
      ids = [index[t] for t in tokenize(text) if t in index]
    else:
      ids = [index.get(t, unk) for t in tokenize(text)]
    rows.append(ids if max_length is None else ids[:max_length])
  width = max([1] + [len(r) for r in rows])
  out = np.full((len(rows), width), PAD, np.int32)
  for d, ids in enumerate(rows):
    out[d, :len(ids)] = ids
  return out


def sequence_lengths(sequences: np.ndarray) -> np.ndarray:
  """int32 [n] number of ids of each row of a -1-padded [n, L] id array."""
  return np.sum(np.asarray(sequences) >= 0, axis=1).astype(np.int32)


def as_lists(sequences: np.ndarray) -> list[list[int]]:
  """The rows of a -1-padded id array as lists of ids (e.g. BLEU references)."""
  seqs = np.asarray(sequences)
  return [row[row >= 0].tolist() for row in seqs]


def decode(ids: Sequence[int], vocabulary: Sequence[str], unk: str = "<unk>") -> str:
  """The words of a list of ids, space-separated; id len(vocabulary) reads as `unk`."""
  return " ".join(vocabulary[i] if i < len(vocabulary) else unk for i in ids if i >= 0)
