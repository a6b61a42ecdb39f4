"""The collaborative-RNN sequence protocol: tails by the paper's rule, re-indexing, padding."""

import numpy as np
import pytest

from recjax.data import sequences
from recjax.data.types import Interactions


def _inter(seqs, n_items):
  users = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)])
  items = np.concatenate(seqs)
  return Interactions(users=users, items=items, values=np.ones(len(items), np.float32),
                      timestamps=None, user_ids=np.arange(len(seqs)),
                      item_ids=np.arange(n_items), name="toy")


def test_tails_follow_paper_rule():
  rng = np.random.default_rng(0)
  seqs = [rng.integers(0, 5, size=n) for n in (40, 1000, 30000, 2)]
  split = sequences.sequence_split(_inter(seqs, 5))
  # 2-event user dropped; 40 -> test 3 (min), 1000 -> 25, 30000 -> 500 (max).
  assert split.n_users == 3
  assert [len(t) for t in split.test] == [3, 25, 500]
  assert [len(v) for v in split.valid] == [3, 24, 500]  # tail of the 37/975/29500 prefix.
  for f, v, t, s in zip(split.fit, split.valid, split.test, seqs[:3]):
    np.testing.assert_array_equal(split.item_ids[np.concatenate([f, v, t])], s)


def test_unseen_test_items_are_dropped_and_items_reindexed():
  seqs = [np.array([3, 5, 3, 5, 3, 5, 3, 5, 3, 5, 9, 9, 7])]
  split = sequences.sequence_split(_inter(seqs, 10))
  np.testing.assert_array_equal(split.item_ids, [3, 5])
  assert split.n_items == 2
  assert split.dropped == {"valid": 0, "test": 3}  # the tail 9, 9, 7 never occurs in training.
  assert len(split.test[0]) == 0


def test_max_length_keeps_last_events():
  seqs = [np.arange(100) % 7]
  split = sequences.sequence_split(_inter(seqs, 7), max_length=50)
  assert sum(map(len, (split.fit[0], split.valid[0], split.test[0]))) == 50


def test_padding_and_pairs():
  items, lengths = sequences.pad_sequences([np.array([1, 2, 3]), np.array([4])], multiple=4)
  assert items.shape == (2, 4) and items.dtype == np.int32
  np.testing.assert_array_equal(lengths, [3, 1])
  pairs = sequences.next_item_pairs([np.array([1, 2]), np.array([4])],
                                    [np.array([3]), np.array([5, 6])], multiple=4)
  np.testing.assert_array_equal(pairs["inputs"][0, :2], [1, 2])
  np.testing.assert_array_equal(pairs["targets"][0, :2], [2, 3])
  np.testing.assert_array_equal(pairs["tail_mask"], [[0, 1, 0, 0], [1, 1, 0, 0]])
  np.testing.assert_array_equal(pairs["mask"], [[1, 1, 0, 0], [1, 1, 0, 0]])
  with pytest.raises(ValueError, match="shorter"):
    sequences.pad_sequences([np.arange(5)], length=3)


def test_real_dataset_protocol(shared_data):
  from recjax.data import registry
  inter = registry.load_dataset("lastfm-s3rec", data_dir=str(shared_data)).interactions
  split = sequences.sequence_split(inter)
  assert split.n_users == inter.n_users  # every user has >= 5 events.
  assert min(len(t) for t in split.test) >= 0
  assert all(len(t) <= 500 for t in split.test)


def test_entropy_terciles_are_equal_groups_even_with_ties():
  from recjax.eval.sequence import entropy_terciles
  ent = np.log([3, 3, 3, 3, 3, 3, 5, 9, 2])  # Six users tie: value quantiles would merge bins.
  bins = entropy_terciles(ent)
  assert np.bincount(bins).tolist() == [3, 3, 3]
  assert bins[8] == 0 and bins[7] == 2  # The lowest and highest entropies.
  order = np.argsort(ent, kind="stable")
  assert np.all(np.diff(bins[order]) >= 0)  # Monotone in entropy.


def _dataset(seqs, n_items):
  from recjax.data.types import Dataset
  return Dataset(name="toy", interactions=_inter(seqs, n_items))


@pytest.mark.parametrize("protocol", ["sequence-tail", "sequence-tail-novalid"])
def test_tail_split_for_the_runner(protocol):
  import types
  rng = np.random.default_rng(3)
  seqs = [rng.integers(0, 6, size=n) for n in (40, 12, 2, 25)]
  config = types.SimpleNamespace(protocol=protocol, binarize_threshold=None, min_user_count=5,
                                 min_item_count=None)
  info = {}
  split = sequences.tail_split(_dataset(seqs, 6), config, info)
  ref = sequences.sequence_split(_inter(seqs, 6))
  with_valid = protocol == "sequence-tail"
  trained = ref.fit if with_valid else ref.train()
  assert [list(s) for s in split.sequences] == [list(s) for s in trained]
  np.testing.assert_array_equal(split.train.toarray(),
                                sequences.count_matrix(trained, ref.n_items).toarray())
  np.testing.assert_array_equal(split.train_users, [0, 1, 3])  # The 2-event user is dropped.
  assert split.validation.n_users == (3 if with_valid else 0)
  if with_valid:  # The validation tail conditions on the fit prefix only.
    assert [list(h) for h in split.validation.histories] == [list(f) for f in ref.fit]
  # The test tail conditions on the whole training prefix, validation tail included.
  assert [list(h) for h in split.test.histories] == [list(t) for t in ref.train()]
  assert split.test.held_out.sum() == sum(map(len, ref.test)) and split.test.per_user
  assert any("min_user_count=5 not applied" in n for n in info["sequence"]["notes"])
  with pytest.raises(ValueError, match="sequence protocol"):
    sequences.train_sequences(None, object(), print)


def test_evaluate_sequence_scores_only_tail_positions():
  from recjax.eval import sequence as seq_eval
  hist = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6])]
  tail = [np.array([7, 8]), np.array([9]), np.zeros(0, np.int64)]
  eval_set = sequences.SequenceEvalSet(histories=hist, tails=tail, users=np.array([0, 1, 2]),
                                       held_out=sequences.count_matrix(tail, 10), per_user=True)
  seen = []

  def score(state, batch):  # log P = -target / 10 on every position.
    seen.append(batch["inputs"].shape)
    return -batch["targets"] / 10.0

  out = seq_eval.evaluate_sequence(score, None, eval_set, batch_size=2)
  assert out["users"] == 2 and all(s == (2, 8) for s in seen)  # One full batch, power-of-2 T.
  np.testing.assert_allclose(out["per_user_error"][:2], [0.75, 0.9])
  assert out["per_user_error"][2] is None
  assert out["error"] == pytest.approx(0.825) and out["neg_error"] == pytest.approx(-0.825)
  assert len(out["history_entropy"]) == 3
