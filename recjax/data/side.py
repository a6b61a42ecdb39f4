"""Side information a model names in its ``side_keys``, built from a dataset and its split.

Each entry of `PROVIDERS` turns (dataset, split) into one side input whose
rows follow the split's item columns; `side_information` builds the keys a
model asks for and says what it built.  A dataset that lacks what a key needs
gives no entry (the runner then names the missing key).  numpy/scipy only.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from recjax.data import content, sequences, titles


def _item_content(dataset, split, log) -> sp.csr_matrix | None:
  """Items x words counts: the dataset's own, else a bag of words of its item texts."""
  if dataset.item_content is not None:
    return dataset.item_content[split.items]
  if dataset.item_text is None or dataset.vocabulary is None:
    return None
  bag = content.bag_of_words(dataset.item_text, dataset.vocabulary)[split.items]
  log(f"item_content: bag of words of the item texts over the {len(dataset.vocabulary)}-word "
      f"vocabulary ({bag.nnz} non-zeros)")
  return bag


def _item_titles(dataset, split, log):
  """Each item's title as a word-id sequence over the dataset's vocabulary (CRAE)."""
  del log
  if dataset.item_text is None or not dataset.vocabulary:
    return None
  return titles.title_sequences(dataset.item_text, dataset.vocabulary)[split.items]


PROVIDERS: dict[str, Callable[[Any, Any, Callable[[str], None]], Any]] = {
    "item_content": _item_content,
    "item_titles": _item_titles,
    "train_sequences": sequences.train_sequences,
}


def side_information(dataset, split, keys, log=print) -> dict[str, Any]:
  """{key: side input} for each of `keys` the dataset can provide.

  Raises:
    ValueError: a key no provider knows (a model naming a side input that does not exist).
  """
  unknown = [k for k in keys if k not in PROVIDERS]
  if unknown:
    raise ValueError(f"no side information called {unknown}; known: {sorted(PROVIDERS)}")
  side = {}
  for key in keys:
    value = PROVIDERS[key](dataset, split, log)
    if value is not None:
      side[key] = value
  return side


def hide_item_content(item_content: sp.spmatrix, hidden: np.ndarray) -> sp.csr_matrix:
  """`item_content` with the rows of the `hidden` items emptied (bool [n_items])."""
  keep = sp.diags((~np.asarray(hidden, bool)).astype(np.float32))
  out = sp.csr_matrix(keep @ sp.csr_matrix(item_content))
  out.eliminate_zeros()
  return out
