"""Tests for recjax.data.splits."""

import pathlib

import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import splits
from recjax.data.synthetic import synthetic_implicit
from recjax.data.types import Interactions

ML1M = pathlib.Path(__file__).resolve().parents[2] / "shared/data/movielens-1m-lightgcnpp"


def random_matrix(n_users=400, n_items=120, density=0.08, seed=0, binary=False):
  m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed,
                dtype=np.float32)
  if binary:
    m.data[:] = 1.0
  else:
    m.data = np.ceil(m.data * 5)
  return m


def row_set(m, r):
  return set(m.indices[m.indptr[r]:m.indptr[r + 1]].tolist())


def check_strong(m, s, n_h):
  n_users = m.shape[0]
  tr, vd, te = s.train_users, s.validation.users, s.test.users
  assert len(vd) == len(te) == n_h
  assert len(tr) == n_users - 2 * n_h
  allu = np.concatenate([tr, vd, te])
  assert len(np.unique(allu)) == n_users  # disjoint and covering
  items = s.items
  assert np.all(np.diff(items) > 0)
  # Items are exactly those of the training users.
  assert set(items.tolist()) == set(m[tr].indices.tolist())
  assert s.train.shape == (len(tr), len(items))
  assert (s.train != m[tr][:, items]).nnz == 0
  for ev in (s.validation, s.test):
    assert ev.fold_in.shape == ev.held_out.shape == (n_h, len(items))
    assert ev.fold_in.multiply(ev.held_out).nnz == 0
    restricted = m[ev.users][:, items]
    assert (ev.fold_in + ev.held_out != restricted).nnz == 0  # values kept too
  return s


def test_strong_generalization_properties():
  m = random_matrix(binary=False)
  s = check_strong(m, splits.strong_generalization(m, 50, seed=3), 50)
  assert s.protocol == "strong"
  for ev in (s.validation, s.test):
    n = np.diff((ev.fold_in + ev.held_out).indptr)
    n_out = np.diff(ev.held_out.indptr)
    big = n >= 5
    assert np.array_equal(n_out[big], (0.2 * n[big]).astype(int))
    assert np.all(n_out[~big] == 0)


def test_strong_generalization_fraction_and_small_users():
  rng = np.random.default_rng(0)
  # Users with 1..12 items so some have < 5.
  n_users, n_items = 300, 60
  rows = [rng.choice(n_items, size=rng.integers(1, 13), replace=False) for _ in range(n_users)]
  m = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32),
                     (np.repeat(np.arange(n_users), [len(r) for r in rows]),
                      np.concatenate(rows))), shape=(n_users, n_items))
  s = check_strong(m, splits.strong_generalization(m, 0.1, seed=1), 30)
  for ev in (s.validation, s.test):
    n = np.diff((ev.fold_in + ev.held_out).indptr)
    assert np.all(np.diff(ev.held_out.indptr)[n < 5] == 0)
    assert np.any(n < 5)


def test_strong_generalization_drops_items_unseen_in_training():
  # Item 9 is only used by user 0; whichever role user 0 gets, the item set is right.
  m = random_matrix(n_users=50, n_items=9, density=0.5, seed=1)
  m = sp.hstack([m, sp.csr_matrix(([1.0], ([0], [0])), shape=(50, 1))]).tocsr()
  for seed in range(5):
    s = check_strong(m, splits.strong_generalization(m, 10, seed=seed), 10)
    assert (9 in s.items) == (0 in s.train_users)


def test_strong_generalization_deterministic():
  m = random_matrix()
  a = splits.strong_generalization(m, 40, seed=7)
  b = splits.strong_generalization(m, 40, seed=7)
  c = splits.strong_generalization(m, 40, seed=8)
  assert np.array_equal(a.test.users, b.test.users)
  assert (a.test.held_out != b.test.held_out).nnz == 0
  assert (a.validation.fold_in != b.validation.fold_in).nnz == 0
  assert not np.array_equal(a.test.users, c.test.users)


def test_strong_generalization_about_80_20_on_synthetic():
  m = synthetic_implicit(3000, 500, 60000, seed=0)
  s = splits.strong_generalization(m, 300, seed=0)
  n_in, n_out = s.test.fold_in.nnz, s.test.held_out.nnz
  assert 0.17 < n_out / (n_in + n_out) < 0.21


def read_lightgcn(path):
  users, items = [], []
  for line in path.read_text().splitlines():
    parts = line.split()
    if len(parts) > 1:
      users += [int(parts[0])] * (len(parts) - 1)
      items += [int(x) for x in parts[1:]]
  return np.array(users), np.array(items)


@pytest.mark.skipif(not ML1M.exists(), reason="shared ML-1M data not available")
def test_strong_generalization_ml1m():
  parts = [read_lightgcn(ML1M / f) for f in ("train.txt", "valid.txt", "test.txt")]
  u = np.concatenate([p[0] for p in parts])
  i = np.concatenate([p[1] for p in parts])
  m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)))
  m.sum_duplicates()
  assert m.nnz == 836_478
  s = splits.strong_generalization(m, 600, seed=0)
  check_strong(m, s, 600)
  dropped = sum(m[ev.users].nnz - ev.fold_in.nnz - ev.held_out.nnz
                for ev in (s.validation, s.test))
  total = s.train.nnz + sum(ev.fold_in.nnz + ev.held_out.nnz
                            for ev in (s.validation, s.test)) + dropped
  assert total == m.nnz
  assert s.train.nnz == m[s.train_users].nnz


def test_p_items_per_user():
  m = random_matrix(binary=True)
  tr, te = splits.p_items_per_user(m, 5, seed=0)
  n = np.diff(m.indptr)
  assert np.array_equal(np.diff(tr.indptr), np.minimum(n, 5))
  assert np.array_equal(np.diff(te.indptr), np.where(n > 5, n - 5, 0))
  assert (tr + te != m).nnz == 0 and tr.multiply(te).nnz == 0
  tr2, _ = splits.p_items_per_user(m, 5, seed=0)
  tr3, _ = splits.p_items_per_user(m, 5, seed=1)
  assert (tr != tr2).nnz == 0 and (tr != tr3).nnz > 0


def test_weak_generalization_split():
  m = random_matrix(binary=True)
  tr, te = splits.p_items_per_user(m, 3, seed=0)
  s = splits.weak_generalization_split(tr, te)
  assert s.validation is s.test and s.protocol == "weak"
  assert (s.test.fold_in != tr).nnz == 0 and (s.test.held_out != te).nnz == 0
  s = splits.weak_generalization_split(tr, te, validation_fraction=0.3, seed=0)
  vd, te2 = s.validation.held_out, s.test.held_out
  assert vd.multiply(te2).nnz == 0 and (vd + te2 != te).nnz == 0
  n = np.diff(te.indptr)
  assert np.array_equal(np.diff(vd.indptr), (0.3 * n).astype(int))
  assert np.array_equal(s.items, np.arange(m.shape[1]))


def test_weak_generalization_split_with_a_given_validation_matrix():
  m = random_matrix(binary=True)
  tr, rest = splits.p_items_per_user(m, 3, seed=0)
  vd, te = splits.p_items_per_user(rest, 1, seed=1)
  s = splits.weak_generalization_split(tr, te, validation=vd, protocol="given")
  assert s.validation is not s.test and s.protocol == "given"
  assert (s.validation.held_out != vd).nnz == 0 and (s.test.held_out != te).nnz == 0
  assert (s.validation.fold_in != tr).nnz == 0 and (s.test.fold_in != tr).nnz == 0
  with pytest.raises(ValueError, match="not both"):
    splits.weak_generalization_split(tr, te, validation=vd, validation_fraction=0.5)
  with pytest.raises(ValueError, match="validation shape"):
    splits.weak_generalization_split(tr, te, validation=vd[:, :5])


@pytest.mark.parametrize("n_heldout", [0, 0.0])
def test_strong_generalization_without_heldout_users(n_heldout):
  m = random_matrix(binary=True)
  s = splits.strong_generalization(m, n_heldout, seed=3)
  items = s.items
  assert s.train.shape == (m.shape[0], len(items)) and len(s.train_users) == m.shape[0]
  for ev in (s.validation, s.test):
    assert ev.fold_in.shape == ev.held_out.shape == (0, len(items))
    assert ev.users.shape == (0,) and ev.users.dtype == np.int64 and ev.n_users == 0


@pytest.mark.parametrize("n,tail", [(40, 3), (1000, 25), (100000, 500), (200, 5),
                                    (3, 2), (1, 0), (0, 0), (4, 3), (140, 4)])
def test_temporal_tail_lengths(n, tail):
  seq = np.arange(n)
  train, test = splits.temporal_tail([seq])
  assert len(test[0]) == tail
  assert np.array_equal(np.concatenate([train[0], test[0]]), seq)
  if n:
    assert len(train[0]) >= 1


def test_leave_k_out_by_time_and_random():
  users = np.array([0, 0, 0, 1, 1, 2, 0])
  items = np.array([0, 1, 2, 3, 4, 5, 6])
  ts = np.array([5, 1, 3, 2, 1, 1, 4])
  x = Interactions(users, items, np.ones(7, np.float32), ts, np.array(["a", "b", "c"]),
                   np.arange(7).astype(str))
  tr, te = splits.leave_k_out(x, k=1)
  assert sorted(zip(te.users.tolist(), te.items.tolist())) == [(0, 0), (1, 3)]
  assert tr.n_events + te.n_events == 7 and tr.shape == x.shape
  tr, te = splits.leave_k_out(x, k=2)
  assert sorted(zip(te.users.tolist(), te.items.tolist())) == [(0, 0), (0, 6)]  # u1 has 2
  # No timestamps: file order is time order.
  x2 = Interactions(users, items, np.ones(7, np.float32), None, x.user_ids, x.item_ids)
  _, te = splits.leave_k_out(x2, k=1)
  assert sorted(zip(te.users.tolist(), te.items.tolist())) == [(0, 6), (1, 4)]
  # Random: one event per user with > 1 event, reproducible.
  _, a = splits.leave_k_out(x, k=1, seed=0, by_time=False)
  _, b = splits.leave_k_out(x, k=1, seed=0, by_time=False)
  assert np.array_equal(a.items, b.items) and sorted(a.users.tolist()) == [0, 1]
