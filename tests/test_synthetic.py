"""Tests for recjax.data.synthetic."""

import numpy as np
import pytest

from recjax.data import synthetic


@pytest.fixture(scope="module")
def medium():
  # A 1/20 scale ML-20M-like matrix; the full size is timed by hand (see report).
  return synthetic.synthetic_implicit(6800, 2000, 500_000, seed=0, min_user_items=5,
                                      user_sigma=1.2)


def test_shape_nnz_binary_no_empty_users(medium):
  m = medium
  assert m.shape == (6800, 2000)
  assert m.nnz == 500_000
  assert m.dtype == np.float32 and np.all(m.data == 1.0)
  m2 = m.copy()
  m2.sum_duplicates()
  assert m2.nnz == m.nnz and m.has_sorted_indices
  assert np.diff(m.indptr).min() >= 5


def test_deterministic_by_seed():
  a = synthetic.synthetic_implicit(500, 300, 9000, seed=1)
  b = synthetic.synthetic_implicit(500, 300, 9000, seed=1)
  c = synthetic.synthetic_implicit(500, 300, 9000, seed=2)
  assert (a != b).nnz == 0
  assert (a != c).nnz > 0


def test_heavy_tailed_popularity_and_skewed_users(medium):
  deg = np.sort(np.asarray(medium.sum(0)).ravel())[::-1]
  top = deg[:len(deg) // 100].sum() / medium.nnz
  assert top > 0.10
  users = np.diff(medium.indptr)
  assert users.max() > 5 * np.median(users)


def test_planted_clusters_are_visible():
  m = synthetic.synthetic_implicit(2000, 400, 40000, seed=0, n_clusters=4,
                                   cluster_strength=0.8, item_alpha=0.5)
  # Items co-occur far more inside a cluster: the item-item co-occurrence matrix
  # has a few dominant eigenvalues (rank ~ n_clusters + 1).
  x = m.toarray()
  x -= x.mean(0)
  sv = np.linalg.svd(x, compute_uv=False)
  assert sv[3] > 2 * sv[5]


def test_edge_cases():
  # Every user gets every item.
  m = synthetic.synthetic_implicit(5, 4, 20, seed=0)
  assert m.nnz == 20 and (m.toarray() == 1).all()
  # Minimal: one item per user.
  m = synthetic.synthetic_implicit(10, 3, 10, seed=0)
  assert np.all(np.diff(m.indptr) == 1)
  # Heavy users (more than a tenth of the items) take the exact path.
  m = synthetic.synthetic_implicit(30, 100, 2000, seed=0, user_sigma=2.0)
  assert m.nnz == 2000 and np.diff(m.indptr).max() > 10
  with pytest.raises(ValueError):
    synthetic.synthetic_implicit(10, 3, 31)
  with pytest.raises(ValueError):
    synthetic.synthetic_implicit(10, 3, 9)
