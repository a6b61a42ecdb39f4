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
