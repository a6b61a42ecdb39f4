"""A model's own batch source and phase (networks trained on item content), item content, ranking all items."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp

from recjax.data import content as content_lib
from recjax.data import splits
from recjax.eval.ranking import evaluate_ranking
from recjax.models.base import Model
from recjax.train.runner import TrainConfig, train_and_evaluate

N_USERS, N_ITEMS, N_WORDS, DIM = 40, 30, 12, 3


@dataclasses.dataclass(frozen=True)
class _Config:
  dim: int = DIM


def _split_and_content():
  rng = np.random.default_rng(0)
  clicks = sp.csr_matrix((rng.random((N_USERS, N_ITEMS)) < 0.2).astype(np.float32))
  words = sp.csr_matrix((rng.random((N_ITEMS, N_WORDS)) < 0.3).astype(np.float32))
  train, test = clicks.copy().tolil(), clicks.copy().tolil()
  for u in range(N_USERS):
    for n, i in enumerate(clicks[u].indices):
      (test if n % 2 == 0 else train)[u, i] = 0
  train, test = sp.csr_matrix(train), sp.csr_matrix(test)
  train.eliminate_zeros()
  test.eliminate_zeros()
  return splits.weak_generalization_split(train, test), words


def _content_regression(log: dict) -> Model:
  """Regresses fixed item targets on item content; trains only on its own batch source."""
  targets = jax.random.normal(jax.random.PRNGKey(1), (N_ITEMS, DIM))

  def init(key, train, item_content):
    log["init_words"] = item_content.shape[1]
    return {"w": jnp.zeros((item_content.shape[1], DIM))}, {"T": targets}

  def prepare(train, item_content):
    log["prepare_calls"] = log.get("prepare_calls", 0) + 1
    return {"content": sp.csr_matrix(item_content)}

  class Source:
    """Item-content batches; records what the runner asked for."""

    def epoch(self, train, aux, batch_size, epoch, seed):
      log.setdefault("batches_calls", []).append((batch_size, epoch, seed))
      x = aux["content"]
      order = np.random.default_rng([seed, epoch]).permutation(x.shape[0])

      def gen():
        for index, rows, mask in content_lib.content_batches(x, batch_size, order):
          log.setdefault("items", []).extend(index[mask].tolist())
          yield {"content": rows, "index": index, "mask": mask}

      return -(-x.shape[0] // batch_size), gen()

  def phase(epoch):
    return {"weight": 0.5 if epoch <= 2 else 1.0, "stage": min(epoch, 3)}

  def loss(params, factors, batch, key, phase):
    del key
    assert "rows" not in batch  # Item batches, never the training user rows.
    assert set(batch) == {"content", "index", "mask"}  # The schedule is not in the examples.
    m = batch["mask"].astype(jnp.float32)
    err = jnp.sum(jnp.square(batch["content"] @ params["w"]
                             - factors["T"][jnp.maximum(batch["index"], 0)]), axis=-1)
    mean = jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
    return phase["weight"] * mean, {"step": phase["step"].astype(jnp.float32),
                                    "epoch": phase["epoch"].astype(jnp.float32),
                                    "weight": phase["weight"],
                                    "stage": phase["stage"].astype(jnp.float32)}

  def score(params, factors, inputs):
    return inputs @ factors["T"] @ factors["T"].T

  return Model(name="content-regression", config=_Config(), init=init, score=score, prepare=prepare,
               loss=loss, optimizer=optax.adam(0.05), side_keys=("item_content",),
               batch_source=Source(), phase=phase, train_defaults={"epochs": 3})


def test_runner_iterates_the_model_batches_not_user_rows(tmp_path):
  split, words = _split_and_content()
  log = {}
  config = TrainConfig(epochs=4, batch_size=8, eval_every=2, seed=3, progress=False, n_devices=1,
                       metrics=("recall@5",))
  train_and_evaluate(_content_regression(log), split, config, tmp_path / "run",
                     side={"item_content": words}, log=lambda s: None)
  assert log["init_words"] == N_WORDS  # init sized by the side information.
  assert log["prepare_calls"] == 1  # prepare runs without a block step.
  assert log["batches_calls"] == [(8, e, 3) for e in (1, 2, 3, 4)]
  assert sorted(log["items"]) == sorted(list(range(N_ITEMS)) * 4)  # Every item once per epoch.
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  n_batches = 4  # ceil(30 / 8)
  # phase["step"] counts updates: the mean over an epoch's items lies in that epoch's range;
  # the model's phase(epoch) values reach the loss as given, one compiled step for all.
  for r in records:
    first = (r["epoch"] - 1) * n_batches
    assert first <= r["train"]["step"] <= first + n_batches - 1
    assert r["train"]["epoch"] == r["epoch"]
    assert r["train"]["weight"] == (0.5 if r["epoch"] <= 2 else 1.0)
    assert r["train"]["stage"] == min(r["epoch"], 3)
  unweighted = [r["train"]["loss"] / r["train"]["weight"] for r in records]
  assert unweighted[-1] < unweighted[0]
  # eval_every = 2 with donated params and checkpoints: the epoch-1 checkpoint saved fine.
  assert [("validation" in r) for r in records] == [False, True, False, True]


def test_model_with_its_own_update_needs_a_loss():
  with pytest.raises(ValueError, match="own update step but no loss"):
    Model(name="m", config={}, init=lambda k, t: ({}, {}), score=lambda p, f, x: x,
          block_step=lambda p, f, a, k: f, update=lambda *args: args)


def test_ranking_can_keep_fold_in_items():
  fold_in = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
  held_out = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 1, 0]], np.float32))
  eval_set = splits.EvalSet(fold_in=fold_in, held_out=held_out, users=np.arange(2))
  scores = jnp.asarray([[9.0, 5.0, 1.0, 0.0], [0.0, 1.0, 5.0, 0.0]])
  score_fn = lambda st, inputs: st
  excl = evaluate_ranking(score_fn, scores, eval_set, metrics=("recall@1",), batch_size=2)
  keep = evaluate_ranking(score_fn, scores, eval_set, metrics=("recall@1",), batch_size=2,
                          exclude_fold_in=False)
  assert excl["recall@1"] == 1.0  # User 0's fold-in item 0 is skipped: item 1 is first.
  assert keep["recall@1"] == 0.5  # Ranked with item 0 in place, user 0 misses at 1.


def test_bag_of_words_and_word_max_scaling():
  vocab = ["protein", "network", "gene", "model"]
  counts = content_lib.bag_of_words(["Protein-protein NETWORK models.", "gene, gene; model_x", ""],
                                    vocab)
  np.testing.assert_array_equal(counts.toarray(), [[2, 1, 0, 0], [0, 0, 2, 1], [0, 0, 0, 0]])
  scaled = content_lib.scale_by_word_max(counts)
  np.testing.assert_allclose(scaled.toarray(), [[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
  np.testing.assert_allclose(
      content_lib.scale_by_word_max(sp.csr_matrix([[4.0, 1.0], [2.0, 0.0]])).toarray(),
      [[1.0, 1.0], [0.5, 0.0]])
  with pytest.raises(ValueError, match="duplicate"):
    content_lib.bag_of_words(["a"], ["a", "a"])


def test_citeulike_a_titles_as_bag_of_words(shared_data):
  from recjax.data.registry import load_dataset
  ds = load_dataset("citeulike-a", data_dir=shared_data, download=False)
  assert ds.item_content is None and len(ds.vocabulary) == 8000
  x = content_lib.bag_of_words(ds.item_text, ds.vocabulary)
  assert x.shape == (16_980, 8000)
  lengths = np.diff(x.indptr)
  assert int((lengths == 0).sum()) == 71  # Titles with no vocabulary word.
  assert 5.5 < lengths.mean() < 5.8  # ~5.6 distinct vocabulary words per title.
  # Item 0, "The metabolic world of Escherichia coli is not small".
  words = {ds.vocabulary[j] for j in x[0].indices}
  assert {"metabolic", "world", "coli", "small"} <= words


def test_cold_start_report_ranks_only_unseen_items(tmp_path):
  """`cold_start=True`: test metrics over the items no training or fold-in row touched."""
  split, words = _split_and_content()
  # Hold out every click of items 0..9 from training: they become cold.
  train = split.train.tolil()
  test_rows = split.test.held_out.tolil()
  for u, i in zip(*split.train[:, :10].nonzero()):
    train[u, i] = 0
    test_rows[u, i] = 1
  train, held = sp.csr_matrix(train), sp.csr_matrix(test_rows)
  train.eliminate_zeros()
  split = splits.weak_generalization_split(train, held)
  from recjax.eval.cold_start import cold_items
  cold = cold_items(split)
  np.testing.assert_array_equal(cold, np.asarray(train.getnnz(axis=0)) == 0)
  assert cold[:10].all()
  config = TrainConfig(epochs=1, batch_size=8, progress=False, n_devices=1,
                       metrics=("recall@3",), cold_start=True)
  results = train_and_evaluate(_content_regression({}), split, config, tmp_path / "run",
                               side={"item_content": words}, log=lambda s: None)
  got = results["test_cold"]
  assert got["items"] == int(cold.sum())
  # Independent: score with the final factors, keep the cold columns, rank by numpy.
  targets = jax.random.normal(jax.random.PRNGKey(1), (N_ITEMS, DIM))
  scores = np.asarray(train.toarray() @ targets @ targets.T)
  hits, users = 0.0, 0
  for u in range(N_USERS):
    rel = set(np.flatnonzero(held[u].toarray()[0] * cold))
    if not rel:
      continue
    cols = np.flatnonzero(cold & (train[u].toarray()[0] == 0))
    top = cols[np.argsort(-scores[u, cols], kind="stable")[:3]]
    hits += len(rel & set(top)) / min(3, len(rel))
    users += 1
  assert got["users"] == users > 0
  np.testing.assert_allclose(got["recall@3"], hits / users, rtol=1e-5)
  assert json.loads((tmp_path / "run" / "results.json").read_text())["test_cold"] == got
