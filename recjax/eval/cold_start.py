"""The cold-start protocol: held-out interactions with items no one touched in training.

Such items can be reached only through side information (item content), so a
hybrid's cold-start test ranks them alone (`cold_items` as the candidates of
the ranking protocol) and counts only their held-out interactions.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def cold_items(split) -> np.ndarray:
  """[n_items] bool: the items with no interaction in training or in any fold-in row."""
  seen = np.asarray(sp.csr_matrix(split.train).getnnz(axis=0)) > 0
  for eval_set in (split.validation, split.test):
    fold_in = getattr(eval_set, "fold_in", None)
    if fold_in is not None:
      seen |= np.asarray(sp.csr_matrix(fold_in).getnnz(axis=0)) > 0
  return ~seen
