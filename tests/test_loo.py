"""Leave-one-out with sampled negatives (recjax.data.loo) and its evaluator (recjax.eval.sampled)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import loo, pipeline, synthetic
from recjax.data.types import Dataset, Interactions
from recjax.eval import evaluate, evaluator
from recjax.eval import sampled


def _inter(users, items, timestamps=None, n_users=None, n_items=None):
  users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
  n_users = n_users or int(users.max()) + 1
  n_items = n_items or int(items.max()) + 1
  ts = None if timestamps is None else np.asarray(timestamps, np.int64)
  return Interactions(users=users, items=items, values=np.ones(len(users), np.float32),
                      timestamps=ts, user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                      duplicate_rule="last", name="toy")


def _held(inter, seed=0):
  users, items, is_test, is_val, evaluated = loo.latest_two(inter, seed)
  test = {int(u): int(i) for u, i in zip(users[is_test], items[is_test])}
  val = {int(u): int(i) for u, i in zip(users[is_val], items[is_val])}
  return test, val, evaluated


def test_latest_two_picks_the_latest_by_timestamp_not_file_order():
  # user 0: items 5 (t=30), 2 (t=10), 7 (t=50), 1 (t=40), in shuffled file order.
  # user 1: item 3 seen at t=5 and again at t=99 (its latest event), 4 at t=60, 6 at t=70.
  # user 2: two items only -> not evaluated.
  inter = _inter([0, 1, 0, 1, 0, 2, 1, 0, 1, 2], [5, 3, 2, 4, 7, 1, 6, 1, 3, 2],
                 [30, 5, 10, 60, 50, 1, 70, 40, 99, 2])
  test, val, evaluated = _held(inter)
  assert test == {0: 7, 1: 3} and val == {0: 1, 1: 6}
  assert evaluated.tolist() == [True, True, False]


def test_timestamp_ties_go_by_file_order():
  inter = _inter([0, 0, 0, 0], [4, 2, 9, 1], [7, 7, 7, 3])
  test, val, _ = _held(inter)
  assert test == {0: 9} and val == {0: 2}


def test_without_timestamps_the_order_is_random_but_seeded():
  matrix = synthetic.synthetic_implicit(60, 40, 600, seed=3, min_user_items=3)
  coo = matrix.tocoo()
  inter = _inter(coo.row, coo.col, n_users=60, n_items=40)
  a, b, c = _held(inter, 0), _held(inter, 0), _held(inter, 1)
  assert a[:2] == b[:2] and a[:2] != c[:2]
  test, val, evaluated = a
  assert evaluated.all() and len(test) == len(val) == 60
  for u in range(60):
    row = set(matrix[u].indices.tolist())
    assert test[u] in row and val[u] in row and test[u] != val[u]
  # Over users, the held-out item is not biased toward low or high item ids.
  positions = [np.searchsorted(np.sort(matrix[u].indices), test[u]) / (matrix[u].nnz - 1)
               for u in range(60)]
  assert 0.3 < np.mean(positions) < 0.7


def _dataset(n_users=80, n_items=400, nnz=2400, seed=0):
  matrix = synthetic.synthetic_implicit(n_users, n_items, nnz, seed=seed, min_user_items=2)
  coo = matrix.tocoo()
  ts = np.random.default_rng(seed).integers(0, 10_000, len(coo.row))
  return Dataset(name="toy", interactions=_inter(coo.row, coo.col, ts, n_users, n_items),
                 kind="implicit"), matrix


def test_split_partitions_every_pair_and_negatives_are_never_interacted():
  dataset, matrix = _dataset()
  split, info = pipeline.ranking_split(dataset, pipeline.DataConfig(protocol="loo-sampled"))
  assert split.protocol == "loo-sampled" and "leave-one-out (timestamp)" in info["summary"]
  val, test = split.validation, split.test
  assert type(val).__name__ == "SampledEvalSet"
  evaluated = np.diff(matrix.indptr) >= 3
  np.testing.assert_array_equal(val.users, np.flatnonzero(evaluated))
  assert val.items.shape == test.items.shape == (evaluated.sum(), 100)
  train = split.train
  # train + validation + test items are exactly the user's items, disjoint.
  for r, u in enumerate(val.users):
    row = set(matrix[u].indices.tolist())
    tr = set(train[u].indices.tolist())
    assert val.items[r, 0] not in tr and test.items[r, 0] not in tr
    assert tr | {val.items[r, 0], test.items[r, 0]} == row
    for es in (val, test):
      negatives = es.items[r, 1:]
      assert len(set(negatives.tolist())) == 99
      assert not set(negatives.tolist()) & row  # never an item of the user, held-out ones included
  np.testing.assert_array_equal(val.fold_in.toarray(), train[val.users].toarray())
  assert train.nnz + 2 * len(val.users) == matrix.nnz
  # Users with fewer than three items keep everything in train.
  for u in np.flatnonzero(~evaluated):
    assert train[u].nnz == matrix[u].nnz
  # Seeded: the same config gives the same negatives, another split_seed others.
  again, _ = pipeline.ranking_split(dataset, pipeline.DataConfig(protocol="loo-sampled"))
  np.testing.assert_array_equal(again.test.items, test.items)
  other, _ = pipeline.ranking_split(dataset, pipeline.DataConfig(protocol="loo-sampled",
                                                                 split_seed=5))
  np.testing.assert_array_equal(other.test.items[:, 0], test.items[:, 0])  # by time: same
  assert (other.test.items[:, 1:] != test.items[:, 1:]).any()


def test_sample_negatives_raises_when_too_few_items_are_left():
  interacted = sp.csr_matrix(np.array([[1, 1, 1, 0, 0]], np.float32))
  with pytest.raises(ValueError, match="fewer than 3 items"):
    loo.sample_negatives(interacted, np.array([0]), 3, np.random.default_rng(0))


def test_metric_sums_against_a_hand_worked_example():
  # Row 0: held-out 0.9; negatives 0.95, 0.2, 0.9 (tie counts against) -> rank 2.
  # Row 1: held-out is the best -> rank 0.  Row 2: every negative beats it -> rank 3.
  # Row 3: NaN held-out -> last (rank 3).  Row 4 is padding.
  scores = jnp.array([[0.9, 0.95, 0.2, 0.9],
                      [0.5, 0.1, 0.2, 0.3],
                      [0.0, 0.1, 0.2, 0.3],
                      [jnp.nan, 0.1, 0.2, 0.3],
                      [9.0, 0.0, 0.0, 0.0]])
  mask = jnp.array([True, True, True, True, False])
  sums = jax.device_get(sampled.metric_sums(scores, mask, ("hr@3", "ndcg@3", "hr@1", "map@3")))
  assert sums["users"] == 4
  np.testing.assert_allclose(sums["hr@3"], 2.0)  # ranks 2 and 0 are < 3
  np.testing.assert_allclose(sums["ndcg@3"], 1 / math.log2(4) + 1.0, rtol=1e-6)
  np.testing.assert_allclose(sums["hr@1"], 1.0)
  np.testing.assert_allclose(sums["map@3"], 1 / 3 + 1.0, rtol=1e-6)


def _tiny_set():
  # 3 users over 6 items; user rows 4, 1, 0 of some training matrix; 3 candidates each.
  fold_in = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0],
                                    [0, 1, 1, 0, 0, 0],
                                    [0, 0, 0, 0, 0, 1]], np.float32))
  items = np.array([[2, 3, 4], [5, 0, 3], [1, 0, 2]], np.int32)
  return loo.SampledEvalSet(fold_in=fold_in, users=np.array([4, 1, 0]), items=items)


ITEM_SCORES = jnp.array([0.1, 0.6, 0.5, 0.3, 0.4, 0.2])  # a fixed item ranking


def rows_score(state, inputs):
  """A rows-only model (popularity-like): the same item scores for everyone."""
  return jnp.broadcast_to(state[None, :], inputs.shape)


def query_score(state, inputs):
  """A query model: candidate scores plus the training-row id (to see that it arrives)."""
  return state[inputs["items"]] + 10.0 * (inputs["index"] == 1)[:, None] * (inputs["items"] == 0)


def test_evaluate_sampled_with_rows_and_with_queries():
  es = _tiny_set()
  assert evaluator(es) is sampled.evaluate_sampled
  # Rows model: user 0 candidates (2, 3, 4) = (.5, .3, .4) -> rank 0; user 1 (5, 0, 3)
  # = (.2, .1, .3) -> rank 1; user 2 (1, 0, 2) = (.6, .1, .5) -> rank 0.
  for batch_size in (2, 3, 5):
    out = evaluate(rows_score, ITEM_SCORES, es, metrics=("HR@1", "ndcg@2"),
                   batch_size=batch_size, item_chunk=None, sharding=None)
    assert out["users"] == 3
    np.testing.assert_allclose(out["hr@1"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(out["ndcg@2"], (1 + 1 / math.log2(3) + 1) / 3, rtol=1e-6)
  # Query model: training row 1 (user 1) gets +10 on item 0, a negative -> rank 2.
  out = evaluate(query_score, ITEM_SCORES, es, metrics=("hr@1", "hr@2"), batch_size=2,
                 item_chunk=None, sharding=None)
  np.testing.assert_allclose([out["hr@1"], out["hr@2"]], [2 / 3, 2 / 3], rtol=1e-6)


def test_evaluate_sampled_rejects_bad_metrics_and_broken_models():
  es = _tiny_set()
  with pytest.raises(ValueError, match="k <= 3"):
    sampled.evaluate_sampled(rows_score, ITEM_SCORES, es, metrics=("hr@10",))

  def broken(state, inputs):
    raise RuntimeError("boom")
  sampled.clear_cache()
  with pytest.raises(ValueError, match="fails on a query dict"):
    sampled.evaluate_sampled(broken, ITEM_SCORES, es, metrics=("hr@1",))


def test_users_without_enough_unseen_items_stay_in_train():
  # 5 items, 2 negatives: user 0 touched all 5 items (no negatives left), user 1 touched 3.
  inter = _inter([0] * 5 + [1] * 3, [0, 1, 2, 3, 4, 0, 1, 2], list(range(5)) + [1, 2, 3])
  config = pipeline.resolve(pipeline.DataConfig(protocol="loo-sampled"),
                            Dataset(name="t", interactions=inter))
  info = {}
  split = loo.loo_split(Dataset(name="t", interactions=inter), config, info, n_negatives=2)
  assert split.test.users.tolist() == [1] and info["split"]["users_without_enough_negatives"] == 1
  assert split.train[0].nnz == 5 and split.train[1].nnz == 1
  assert split.test.items[0, 0] == 2 and set(split.test.items[0, 1:].tolist()) == {3, 4}
