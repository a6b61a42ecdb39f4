"""Tests for recjax.eval.ranking.evaluate_ranking (fold-in protocol)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.eval import ranking as eval_ranking

METRICS = ("recall@5", "recall@10", "recall_cdl@10", "ndcg@10", "precision@5", "map@10", "hr@5")
N_USERS, N_ITEMS = 23, 40


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Duck-typed stand-in for recjax.data.splits.EvalSet."""
  fold_in: sp.csr_matrix
  held_out: sp.csr_matrix
  users: np.ndarray


def make_case(seed=0, n_users=N_USERS, n_items=N_ITEMS):
  """Binary fold-in/held-out rows and integer weights, so float32 scores are exact."""
  rng = np.random.default_rng(seed)
  fold_in = (rng.random((n_users, n_items)) < 0.25).astype(np.float32)
  held_out = (rng.random((n_users, n_items)) < 0.2) & (fold_in == 0)
  held_out[3] = False  # A user without held-out items is skipped.
  weights = rng.integers(-3, 4, size=(n_items, n_items)).astype(np.float32)
  eval_set = EvalSet(sp.csr_matrix(fold_in), sp.csr_matrix(held_out.astype(np.float32)),
                     np.arange(100, 100 + n_users))
  return eval_set, weights


def linear_scores(weights, inputs):
  return inputs @ weights


def reference(fold_in, held_out, weights, metrics):
  """Plain numpy: argsort-based ranking with fold-in items removed, then each metric."""
  return reference_from_scores(fold_in @ weights, fold_in, held_out, metrics)


def reference_from_scores(scores, fold_in, held_out, metrics):
  sums = {m: 0.0 for m in metrics}
  users = 0
  for s, f, h in zip(scores, fold_in, held_out):
    relevant = np.flatnonzero(h)
    if not len(relevant):
      continue
    users += 1
    s = np.where(f != 0, -np.inf, s)
    ranked = np.lexsort((np.arange(len(s)), -s))  # Score descending, then lower index.
    for name in metrics:
      kind, k = name.split("@")
      k = int(k)
      rel = np.isin(ranked[:k], relevant).astype(np.float64)
      capped = min(k, len(relevant))
      disc = 1.0 / np.log2(np.arange(2, k + 2))
      sums[name] += {
          "recall": rel.sum() / capped,
          "recall_cdl": rel.sum() / len(relevant),
          "precision": rel.sum() / k,
          "hr": float(rel.any()),
          "ndcg": (rel * disc).sum() / disc[:capped].sum(),
          "map": (np.cumsum(rel) / np.arange(1, k + 1) * rel).sum() / capped,
      }[kind]
  return {m: v / users for m, v in sums.items()} | {"users": users}


def assert_results_close(got, want, tol=1e-5):
  assert got["users"] == want["users"]
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("batch_size", [N_USERS - 1, N_USERS, N_USERS + 1, 5])
@pytest.mark.parametrize("item_chunk", [None, 16])
def test_matches_numpy_reference(batch_size, item_chunk):
  eval_set, weights = make_case()
  got = eval_ranking.evaluate_ranking(linear_scores, jnp.asarray(weights), eval_set,
                                      metrics=METRICS, batch_size=batch_size,
                                      item_chunk=item_chunk)
  want = reference(eval_set.fold_in.toarray(), eval_set.held_out.toarray(), weights, METRICS)
  assert want["users"] == N_USERS - 1
  assert_results_close(got, want)


def test_users_as_row_indices_of_full_matrices():
  eval_set, weights = make_case(seed=1)
  rows = np.array([0, 2, 3, 7, 11, 19, 22])
  subset = EvalSet(eval_set.fold_in, eval_set.held_out, rows)
  got = eval_ranking.evaluate_ranking(linear_scores, weights, subset, metrics=METRICS,
                                      batch_size=4)
  want = reference(eval_set.fold_in[rows].toarray(), eval_set.held_out[rows].toarray(),
                   weights, METRICS)
  assert_results_close(got, want)


def test_explicit_zeros_and_duplicates_in_held_out():
  eval_set, weights = make_case(seed=5)
  dense = eval_set.held_out.toarray()
  data, indices, indptr = [], [], [0]
  for r, row in enumerate(dense):
    cols = np.flatnonzero(row)
    # Every held-out entry stored twice (0.5 each), plus one explicit zero per row.
    indices += [*cols, *cols, r % N_ITEMS]
    data += [0.5] * (2 * len(cols)) + [0.0]
    indptr.append(len(indices))
  messy = sp.csr_matrix((np.array(data, np.float32), np.array(indices), np.array(indptr)),
                        shape=dense.shape)
  assert messy.nnz == 2 * dense.astype(bool).sum() + N_USERS
  got = eval_ranking.evaluate_ranking(
      linear_scores, weights, EvalSet(eval_set.fold_in, messy, eval_set.users),
      metrics=METRICS, batch_size=8)
  want = eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=METRICS,
                                       batch_size=8)
  assert_results_close(got, want)


@pytest.mark.parametrize("item_chunk", [None, 16])
def test_candidates_restrict_ranking_and_held_out(item_chunk):
  """Cold-start style evaluation: only candidate items are ranked and counted as held out."""
  eval_set, weights = make_case(seed=7)
  candidates = np.random.default_rng(8).random(N_ITEMS) < 0.35
  got = eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=METRICS,
                                      batch_size=6, item_chunk=item_chunk, candidates=candidates)
  # Independent: the reference on a catalogue made of the candidate columns alone.
  cols = np.flatnonzero(candidates)
  fold_in, held_out = eval_set.fold_in.toarray(), eval_set.held_out.toarray()
  want = reference_from_scores((fold_in @ weights)[:, cols], fold_in[:, cols],
                               held_out[:, cols], METRICS)
  assert 0 < want["users"] < N_USERS - 1  # Some users lose every held-out item.
  assert_results_close(got, want)


def test_candidates_are_checked():
  eval_set, weights = make_case()
  with pytest.raises(ValueError, match="bool array of shape"):
    eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=METRICS,
                                  candidates=np.ones(N_ITEMS - 1, bool))
  with pytest.raises(ValueError, match="candidate items"):
    eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=("recall@5",),
                                  candidates=np.arange(N_ITEMS) < 3)


def test_fold_in_items_are_excluded():
  eval_set, weights = make_case(seed=2)

  def boost_fold_in(w, inputs):
    return inputs @ w + 1e4 * inputs  # Fold-in items would take every top slot.

  got = eval_ranking.evaluate_ranking(boost_fold_in, weights, eval_set, metrics=METRICS,
                                      batch_size=8)
  want = eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=METRICS,
                                       batch_size=8)
  assert_results_close(got, want)
  assert got["hr@5"] > 0


def test_names_are_lower_case_and_users_counted():
  eval_set, weights = make_case()
  got = eval_ranking.evaluate_ranking(linear_scores, weights, eval_set,
                                      metrics=("Recall@5", "ndcg@10", "recall@5"), batch_size=8)
  assert set(got) == {"recall@5", "ndcg@10", "users"}
  assert got["users"] == N_USERS - 1


def test_no_held_out_users_gives_nan():
  eval_set, weights = make_case()
  empty = EvalSet(eval_set.fold_in, sp.csr_matrix(eval_set.held_out.shape, dtype=np.float32),
                  eval_set.users)
  got = eval_ranking.evaluate_ranking(linear_scores, weights, empty, metrics=("recall@5",),
                                      batch_size=8)
  assert got["users"] == 0 and math.isnan(got["recall@5"])


def test_unknown_metric_raises():
  eval_set, weights = make_case()
  with pytest.raises(ValueError, match="kind one of"):
    eval_ranking.evaluate_ranking(linear_scores, weights, eval_set, metrics=("auc@5",))


def test_no_recompilation_across_calls():
  eval_set, weights = make_case(seed=3)
  other_set, other_weights = make_case(seed=4, n_users=N_USERS + 9)

  @chex.assert_max_traces(n=1)
  def traced_once(w, inputs):
    return inputs @ w

  kwargs = dict(metrics=METRICS, batch_size=6, item_chunk=16)
  first = eval_ranking.evaluate_ranking(traced_once, jnp.asarray(weights), eval_set, **kwargs)
  # New parameters and a different number of users (another padded tail): same program.
  eval_ranking.evaluate_ranking(traced_once, jnp.asarray(other_weights), other_set, **kwargs)
  again = eval_ranking.evaluate_ranking(traced_once, jnp.asarray(weights), eval_set, **kwargs)
  assert first == again
  step = eval_ranking._batch_step(traced_once, METRICS, 16)
  assert step._cache_size() == 1


_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    sys.path.insert(0, sys.argv[1])
    from test_eval_ranking import METRICS, make_case, linear_scores
    from recjax.eval import ranking as eval_ranking

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    eval_set, weights = make_case()
    state = jax.device_put(jnp.asarray(weights), NamedSharding(mesh, P()))
    out = {}
    for batch_size in (3, 5, 8, 9):
      for chunk in (None, 16):
        name = f"{batch_size}/{chunk}"
        out["one_device/" + name] = eval_ranking.evaluate_ranking(
            linear_scores, jnp.asarray(weights), eval_set, METRICS, batch_size, chunk)
        out["sharded/" + name] = eval_ranking.evaluate_ranking(
            linear_scores, state, eval_set, METRICS, batch_size, chunk, sharding=sharding)
    # A second sharded evaluation reuses the compiled program.
    step = eval_ranking._batch_step(linear_scores, METRICS, 16)
    before = step._cache_size()
    eval_ranking.evaluate_ranking(linear_scores, state, eval_set, METRICS, 5, 16, sharding=sharding)
    out["recompiled"] = step._cache_size() - before
    print("RESULT" + json.dumps(out))
""")


def test_four_devices_match_one_device():
  env = dict(os.environ)
  flag = "--xla_force_host_platform_device_count=4"
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
  env["JAX_PLATFORMS"] = "cpu"
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
  proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, os.path.dirname(__file__)],
                        env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
  out = json.loads(line[len("RESULT"):])
  assert out.pop("recompiled") == 0
  eval_set, weights = make_case()
  want = reference(eval_set.fold_in.toarray(), eval_set.held_out.toarray(), weights, METRICS)
  for name, got in out.items():
    if name.startswith("sharded/"):
      assert_results_close(got, out["one_device/" + name[len("sharded/"):]], tol=1e-6)
    assert_results_close(got, want)


# ---- recall_train_test@k: the CVAE authors' evaluatePaper.m ----------------------------------


def test_recall_train_test_hand_worked():
  """3 users, 6 items, worked by hand.

  user 0: scores .9 .8 .1 .7 .2 .3, training {0}, test {3, 5}: every item ranked,
          top 2 = {0, 1} -> 1 hit of 3; top 3 = {0, 1, 3} -> 2 of 3.
  user 1: scores .1 .2 .3 .4 .5 .6, training {5}, no test item (still counted):
          top 2 = {5, 4} -> 1 of 1; top 3 -> 1 of 1.
  user 2: scores .6 .5 .4 .3 .2 .1, training {4}, test {2}:
          top 2 = {0, 1} -> 0 of 2; top 3 = {0, 1, 2} -> 1 of 2.
  recall_train_test@2 = (1/3 + 1 + 0) / 3 = 4/9; @3 = (2/3 + 1 + 1/2) / 3 = 13/18.
  recall_cdl (training items removed, users without a test item skipped):
  user 0 top 2 = {1, 3} -> 1/2, top 3 = {1, 3, 5} -> 1; user 2 top 2 = {0, 1} -> 0,
  top 3 = {0, 1, 2} -> 1: @2 = 1/4, @3 = 1.
  """
  # Each user's one training item selects its row of W: scores = inputs @ W.
  weights = np.zeros((6, 6), np.float32)
  weights[0] = [.9, .8, .1, .7, .2, .3]
  weights[5] = [.1, .2, .3, .4, .5, .6]
  weights[4] = [.6, .5, .4, .3, .2, .1]
  fold_in = np.zeros((3, 6), np.float32)
  fold_in[0, 0] = fold_in[1, 5] = fold_in[2, 4] = 1
  held_out = np.zeros((3, 6), np.float32)
  held_out[0, [3, 5]] = held_out[2, 2] = 1
  eval_set = EvalSet(sp.csr_matrix(fold_in), sp.csr_matrix(held_out), np.arange(3))
  metrics = ("recall_train_test@2", "recall_train_test@3", "recall_cdl@2", "recall_cdl@3")
  for batch_size in (3, 2):  # Padding rows in the second batch of 2 must not count.
    got = eval_ranking.evaluate_ranking(linear_scores, jnp.asarray(weights), eval_set, metrics,
                                        batch_size=batch_size)
    assert got["recall_train_test@2"] == pytest.approx(4 / 9, abs=1e-6)
    assert got["recall_train_test@3"] == pytest.approx(13 / 18, abs=1e-6)
    assert got["recall_cdl@2"] == pytest.approx(1 / 4, abs=1e-6)
    assert got["recall_cdl@3"] == pytest.approx(1.0, abs=1e-6)
    assert got["users_train_test"] == 3 and got["users"] == 2
  # Alone, recall_train_test reports its own count as "users" (callers read it as "anyone
  # scored?"): the runner would otherwise drop a run whose metrics are all of this kind.
  alone = eval_ranking.evaluate_ranking(linear_scores, jnp.asarray(weights), eval_set,
                                        ("recall_train_test@2",), batch_size=3)
  assert alone["users"] == alone["users_train_test"] == 3
  assert alone["recall_train_test@2"] == pytest.approx(4 / 9, abs=1e-6)


def evaluate_paper(scores, fold_in, held_out, m):
  """A line-by-line numpy port of evaluatePaper.m: sort every item, relevant = train | test,
  mean over all users of cumsum(hits)[m-1] / (number relevant)."""
  order = np.argsort(-scores, axis=1, kind="stable")
  gt = ((fold_in != 0) | (held_out != 0)).astype(np.float64)
  re = np.take_along_axis(gt, order, axis=1)
  return float(np.mean(np.cumsum(re[:, :m], axis=1)[:, -1] / re.sum(axis=1)))


@pytest.mark.parametrize("item_chunk", [None, 7])
def test_recall_train_test_matches_evaluate_paper(item_chunk):
  eval_set, weights = make_case(seed=4)
  fold_in = eval_set.fold_in.toarray()
  fold_in[fold_in.sum(axis=1) == 0, 0] = 1  # evaluatePaper.m divides by |train| + |test| > 0.
  eval_set = dataclasses.replace(eval_set, fold_in=sp.csr_matrix(fold_in))
  weights = weights + np.random.default_rng(1).random(weights.shape).astype(np.float32) * 1e-3
  held_out = eval_set.held_out.toarray()
  got = eval_ranking.evaluate_ranking(linear_scores, jnp.asarray(weights), eval_set,
                                      ("recall_train_test@5", "recall_train_test@12", "recall@5"),
                                      batch_size=8, item_chunk=item_chunk)
  scores = np.asarray(fold_in @ weights)
  for m in (5, 12):
    assert got[f"recall_train_test@{m}"] == pytest.approx(
        evaluate_paper(scores, fold_in, held_out, m), abs=1e-6)
  assert got["users_train_test"] == N_USERS  # User 3 (no held-out item) counts here ...
  assert got["users"] == N_USERS - 1  # ... and not for recall@5.
