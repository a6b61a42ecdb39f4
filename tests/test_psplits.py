"""The random-P protocols (recjax.data.psplits): P random training items per user, the rest test."""

import numpy as np
import pytest

from recjax.data import pipeline, psplits
from recjax.data.registry import load_dataset
from recjax.data.types import Dataset, Interactions


def _dataset(n_users=60, n_items=40, seed=0, kind="implicit"):
  """Users with 0..12 distinct items (so some have <= P), repeated events and counts."""
  rng = np.random.default_rng(seed)
  users, items = [], []
  for u in range(n_users):
    n = int(rng.integers(0, 13)) if u else 0  # User 0 has no item at all.
    chosen = rng.choice(n_items, n, replace=False)
    users += [u] * n
    items += chosen.tolist()
  users += users[:5]  # A few repeated events: still one entry each.
  items += items[:5]
  users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
  values = (rng.integers(1, 6, len(users)) if kind == "explicit"
            else np.ones(len(users))).astype(np.float32)
  inter = Interactions(users=users, items=items, values=values, timestamps=None,
                       user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                       duplicate_rule="last" if kind == "explicit" else "sum", name="toy")
  return Dataset(name="toy", interactions=inter, kind=kind)


def _split(dataset, p, seed=98765):
  return pipeline.ranking_split(dataset, pipeline.DataConfig(protocol=f"random-P{p}",
                                                             split_seed=seed))


def _rows(m):
  return [set(m[u].indices.tolist()) for u in range(m.shape[0])]


def test_every_name_is_registered():
  for p in range(1, 11):
    assert f"random-P{p}" in pipeline.PROTOCOLS
  assert psplits.p_of("random-P7") == 7
  for bad in ("random-P0", "random-P11", "P1", "random-p1"):
    with pytest.raises(ValueError):
      psplits.p_of(bad)


@pytest.mark.parametrize("p", [1, 3, 5, 10])
def test_p_training_items_per_eligible_user_and_a_disjoint_cover(p):
  dataset = _dataset()
  full = psplits.binary_matrix(dataset)
  split, info = _split(dataset, p)
  assert split.train.shape == full.shape == (60, 40)  # Every user and item kept.
  np.testing.assert_array_equal(split.items, np.arange(40))
  assert split.validation is split.test
  np.testing.assert_array_equal(split.test.fold_in.toarray(), split.train.toarray())
  assert set(np.unique(split.train.data)) <= {1.0} and set(np.unique(split.test.held_out.data)) <= {1.0}
  evaluated = 0
  for items, tr, te in zip(_rows(full), _rows(split.train), _rows(split.test.held_out)):
    assert not tr & te and tr | te == items
    if len(items) > p:
      assert len(tr) == p and len(te) == len(items) - p
      evaluated += 1
    else:  # Too few items: all train, none evaluated.
      assert tr == items and not te
  assert 0 < evaluated < 60
  assert info["split"]["evaluated_users"] == evaluated
  assert info["split"]["train_interactions"] == split.train.nnz
  assert f"random-P{p}" in info["summary"]


def test_same_seed_same_split_other_seed_other_split():
  dataset = _dataset()
  a, _ = _split(dataset, 2, seed=1)
  b, _ = _split(dataset, 2, seed=1)
  c, _ = _split(dataset, 2, seed=2)
  assert (a.train != b.train).nnz == 0 and (a.test.held_out != b.test.held_out).nnz == 0
  assert (a.train != c.train).nnz > 0
  assert a.train.nnz == c.train.nnz  # Only which items, not how many.


def test_explicit_data_is_binarized_without_dropping_items():
  dataset = _dataset(kind="explicit")
  split, info = _split(dataset, 1)
  config = pipeline.resolve(pipeline.DataConfig(protocol="random-P1"), dataset)
  full = dataset.interactions.to_csr()
  positive = (full >= config.binarize_threshold).astype(np.float32)
  assert split.train.shape == (60, 40)
  assert split.train.nnz + split.test.held_out.nnz == positive.nnz
  assert ((split.train + split.test.held_out) != positive).nnz == 0
  assert info["preprocessed"]["interactions"] == positive.nnz


def test_citeulike_a_random_p1_has_one_training_item_per_user(shared_data):
  dataset = load_dataset("citeulike-a", data_dir=str(shared_data), download=False)
  split, info = pipeline.ranking_split(dataset, pipeline.DataConfig(protocol="random-P1"))
  assert split.train.shape == (5551, 16980)
  assert split.train.nnz == 5551
  assert split.train.nnz + split.test.held_out.nnz == 204_986
  assert info["split"]["evaluated_users"] == 5551
  shipped = dataset.predefined_splits["P1"][0].to_csr()
  assert shipped.nnz == 5551 and (shipped != split.train).nnz > 0  # A fresh draw, same size.


@pytest.mark.parametrize("p,folds", [(2, 5), (5, 5), (10, 3)])
def test_cv_folds_partition_the_training_clicks_and_never_read_the_test(p, folds):
  dataset = _dataset()
  base, _ = _split(dataset, p, seed=3)
  seen = [set() for _ in range(60)]
  per_fold = []
  for fold in range(1, folds + 1):
    split, info = pipeline.ranking_split(dataset, pipeline.DataConfig(
        protocol=psplits.cv_name(p, fold, folds), split_seed=3))
    assert split.validation is split.test
    per_fold.append([len(h) for h in _rows(split.test.held_out)])
    for u, (tr, held, full_train, test) in enumerate(zip(
        _rows(split.train), _rows(split.test.held_out), _rows(base.train),
        _rows(base.test.held_out))):
      assert tr | held == full_train and not tr & held  # Fold f out of random-P's train.
      assert not (tr | held) & test  # random-P's test clicks are nowhere.
      if full_train:
        assert tr  # Nobody loses their last training click.
      assert not held & seen[u]  # Folds are disjoint ...
      seen[u] |= held
    assert info["split"]["left_out_test_interactions"] == base.test.held_out.nnz
  for u, full_train in enumerate(_rows(base.train)):
    n = len(full_train)
    if n >= 2:  # ... and cover every click of a user who has two or more, spread evenly.
      assert seen[u] == full_train
      assert {c[u] for c in per_fold} <= {n // folds, -(-n // folds)}
    else:
      assert not seen[u]


def test_cv_at_p1_is_refused_and_names_are_checked():
  with pytest.raises(ValueError, match="cross-validation needs P >= 2"):
    pipeline.ranking_split(_dataset(), pipeline.DataConfig(protocol="random-P1-cv1of5"))
  assert psplits.cv_of("random-P3-cv2of5") == (3, 2, 5)
  assert psplits.cv_of("random-P3") is None
  for bad in ("random-P3-cv0of5", "random-P3-cv6of5", "random-P11-cv1of5", "random-P3-cv1of1"):
    with pytest.raises(ValueError, match="random-P<P>-cv<f>of<k>"):
      pipeline.ranking_split(_dataset(), pipeline.DataConfig(protocol=bad))
