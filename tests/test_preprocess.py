"""Tests for recjax.data.preprocess."""

import itertools

import numpy as np
import pytest

from recjax.data import preprocess
from recjax.data.types import Interactions


def make(users, items, values=None, timestamps=None, n_users=None, n_items=None,
         rule="sum"):
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  values = np.ones(len(users), np.float32) if values is None else np.asarray(values, np.float32)
  ts = None if timestamps is None else np.asarray(timestamps, np.int64)
  n_users = int(users.max()) + 1 if n_users is None else n_users
  n_items = int(items.max()) + 1 if n_items is None else n_items
  return Interactions(users, items, values, ts,
                      user_ids=np.array([f"u{k}" for k in range(n_users)]),
                      item_ids=np.array([f"i{k}" for k in range(n_items)]),
                      duplicate_rule=rule, name="t")


def random_inter(rng, n_users=8, n_items=7, n_events=25):
  return make(rng.integers(n_users, size=n_events), rng.integers(n_items, size=n_events),
              n_users=n_users, n_items=n_items)


def raw_pairs(inter):
  return {(inter.user_ids[u], inter.item_ids[i]) for u, i in zip(inter.users, inter.items)}


def test_compact_drops_unused_ids_and_keeps_raw_ids():
  x = make([0, 3, 3], [5, 1, 5], n_users=5, n_items=6)
  y = preprocess.compact(x)
  assert y.shape == (2, 2)
  assert list(y.user_ids) == ["u0", "u3"] and list(y.item_ids) == ["i1", "i5"]
  assert raw_pairs(y) == raw_pairs(x)


def test_binarize_last_rule_uses_latest_value():
  # Pair (0, 0) was rated 5 then re-rated 2: the matrix says 2, so it goes.
  x = make([0, 0, 1, 1, 2], [0, 0, 1, 2, 3], values=[5, 2, 4, 3, 1],
           timestamps=[1, 2, 1, 1, 1], rule="last")
  y = preprocess.binarize(x, 3.5)
  assert raw_pairs(y) == {("u1", "i1")}
  assert np.all(y.values == 1.0)
  m = x.to_csr()
  expected = {(x.user_ids[u], x.item_ids[i]) for u, i in zip(*(m >= 3.5).nonzero())}
  assert raw_pairs(y) == expected


def test_binarize_sum_rule_per_event_and_binary_matrix():
  x = make([0, 0, 0, 1], [0, 0, 1, 1], values=[2, 3, 1, 1])
  y = preprocess.binarize(x, 2)
  assert y.n_events == 2 and y.shape == (1, 1)
  assert y.to_csr().toarray().tolist() == [[1.0]]  # duplicates do not sum


def test_filter_min_counts_counts_distinct_partners():
  # u0 has 3 events but only 2 distinct items.
  x = make([0, 0, 0, 1, 1, 1, 2], [0, 0, 1, 0, 1, 2, 2])
  y = preprocess.filter_min_counts(x, min_user=3)
  assert set(y.user_ids) == {"u1"}
  y = preprocess.filter_min_counts(x, min_item=2)
  assert set(y.item_ids) == {"i0", "i1", "i2"}
  # Items first, then users: i2 survives the item step (2 users) before u2 goes.
  y = preprocess.filter_min_counts(x, min_user=2, min_item=2)
  assert set(y.user_ids) == {"u0", "u1"} and "i2" in set(y.item_ids)


def brute_force_core(inter, k_user, k_item):
  """Union of all (U, I) subsets whose induced graph satisfies the degrees."""
  pairs = {(int(u), int(i)) for u, i in zip(inter.users, inter.items)}
  best = set()
  users, items = range(inter.n_users), range(inter.n_items)
  for us in itertools.product([0, 1], repeat=len(users)):
    uset = {u for u in users if us[u]}
    for its in itertools.product([0, 1], repeat=len(items)):
      iset = {i for i in items if its[i]}
      sub = {(u, i) for (u, i) in pairs if u in uset and i in iset}
      du = {u: sum(1 for p in sub if p[0] == u) for u in uset}
      di = {i: sum(1 for p in sub if p[1] == i) for i in iset}
      if all(d >= k_user for d in du.values()) and all(d >= k_item for d in di.values()):
        best |= sub
  return {(inter.user_ids[u], inter.item_ids[i]) for u, i in best}


@pytest.mark.parametrize("seed", range(6))
def test_k_core_is_the_maximal_core(seed):
  rng = np.random.default_rng(seed)
  x = random_inter(rng, n_users=6, n_items=5, n_events=16)
  k_user, k_item = [(2, 2), (3, 2), (2, 3)][seed % 3]
  y = preprocess.k_core(x, k_user, k_item)
  m = y.to_csr()
  m.data[:] = 1
  assert np.all(np.asarray(m.sum(1)).ravel() >= k_user)
  assert np.all(np.asarray(m.sum(0)).ravel() >= k_item)
  assert raw_pairs(y) == brute_force_core(x, k_user, k_item)


def test_k_core_larger_random_is_core_and_fixed_point():
  rng = np.random.default_rng(0)
  x = random_inter(rng, n_users=300, n_items=200, n_events=6000)
  y = preprocess.k_core(x, 14, 20)
  m = (y.to_csr() > 0).astype(np.int32)
  assert 0 < m.shape[0] < x.n_users
  assert np.asarray(m.sum(1)).min() >= 14 and np.asarray(m.sum(0)).min() >= 20
  z = preprocess.k_core(y, 14, 20)
  assert z.n_events == y.n_events
  # Same pairs as a naive peeling loop over Python sets.
  pairs = set(zip(x.users.tolist(), x.items.tolist()))
  while True:
    du, di = {}, {}
    for u, i in pairs:
      du[u] = du.get(u, 0) + 1
      di[i] = di.get(i, 0) + 1
    kept = {(u, i) for u, i in pairs if du[u] >= 14 and di[i] >= 20}
    if kept == pairs:
      break
    pairs = kept
  assert raw_pairs(y) == {(x.user_ids[u], x.item_ids[i]) for u, i in pairs}
  # Every event of the core's pairs in the input is kept (repeats included).
  kept = raw_pairs(y)
  n_in = sum((x.user_ids[u], x.item_ids[i]) in kept for u, i in zip(x.users, x.items))
  assert n_in == y.n_events


def test_recording_lists_each_conversion_once():
  x = make([0, 0, 1, 1, 1, 2, 3], [0, 1, 0, 1, 2, 2, 0], values=[5, 4, 1, 5, 5, 4, 5],
           rule="last")
  with preprocess.recording() as log:
    y = preprocess.binarize(x, 4)
    y = preprocess.filter_min_counts(y, min_user=2, min_item=2)
    with preprocess.recording(enabled=False):
      preprocess.binarize(x, 4)  # Suspended: not recorded.
  assert log == ["ratings binarized: 6 of 7 events have rating >= 4 and become 1.0; the rest "
                 "are dropped",
                 "users with < 2 items dropped: 2 users, 2 events"]  # no item had < 2 users
  assert set(y.user_ids) == {"u0", "u1"}
  preprocess.binarize(x, 4)  # Outside a recording: nothing is kept anywhere.
  assert len(log) == 2
  with preprocess.recording() as log:
    preprocess.filter_min_counts(x, min_item=3)
  assert log == ["items with < 3 users dropped: 2 items, 4 events"]


def test_filters_that_empty_the_data_raise_naming_the_filter():
  x = make([0, 1, 1], [0, 0, 1], values=[1, 2, 3], rule="last")
  with pytest.raises(ValueError, match=r"t: binarize_threshold=4 drops every event: none of the "
                     r"3 events has rating >= 4 \(the largest is 3\)"):
    preprocess.binarize(x, 4)
  with pytest.raises(ValueError, match="min_user_count=3 drops every user: no user has >= 3 "
                     "distinct items"):
    preprocess.filter_min_counts(x, min_user=3)
  with pytest.raises(ValueError, match="min_item_count=5 drops every item"):
    preprocess.filter_min_counts(x, min_item=5)
  with pytest.raises(ValueError, match="after the item filter"):
    preprocess.filter_min_counts(x, min_user=2, min_item=2)
  empty = x.select_events(np.zeros(3, bool))
  assert preprocess.binarize(empty, 4).n_events == 0  # Nothing to empty: no error.
