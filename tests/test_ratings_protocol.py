"""The rating protocol: the random 90/10 entry split and RMSE/MAE against hand-worked numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import pipeline
from recjax.data.ratings import RatingEvalSet, RatingSplit, rating_split
from recjax.data.types import Dataset, Interactions
from recjax.eval import evaluate, evaluator
from recjax.eval.rating import evaluate_rating, rating_error_sums


def _ratings(n_users=60, n_items=40, density=0.3, seed=0):
  rng = np.random.default_rng(seed)
  mask = rng.random((n_users, n_items)) < density
  values = rng.integers(1, 6, size=(n_users, n_items)).astype(np.float32)
  return sp.csr_matrix(np.where(mask, values, 0.0))


def _entries(m):
  coo = sp.coo_matrix(m)
  return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data)}


def _held_entries(eval_set: RatingEvalSet):
  rows, cols, vals = eval_set.triples()
  return {(int(r), int(c)): float(v) for r, c, v in zip(rows, cols, vals)}


def test_split_is_disjoint_covers_every_rating_and_has_the_asked_sizes():
  m = _ratings()
  s = rating_split(m, test_fraction=0.1, validation_fraction=0.05, seed=3)
  train, val, test = _entries(s.train), _held_entries(s.validation), _held_entries(s.test)
  assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
  assert {**train, **val, **test} == _entries(m)  # Every rating, with its value.
  n = m.nnz
  assert len(test) == round(0.1 * n) and len(val) == round(0.05 * (n - len(test)))
  assert s.validation.rating_range == (1.0, 5.0)
  # Fold-in rows are the training ratings of the scored rows; only rows with held-out ratings.
  for es in (s.validation, s.test):
    assert np.all(np.diff(es.held_out.indptr) > 0)
    assert (es.fold_in != s.train[es.rows]).nnz == 0
    assert es.n_users == len(es.rows) and es.n_ratings == es.held_out.nnz


def test_split_is_seeded():
  m = _ratings()
  a, b, c = (rating_split(m, seed=s) for s in (1, 1, 2))
  assert _held_entries(a.test) == _held_entries(b.test)
  assert _held_entries(a.test) != _held_entries(c.test)


def test_items_orientation_is_the_transpose_of_the_same_split():
  m = _ratings()
  u = rating_split(m, seed=5, orientation="users")
  i = rating_split(m, seed=5, orientation="items", protocol="ratings-items")
  assert (u.train.T != i.train).nnz == 0
  assert {(c, r): v for (r, c), v in _held_entries(u.test).items()} == _held_entries(i.test)
  assert i.train.shape == (m.shape[1], m.shape[0])
  assert np.array_equal(i.items, np.arange(m.shape[1]))


def test_split_rejects_zero_ratings_and_bad_shares():
  m = _ratings()
  with pytest.raises(ValueError, match="orientation"):
    rating_split(m, orientation="columns")
  with pytest.raises(ValueError, match="leaving none"):
    rating_split(m, test_fraction=m.nnz)
  zero = sp.csr_matrix((np.array([0.0, 3.0], np.float32), ([0, 1], [0, 1])), shape=(2, 2))
  with pytest.raises(ValueError, match="rating of 0"):
    rating_split(zero)


def _dataset(m, kind="explicit"):
  coo = sp.coo_matrix(m)
  inter = Interactions(users=coo.row.astype(np.int64), items=coo.col.astype(np.int64),
                       values=coo.data.astype(np.float32), timestamps=None,
                       user_ids=np.arange(m.shape[0]), item_ids=np.arange(m.shape[1]),
                       duplicate_rule="last", name="tiny")
  return Dataset(name="tiny", interactions=inter, kind=kind)


def test_pipeline_protocols_keep_raw_ratings_and_ignore_the_binarize_threshold():
  m = _ratings()
  for protocol, rows in (("ratings", m.shape[0]), ("ratings-items", m.shape[1])):
    split, info = pipeline.ranking_split(_dataset(m), pipeline.DataConfig(protocol=protocol))
    assert isinstance(split, RatingSplit) and split.train.shape[0] == rows
    assert info["resolved"]["binarize_threshold"] == 4.0  # Resolved, but not applied:
    assert set(np.unique(split.train.data)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    total = split.train.nnz + split.validation.n_ratings + split.test.n_ratings
    assert total == m.nnz and split.test.n_ratings == round(0.1 * m.nnz)
    assert evaluator(split.test) is evaluate_rating
  with pytest.raises(ValueError, match="explicit"):
    pipeline.ranking_split(_dataset(m, kind="implicit"), pipeline.DataConfig(protocol="ratings"))


def _hand_worked_set():
  # Row r's fold-in is the one-hot e_r, so `inputs @ table` returns table row r.
  fold_in = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], np.float32))
  held_out = sp.csr_matrix(np.array([[4, 0, 2], [0, 5, 0]], np.float32))
  return RatingEvalSet(fold_in=fold_in, held_out=held_out, rows=np.array([0, 1]),
                       rating_range=(1.0, 5.0))


def _table_score(state, inputs):
  return inputs @ state


def test_rmse_and_mae_against_a_hand_worked_example():
  table = jnp.array([[3.5, 9.0, 0.0],   # Clipped to [3.5, 5, 1]: errors on held-out -0.5 and -1.
                     [2.0, 6.0, 3.0],   # Clipped to [2, 5, 3]: error 0 on the held-out 5.
                     [0.0, 0.0, 0.0]])
  expected_rmse = math.sqrt((0.25 + 1.0 + 0.0) / 3)
  expected_mae = (0.5 + 1.0 + 0.0) / 3
  for batch_size in (1, 2, 5):
    res = evaluate(_table_score, table, _hand_worked_set(),
                   metrics=("rmse", "mae", "neg_rmse", "neg_mae"), batch_size=batch_size,
                   item_chunk=None, sharding=None)
    assert res["rmse"] == pytest.approx(expected_rmse, rel=1e-6)
    assert res["mae"] == pytest.approx(expected_mae, rel=1e-6)
    assert res["neg_rmse"] == pytest.approx(-expected_rmse, rel=1e-6)
    assert res["neg_mae"] == pytest.approx(-expected_mae, rel=1e-6)
    assert res["users"] == 2


def test_error_sums_count_only_observed_entries_and_unknown_metrics_raise():
  preds = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  targets = jnp.array([[1.0, 100.0], [2.0, 4.0]])
  sums = rating_error_sums(preds, targets, jnp.array([[True, False], [True, True]]), (1.0, 5.0))
  assert float(sums["sse"]) == 1.0 and float(sums["sae"]) == 1.0 and float(sums["count"]) == 3.0
  with pytest.raises(ValueError, match="rating metrics"):
    evaluate_rating(_table_score, jnp.eye(3), _hand_worked_set(), metrics=("ndcg@100",))


def test_sharded_evaluation_matches_unsharded():
  from recjax.train import sharding as shd
  mesh = shd.make_mesh(1)
  rng = np.random.default_rng(0)
  table = jnp.asarray(rng.uniform(0, 6, (3, 3)).astype(np.float32))
  plain = evaluate_rating(_table_score, table, _hand_worked_set(), metrics=("rmse",), batch_size=3)
  sharded = evaluate_rating(_table_score, table, _hand_worked_set(), metrics=("rmse",),
                            batch_size=3, sharding=shd.batch_sharding(mesh))
  assert plain["rmse"] == pytest.approx(sharded["rmse"], rel=1e-6)


def test_ml100k_split_has_the_documented_counts(shared_data):
  from recjax.data import registry
  dataset = registry.load_dataset("ml-100k", data_dir=shared_data)
  split, info = pipeline.ranking_split(dataset, pipeline.DataConfig(protocol="ratings-items"))
  assert split.train.shape == (1682, 943)
  counts = (split.train.nnz, split.validation.n_ratings, split.test.n_ratings)
  assert counts == (85_500, 4_500, 10_000)
  assert split.test.rating_range == (1.0, 5.0) and info["split"]["orientation"] == "items"


@pytest.mark.parametrize("name", ["autorec_i_ml100k", "autorec_u_ml100k", "deeprec_ml100k"])
def test_rating_configs_name_a_rating_protocol_and_select_on_neg_rmse(name):
  from conftest import REPO
  from experiments import train as exp_train
  from recjax.models.registry import model_config
  config = exp_train.load_config_file(str(REPO / "experiments" / "configs" / f"{name}.py"))
  assert config["data"]["protocol"] in ("ratings", "ratings-items")
  assert config["data"]["protocol"] in pipeline.PROTOCOLS
  assert config["train"]["select_metric"] == "neg_rmse"
  model_config(config["model"], config["model_config"])  # Every field exists.


def test_evaluation_compiles_once_across_calls():
  traces = []

  def counting_score(state, inputs):
    traces.append(1)  # Runs only while jax traces the batch step.
    return inputs @ state

  for scale in (1.0, 2.0, 3.0):
    evaluate_rating(counting_score, scale * jnp.eye(3), _hand_worked_set(), metrics=("rmse",),
                    batch_size=1)
  assert len(traces) == 1
