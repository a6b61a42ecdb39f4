"""The hybrids' shared content pieces: data.content's scalings and output bias, nn.content's helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.data import content as content_lib
from recjax.nn import content as content_nn

COUNTS = np.array([[4.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)


def test_scale_names_each_scaling_and_drops_explicit_zeros():
  x = sp.csr_matrix(COUNTS)
  x.data = np.append(x.data, 0.0)  # An explicit zero stored in row 2, column 2.
  x.indices = np.append(x.indices, 2)
  x.indptr[-1] += 1
  want = {"word_max": [[1.0, 1.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]],
          "row_max": [[1.0, 0.25, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
          "binary": [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
          "none": COUNTS}
  assert set(want) == set(content_lib.SCALES)
  for how, dense in want.items():
    got = content_lib.scale(x, how)
    assert got.dtype == np.float32 and got.nnz == 3, how
    np.testing.assert_array_equal(got.toarray(), dense)
  with pytest.raises(ValueError, match="content_scale must be one of"):
    content_lib.scale(x, "max")


def test_marginal_output_bias_is_the_bias_only_optimum():
  x = sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.5]], np.float32))
  p = np.array([0.75, 0.125])
  np.testing.assert_allclose(content_lib.marginal_output_bias(x), np.log(p / (1 - p)), rtol=1e-6)
  # A word that never occurs is clipped to p = 1e-6, not -inf.
  empty = content_lib.marginal_output_bias(sp.csr_matrix((3, 1), dtype=np.float32))
  np.testing.assert_allclose(empty, np.log(1e-6 / (1 - 1e-6)), rtol=1e-6)
  np.testing.assert_allclose(content_lib.marginal_output_bias(x, "gaussian"), p, rtol=1e-6)
  with pytest.raises(ValueError, match="likelihood"):
    content_lib.marginal_output_bias(x, "poisson")


def test_pretraining_stage_layerwise_then_whole_network_without_then_with_the_prior():
  stages = [content_nn.pretraining_stage(e, 3, 2, 1) for e in range(1, 10)]
  assert stages == [(0, 0.0), (0, 0.0), (1, 0.0), (1, 0.0), (2, 0.0), (2, 0.0), (3, 0.0),
                    (3, 1.0), (3, 1.0)]
  assert [content_nn.pretraining_stage(e, 3, 0, 2) for e in (1, 2, 3)] == [(3, 0.0), (3, 0.0),
                                                                          (3, 1.0)]


def test_weight_decay_masked_mean_and_with_param():
  params = {"params": {"a": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)},
                       "b": {"kernel": 2.0 * jnp.ones(3)}}}
  assert float(content_nn.weight_decay(params, 0.5, 10)) == pytest.approx(0.5 / 20 * (4 + 12))
  assert float(content_nn.weight_decay(params, 0.5, 10, ("a",))) == pytest.approx(0.5 / 20 * 4)
  mask = jnp.array([True, False, True])
  assert float(content_nn.masked_mean(jnp.array([1.0, 100.0, 3.0]), mask)) == 2.0
  assert float(content_nn.masked_mean(jnp.ones(3), jnp.zeros(3, bool))) == 0.0
  new = content_nn.with_param(params, ("a", "bias"), np.array([3.0, 4.0]))
  np.testing.assert_array_equal(new["params"]["a"]["bias"], [3.0, 4.0])
  assert new["params"]["a"]["bias"].dtype == jnp.float32
  assert new["params"]["b"] is params["params"]["b"]
  np.testing.assert_array_equal(params["params"]["a"]["bias"], [0.0, 0.0])  # Not modified.


def test_encode_all_and_item_sum_drop_padding_rows():
  batches = [{"x": np.array([1.0, 2.0, 3.0]), "index": np.array([0, 1, 2], np.int32),
              "mask": np.array([True, True, True])},
             {"x": np.array([4.0, 9.0, 9.0]), "index": np.array([3, -1, -1], np.int32),
              "mask": np.array([True, False, False])}]
  codes = content_nn.encode_all(lambda p, b: p * b["x"][:, None], 2.0, batches)
  np.testing.assert_array_equal(codes, [[2.0], [4.0], [6.0], [8.0]])
  v = jnp.arange(4.0)[:, None]

  def terms(p, b, v_rows, key):
    del key
    return p * b["x"], v_rows[:, 0], jnp.full(3, 1000.0)

  # Terms 1 and 2: 2x + v over the real rows; the third term is not summed.
  assert content_nn.item_sum(terms, 2.0, v, batches, jax.random.PRNGKey(0), 2) == pytest.approx(
      2 * (1 + 2 + 3 + 4) + (0 + 1 + 2 + 3))
