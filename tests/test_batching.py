"""Tests for recjax.data.batching."""

import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import batching


def random_matrix(n_rows=103, n_cols=37, density=0.1, seed=0):
  m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed,
                dtype=np.float32)
  m.data += 0.5
  return m


@pytest.mark.parametrize("batch_size,multiple", [(10, 1), (16, 8), (200, 1), (1, 1)])
def test_dense_row_batches_cover_each_row_once(batch_size, multiple):
  m = random_matrix()
  dense = m.toarray()
  order = batching.shuffled_order(m.shape[0], seed=1, epoch=2)
  batches = list(batching.dense_row_batches(m, batch_size, order=order,
                                            pad_to_multiple_of=multiple))
  assert len(batches) == batching.n_batches(m.shape[0], batch_size, multiple)
  shapes = {(b.rows.shape, b.mask.shape, b.index.shape) for b in batches}
  assert len(shapes) == 1
  b_size = batches[0].rows.shape[0]
  assert b_size % multiple == 0 and b_size >= batch_size
  seen = np.concatenate([b.index[b.mask] for b in batches])
  assert np.array_equal(seen, order)
  for b in batches:
    assert b.rows.dtype == np.float32
    assert np.all(b.index[~b.mask] == -1) and np.all(b.rows[~b.mask] == 0)
    assert np.array_equal(b.rows[b.mask], dense[b.index[b.mask]])


def test_shuffled_order_deterministic():
  a = batching.shuffled_order(50, 0, 0)
  assert np.array_equal(a, batching.shuffled_order(50, 0, 0))
  assert not np.array_equal(a, batching.shuffled_order(50, 0, 1))
  assert not np.array_equal(a, batching.shuffled_order(50, 1, 0))
  assert np.array_equal(np.sort(a), np.arange(50))


def roundtrip(buckets, shape):
  rows, cols, vals = [], [], []
  for b in buckets:
    r = np.broadcast_to(b.rows[:, None], b.mask.shape)
    rows.append(r[b.mask])
    cols.append(b.cols[b.mask])
    vals.append(b.vals[b.mask])
  return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=shape)


@pytest.mark.parametrize("edges,rpb", [(None, None), (None, 4), ([2, 3, 5, 8, 64], 3)])
def test_bucketed_rows_roundtrip(edges, rpb):
  rng = np.random.default_rng(0)
  lengths = np.concatenate([[0, 0, 1], rng.integers(0, 40, size=60)])
  n_cols = 50
  rows = [rng.choice(n_cols, size=n, replace=False) for n in lengths]
  m = sp.csr_matrix((rng.random(int(lengths.sum())).astype(np.float32) + 0.1,
                     (np.repeat(np.arange(len(rows)), lengths), np.concatenate(rows))),
                    shape=(len(rows), n_cols))
  buckets = batching.bucketed_rows(m, edges, rows_per_batch=rpb)
  assert (roundtrip(buckets, m.shape) != m).nnz == 0
  ids = np.concatenate([b.rows[b.rows >= 0] for b in buckets])
  assert np.array_equal(np.sort(ids), np.arange(m.shape[0]))  # each row once
  allowed = batching.default_bucket_edges(lengths.max()) if edges is None else edges
  for b in buckets:
    assert b.length in allowed
    assert b.cols.dtype == np.int32 and b.vals.dtype == np.float32
    assert b.mask.dtype == bool
    pad = b.rows < 0
    assert not b.mask[pad].any()
    assert np.all(b.cols[~b.mask] == 0) and np.all(b.vals[~b.mask] == 0)
    n = np.diff(m.indptr)[b.rows[~pad]]
    assert np.all(n <= b.length)
    assert np.array_equal(b.mask[~pad].sum(1), n)
    if rpb:
      assert b.n_rows % rpb == 0
  # Empty rows land in the smallest bucket.
  assert 0 in buckets[0].rows and 1 in buckets[0].rows
  assert len(buckets) <= len(allowed)
  ratio = batching.padding_ratio(buckets)
  slots = sum(b.mask.size for b in buckets)
  assert ratio == pytest.approx((slots - m.nnz) / m.nnz)


def test_bucketed_rows_rejects_short_edges():
  m = random_matrix(density=0.5)
  with pytest.raises(ValueError):
    batching.bucketed_rows(m, [2, 4])


def test_default_edges_geometric():
  assert batching.default_bucket_edges(100) == [8, 16, 32, 64, 128]
  assert batching.default_bucket_edges(3) == [8]
  e = batching.default_bucket_edges(1000, min_len=4, growth=1.5)
  assert e[-1] >= 1000 and all(b > a for a, b in zip(e, e[1:]))


def test_length_grouped_order_is_a_permutation_of_length_homogeneous_batches():
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.geometric(0.05, size=1000), 300)  # Heavy-tailed, like users' clicks.
  rows = np.repeat(np.arange(1000), lengths)
  cols = np.concatenate([rng.choice(400, n, replace=False) for n in lengths])
  m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(1000, 400))
  order = batching.length_grouped_order(m, 64, seed=3, epoch=2, group_batches=4)
  assert sorted(order.tolist()) == list(range(1000))
  np.testing.assert_array_equal(order, batching.length_grouped_order(m, 64, 3, 2, group_batches=4))
  assert not np.array_equal(order, batching.length_grouped_order(m, 64, 3, 3, group_batches=4))
  plain = list(batching.padded_row_batches(m, 64, order=batching.shuffled_order(1000, 3, 2)))
  grouped = list(batching.padded_row_batches(m, 64, order=order, bucket_lengths=True))
  # Same rows, same values (padding slots hold value 0), far fewer slots.
  def dense(batches):
    out = np.zeros((1000, 400), np.float32)
    for b in batches:
      for r in np.flatnonzero(b.mask):
        np.add.at(out[b.index[r]], b.items[r], b.values[r])
    return out
  np.testing.assert_array_equal(dense(grouped), m.toarray())
  np.testing.assert_array_equal(dense(plain), m.toarray())
  slots = lambda bs: sum(b.items.size for b in bs)
  assert slots(grouped) < slots(plain) / 2, (slots(grouped), slots(plain))  # Measured: 3.1x fewer.
  for b in grouped:  # Each batch: a power of two >= 8 that holds its longest row.
    width = b.items.shape[1]
    need = max(int(lengths[b.index[b.mask]].max()), 1)
    assert width == min(max(8, 1 << (need - 1).bit_length()), int(lengths.max())), (width, need)
