"""Tests for recjax.eval.batches: the helpers the ranking, rating and sampled protocols share."""

import math
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from recjax.eval import batches


def _sharding(spec, **axes):
  return SimpleNamespace(spec=spec, mesh=SimpleNamespace(shape=axes))


def test_data_shards_counts_the_row_axis_only():
  assert batches.data_shards(_sharding(("data",), data=4, model=2)) == 4
  assert batches.data_shards(_sharding((("data", "model"),), data=2, model=3)) == 6
  assert batches.data_shards(_sharding(("data", "model"), data=2, model=3)) == 2
  assert batches.data_shards(_sharding((None, "model"), data=2, model=3)) == 1
  assert batches.data_shards(_sharding((), data=2)) == 1


def test_placement_without_sharding_keeps_the_batch_size():
  put = batches.placement(None, 7)
  assert put.batch_size == 7
  assert np.asarray(put.rows(np.arange(3))).tolist() == [0, 1, 2]


def test_metric_names_and_dense_rows():
  assert batches.metric_names([" Recall@20", "ndcg@100", "recall@20 "]) == ("recall@20",
                                                                             "ndcg@100")
  m = sp.csr_matrix(np.array([[0, 2, 0], [1, 0, 0], [0, 0, 3]], np.float32))
  out = batches.dense_rows(m, np.array([2, 0]), 4)
  assert out.dtype == np.float32 and out.shape == (4, 3)
  assert out.tolist() == [[0, 0, 3], [0, 2, 0], [0, 0, 0], [0, 0, 0]]
  pattern = batches.dense_rows(m.astype(bool), np.array([1]), 2, bool)
  assert pattern.tolist() == [[True, False, False], [False, False, False]]


def test_totals_and_their_means():
  totals = batches.zero_totals(("hr@10", "ndcg@10"), np.asarray)
  assert set(totals) == {"hr@10", "ndcg@10", "users"} and totals["users"].dtype == np.int32
  got = batches.mean_metrics({"hr@10": np.float32(3), "users": np.int32(4)}, ("hr@10",))
  assert got == {"hr@10": 0.75, "users": 4}
  empty = batches.mean_metrics({"hr@10": np.float32(0), "users": np.int32(0)}, ("hr@10",))
  assert math.isnan(empty["hr@10"]) and empty["users"] == 0
