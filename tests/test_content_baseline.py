"""experiments/content_baseline.py: the word vectors and the profile-cosine score against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jsp

from experiments import content_baseline


def test_item_vectors_are_unit_tfidf_rows():
  counts = np.array([[2, 0, 1], [0, 0, 0], [1, 1, 0], [0, 3, 0]], np.float32)
  got = content_baseline.item_vectors(sp.csr_matrix(counts), "tfidf").toarray()
  idf = np.log(4 / np.array([2, 2, 1]))
  want = counts * idf
  want[[0, 2, 3]] /= np.linalg.norm(want[[0, 2, 3]], axis=1, keepdims=True)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert not got[1].any()  # An item without words stays 0.
  binary = content_baseline.item_vectors(sp.csr_matrix(counts), "binary").toarray()
  np.testing.assert_allclose(binary[0], [2 ** -0.5, 0, 2 ** -0.5], rtol=1e-6)
  with pytest.raises(ValueError, match="weighting"):
    content_baseline.item_vectors(sp.csr_matrix(counts), "bm25")


def test_score_is_cosine_with_the_profile_of_fold_in_items():
  rng = np.random.default_rng(0)
  x = content_baseline.item_vectors(sp.csr_matrix(rng.poisson(0.3, (12, 9)).astype(np.float32)))
  inputs = (rng.random((4, 12)) < 0.3).astype(np.float32)
  got = np.asarray(content_baseline.score(jsp.BCOO.from_scipy_sparse(x), jnp.asarray(inputs)))
  dense = x.toarray()
  np.testing.assert_allclose(got, (inputs @ dense) @ dense.T, rtol=1e-5, atol=1e-6)


def test_importable_beside_the_other_binaries():
  # absl flags are global: importing this module beside crae_bleu must not redefine its flags.
  from experiments import crae_bleu  # noqa: F401  pylint: disable=unused-import
  import importlib
  importlib.reload(content_baseline)
