"""Tests for recjax.ops.ranking: hand-worked metrics, a numpy reference, chunked top-k."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax.ops import ranking


# ---------------------------------------------------------------------------
# An independent numpy reference.


def reference_top_k(scores, exclude, k):
  """Best k items per row: non-excluded by (-score, index), then excluded by index."""
  out = []
  for s, e in zip(scores, exclude):
    allowed = sorted((i for i in range(len(s)) if not e[i]), key=lambda i: (-s[i], i))
    banned = [i for i in range(len(s)) if e[i]]
    out.append((allowed + banned)[:k])
  return np.array(out, dtype=np.int64)


def reference_metrics(top, held_out, row_mask, metrics):
  """Per-definition metric sums, one user at a time."""
  sums = {name: 0.0 for name in metrics}
  users = 0
  for ranked, relevant_row, keep in zip(top, held_out, row_mask):
    relevant = set(np.flatnonzero(relevant_row).tolist())
    if not keep or not relevant:
      continue
    users += 1
    for name in metrics:
      kind, k = name.split("@")
      k = int(k)
      rel = [1.0 if i in relevant else 0.0 for i in ranked[:k]]
      hits = sum(rel)
      capped = min(k, len(relevant))
      if kind == "recall":
        value = hits / capped
      elif kind == "recall_cdl":
        value = hits / len(relevant)
      elif kind == "precision":
        value = hits / k
      elif kind == "hr":
        value = float(hits > 0)
      elif kind == "ndcg":
        dcg = sum(r / math.log2(pos + 2) for pos, r in enumerate(rel))
        idcg = sum(1.0 / math.log2(pos + 2) for pos in range(capped))
        value = dcg / idcg
      elif kind == "map":
        value = sum(sum(rel[:r + 1]) / (r + 1) * rel[r] for r in range(k)) / capped
      sums[name] += value
  sums["users"] = users
  return sums


# ---------------------------------------------------------------------------
# parse_metric


def test_parse_metric():
  assert ranking.parse_metric("recall@20") == ("recall", 20)
  assert ranking.parse_metric("recall_cdl@300") == ("recall_cdl", 300)
  assert ranking.parse_metric("NDCG@100") == ("ndcg", 100)
  for bad in ("auc@10", "recall", "recall@", "recall@0", "recall@-1", "ndcg@1.5"):
    with pytest.raises(ValueError, match="recall, recall_cdl, ndcg, precision, map, hr"):
      ranking.parse_metric(bad)


# ---------------------------------------------------------------------------
# Hand-worked example.
#
# Six items, every user has the same scores
#   item:  0  1  2  3  4  5
#   score: 5  2  6  1  0  3
# so without exclusions the ranking is [2, 0, 5, 1, 3, 4].
#
# user 0: no exclusions, held-out {0, 3}.  top-3 = [2, 0, 5], rel = [0, 1, 0].
#   recall@3 = 1/min(3,2) = 1/2        recall_cdl@3 = 1/2      precision@3 = 1/3
#   ndcg@3 = (1/log2 3) / (1 + 1/log2 3)                       hr@3 = 1
#   map@3  = (precision@2 · 1) / min(3,2) = (1/2)/2 = 1/4
#   recall@1 = 0 (item 2 is not held out)
# user 1: fold-in {0, 2} excluded, held-out {1, 3, 4, 5}.  Ranking [5, 1, 3, 4, (0, 2)],
#   top-3 = [5, 1, 3], rel = [1, 1, 1].
#   recall@3 = 3/min(3,4) = 1          recall_cdl@3 = 3/4      precision@3 = 1
#   ndcg@3 = 1                         hr@3 = 1                map@3 = (1+1+1)/3 = 1
#   recall@1 = 1
# user 2: no exclusions, held-out {2, 4, 5}.  top-3 = [2, 0, 5], rel = [1, 0, 1].
#   recall@3 = 2/3                     recall_cdl@3 = 2/3      precision@3 = 2/3
#   ndcg@3 = (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4)        hr@3 = 1
#   map@3  = (1/1 + 2/3) / 3 = 5/9
#   recall@1 = 1
# user 3: no held-out items -> skipped.
# user 4: held-out {2} (a hit at rank 1) but row_mask False -> skipped.
# user 5: no exclusions, held-out {4} (rank 6).  Every metric 0; counted.
#
# Sums over users 0, 1, 2, 5 ("users" = 4):


def _hand_example():
  scores = np.tile(np.array([5, 2, 6, 1, 0, 3], np.float32), (6, 1))
  exclude = np.zeros((6, 6), bool)
  exclude[1, [0, 2]] = True
  held_out = np.zeros((6, 6), bool)
  held_out[0, [0, 3]] = True
  held_out[1, [1, 3, 4, 5]] = True
  held_out[2, [2, 4, 5]] = True
  held_out[4, [2]] = True
  held_out[5, [4]] = True
  row_mask = np.array([True, True, True, True, False, True])
  return scores, exclude, held_out, row_mask


def test_hand_worked_example():
  scores, exclude, held_out, row_mask = _hand_example()
  _, top = ranking.top_k_excluding(scores, exclude, 3)
  np.testing.assert_array_equal(top[0], [2, 0, 5])
  np.testing.assert_array_equal(top[1], [5, 1, 3])
  metrics = ("recall@3", "recall_cdl@3", "precision@3", "ndcg@3", "map@3", "hr@3", "recall@1")
  got = jax.device_get(ranking.ranking_metric_sums(top, held_out, row_mask, metrics))
  l3, l4 = math.log2(3), math.log2(4)
  expected = {
      "recall@3": 1 / 2 + 1 + 2 / 3 + 0,
      "recall_cdl@3": 1 / 2 + 3 / 4 + 2 / 3 + 0,
      "precision@3": 1 / 3 + 1 + 2 / 3 + 0,
      "ndcg@3": (1 / l3) / (1 + 1 / l3) + 1 + (1 + 1 / l4) / (1 + 1 / l3 + 1 / l4) + 0,
      "map@3": 1 / 4 + 1 + 5 / 9 + 0,
      "hr@3": 3.0,
      "recall@1": 2.0,
  }
  assert int(got["users"]) == 4
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)
  # The reference agrees with the hand computation too.
  ref = reference_metrics(np.asarray(top), held_out, row_mask, metrics)
  for name, value in expected.items():
    np.testing.assert_allclose(ref[name], value, rtol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------
# Random data against the reference.


def _random_case(seed, n_users=40, n_items=57):
  rng = np.random.default_rng(seed)
  # Integer-valued scores make many ties, which exercises the tie-breaking rule.
  scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)
  exclude = rng.random((n_users, n_items)) < 0.3
  exclude[0] = True  # A row with every item excluded.
  exclude[1, 3:] = True  # A row with only 3 allowed items.
  held_out = (rng.random((n_users, n_items)) < 0.15) & ~exclude
  held_out[2:6] = False  # Users without held-out items.
  held_out[6] = ~exclude[6]  # A user whose every allowed item is held out.
  row_mask = rng.random(n_users) < 0.85
  return scores, exclude, held_out, row_mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("item_chunk", [None, 8, 13])
def test_top_k_matches_reference(seed, item_chunk):
  scores, exclude, _, _ = _random_case(seed)
  for k in (1, 5, 20):
    values, top = ranking.top_k_excluding(scores, exclude, k, item_chunk=item_chunk)
    ref = reference_top_k(scores, exclude, k)
    np.testing.assert_array_equal(np.asarray(top), ref)
    assert top.dtype == jnp.int32
    expected_values = np.where(np.take_along_axis(exclude, ref, 1), -np.inf,
                               np.take_along_axis(scores, ref, 1))
    np.testing.assert_array_equal(np.asarray(values), expected_values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_sums_match_reference(seed):
  scores, exclude, held_out, row_mask = _random_case(seed)
  metrics = tuple(f"{kind}@{k}" for kind in ranking.METRIC_KINDS for k in (1, 5, 10, 20)
                  if kind not in ranking.TRAIN_TEST_KINDS)
  _, top = ranking.top_k_excluding(scores, exclude, 20)
  ref = reference_metrics(reference_top_k(scores, exclude, 20), held_out, row_mask, metrics)
  for held, n_relevant in [(held_out.astype(np.float32), None),
                           (held_out, held_out.sum(1).astype(np.int32))]:
    got = jax.device_get(ranking.ranking_metric_sums(top, held, row_mask, metrics, n_relevant))
    assert int(got["users"]) == ref["users"]
    for name in metrics:
      np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_metric_sums_need_enough_ranked_items():
  top = jnp.zeros((2, 5), jnp.int32)
  with pytest.raises(ValueError, match="top 10"):
    ranking.ranking_metric_sums(top, jnp.ones((2, 20)), jnp.ones(2, bool), ("ndcg@10",))


# ---------------------------------------------------------------------------
# Chunked top-k.


@pytest.mark.parametrize("n_items,chunk,k", [(100, 10, 7), (101, 10, 7), (103, 16, 20),
                                             (50, 3, 5), (64, 64, 10), (64, 200, 10)])
def test_chunked_top_k_equals_unchunked(n_items, chunk, k):
  rng = np.random.default_rng(n_items + chunk)
  scores = rng.integers(0, 4, size=(9, n_items)).astype(np.float32)  # Many ties.
  scores[0] = 1.0  # All tied: the result must be the k lowest allowed indices.
  exclude = rng.random((9, n_items)) < 0.2
  exclude[1] = True
  exclude[2, :-2] = True  # Two allowed items at the very end, the rest excluded.
  exclude[2, -2:] = False
  full = jax.jit(ranking.top_k_excluding, static_argnums=(2, 3))
  v0, i0 = full(scores, exclude, k, None)
  v1, i1 = full(scores, exclude, k, chunk)
  np.testing.assert_array_equal(np.asarray(i0), np.asarray(i1))
  np.testing.assert_array_equal(np.asarray(v0), np.asarray(v1))
  np.testing.assert_array_equal(np.asarray(i0[0]), np.flatnonzero(~exclude[0])[:k])
  # Row 1 (all excluded): the k lowest indices.  Row 2: the two allowed items first.
  np.testing.assert_array_equal(np.asarray(i0[1]), np.arange(k))
  assert set(np.asarray(i0[2, :2]).tolist()) == {n_items - 2, n_items - 1}
  np.testing.assert_array_equal(np.asarray(i0[2, 2:]), np.arange(k - 2))


def test_excluded_items_never_in_top_k():
  rng = np.random.default_rng(3)
  scores = rng.normal(size=(16, 300)).astype(np.float32)
  exclude = rng.random((16, 300)) < 0.5
  scores = np.where(exclude, scores + 100.0, scores)  # Excluded items would win otherwise.
  for chunk in (None, 64):
    _, top = ranking.top_k_excluding(scores, exclude, 50, item_chunk=chunk)
    assert not np.take_along_axis(exclude, np.asarray(top), 1).any()


def test_top_k_rejects_k_larger_than_catalog():
  with pytest.raises(ValueError, match="k <= n_items"):
    ranking.top_k_excluding(jnp.zeros((2, 4)), jnp.zeros((2, 4), bool), 5)


# ---------------------------------------------------------------------------
# RMSE and NLL sums.


def test_squared_error_sums():
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(7, 11)).astype(np.float32)
  target = rng.normal(size=(7, 11)).astype(np.float32)
  mask = rng.random((7, 11)) < 0.4
  pred[~mask] = np.nan  # Masked entries must not leak, even as NaN.
  got = jax.device_get(ranking.squared_error_sums(pred, target, mask))
  np.testing.assert_allclose(got["sse"], np.sum((pred[mask] - target[mask]) ** 2), rtol=1e-5)
  assert int(got["count"]) == mask.sum()
  got = jax.device_get(ranking.squared_error_sums(target + 1.0, target))
  np.testing.assert_allclose(got["sse"], target.size, rtol=1e-5)
  assert int(got["count"]) == target.size


def test_nll_sums():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 6, 9)).astype(np.float32) * 3
  targets = rng.integers(0, 9, size=(4, 6))
  mask = rng.random((4, 6)) < 0.7
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  got = jax.device_get(ranking.nll_sums(logits, targets, mask))
  np.testing.assert_allclose(got["nll"], nll[mask].sum(), rtol=1e-5)
  assert int(got["count"]) == mask.sum()
  got = jax.device_get(ranking.nll_sums(logits, targets))
  np.testing.assert_allclose(got["nll"], nll.sum(), rtol=1e-5)
  assert int(got["count"]) == nll.size


@pytest.mark.parametrize("chunk", [3, 16])
def test_top_k_by_chunk_max_is_lax_top_k_with_ties_and_minus_inf(chunk):
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 6, (9, 301)).astype(np.float32)  # Many ties.
  scores[rng.random(scores.shape) < 0.3] = -np.inf  # Excluded items.
  scores[0] = -np.inf  # A row with nothing left.
  for k in (1, 7, 40):
    want = jax.lax.top_k(jnp.asarray(scores), k)
    got = jax.jit(lambda s: ranking.top_k_by_chunk_max(s, k, chunk))(scores)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
