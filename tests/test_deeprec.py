"""DeepRec: the network's shape, masked MSE, dense re-feeding, gradients, an end-to-end run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.test_util import check_grads

from recjax.data.ratings import rating_split
from recjax.models import deeprec
from recjax.models.registry import get_model
from recjax.nn import rating_autoencoders as rae
from recjax.train.runner import TrainConfig, train_and_evaluate

HIDDEN = (6, 5, 8)


def _model(**kw):
  return deeprec.make(deeprec.Config(**{"hidden": HIDDEN, "dropout": 0.0, **kw}))


def _batch(n_rows=5, n_cols=7, seed=0):
  rng = np.random.default_rng(seed)
  x = np.where(rng.random((n_rows, n_cols)) < 0.4, rng.integers(1, 6, (n_rows, n_cols)), 0)
  x[:, 1] = np.where(x[:, 1] == 0, 3, x[:, 1])  # Every real row has a rating.
  x[:, 5] = 0  # Column 5 is never observed.
  mask = np.arange(n_rows) < n_rows - 1
  x[~mask] = 0
  return {"rows": jnp.asarray(x, jnp.float32), "mask": jnp.asarray(mask),
          "index": jnp.where(jnp.asarray(mask), jnp.arange(n_rows), -1).astype(jnp.int32)}


def _init(model, n_cols=7):
  return model.init(jax.random.PRNGKey(0), sp.csr_matrix(np.ones((4, n_cols), np.float32)))


def test_network_mirrors_the_encoder_and_ties_weights_on_request():
  params, _ = _init(_model())
  shapes = {k: v.shape for k, v in params["params"].items() if k.endswith("kernel")}
  assert shapes == {"encoder_0_kernel": (7, 6), "encoder_1_kernel": (6, 5),
                    "encoder_2_kernel": (5, 8), "decoder_0_kernel": (8, 5),
                    "decoder_1_kernel": (5, 6), "decoder_2_kernel": (6, 7)}
  tied, _ = _init(_model(tied=True))
  assert not any(k.startswith("decoder") and k.endswith("kernel") for k in tied["params"])
  x = _batch()["rows"]
  out = rae.DeepAutoencoder(n_out=7, hidden=HIDDEN, tied=True).apply(tied, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), tied["params"])
  for i in range(3):  # Decoder layer i uses encoder kernel 2 - i, transposed.
    p[f"decoder_{i}_kernel"] = p[f"encoder_{2 - i}_kernel"].T
  np.testing.assert_allclose(out, _forward_numpy(p, np.asarray(x, np.float64)), rtol=1e-4, atol=1e-5)


def _forward_numpy(p, x):
  alpha, scale = 1.6732632423543772, 1.0507009873554805
  selu = lambda z: scale * np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
  h = x
  for i in range(3):
    h = selu(h @ p[f"encoder_{i}_kernel"] + p[f"encoder_{i}_bias"])
  for i in range(3):
    h = h @ p[f"decoder_{i}_kernel"] + p[f"decoder_{i}_bias"]
    h = selu(h)  # The last layer too: the paper's code applies the activation there.
  return h


def test_masked_mse_and_dense_refeeding_against_numpy():
  batch = _batch()
  x, m = np.asarray(batch["rows"], np.float64), np.asarray(batch["mask"])
  model0 = _model(refeed_steps=0)
  params, factors = _init(model0)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  y = _forward_numpy(p, x)
  obs = (x != 0) & m[:, None]
  mmse = ((y - x) ** 2 * obs).sum() / obs.sum()
  loss0, aux0 = model0.loss(params, factors, batch, jax.random.PRNGKey(1), {})
  assert float(loss0) == pytest.approx(mmse, rel=1e-5)
  assert float(aux0["mmse"]) == pytest.approx(mmse, rel=1e-5)
  # The second pass takes the first pass's dense output as input and target, on every entry.
  z = _forward_numpy(p, y)
  refeed = ((z - y) ** 2)[m].mean()
  model1 = _model(refeed_steps=1)
  loss1, aux1 = model1.loss(params, factors, batch, jax.random.PRNGKey(1), {})
  assert float(aux1["refeed_mse_1"]) == pytest.approx(refeed, rel=1e-5)
  assert float(loss1) == pytest.approx(mmse + refeed, rel=1e-5)


def test_refeeding_treats_the_first_output_as_data():
  # Gradient = d/dp [MMSE(f_p(x), x) + MSE(f_p(y), y)] with y = f_p0(x) held fixed.
  batch = _batch()
  model = _model(refeed_steps=1)
  params, factors = _init(model)
  net = rae.DeepAutoencoder(n_out=7, hidden=HIDDEN, dropout=0.0)
  x, m = batch["rows"], batch["mask"].astype(jnp.float32)
  y = net.apply(params, x)
  obs = (x != 0) * m[:, None]

  def reference(p):
    first = jnp.sum((net.apply(p, x) - x) ** 2 * obs) / jnp.sum(obs)
    second = jnp.sum((net.apply(p, y) - y) ** 2 * m[:, None]) / (jnp.sum(m) * x.shape[1])
    return first + second

  got = jax.grad(lambda p: model.loss(p, factors, batch, jax.random.PRNGKey(1), {})[0])(params)
  want = jax.grad(reference)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)


def test_loss_ignores_entries_that_are_not_observed():
  model = _model(refeed_steps=0, dropout=0.5)
  params, factors = _init(model)
  batch = _batch()
  key = jax.random.PRNGKey(3)
  base = float(model.loss(params, factors, batch, key, {})[0])

  def shifted(col):
    p = dict(params["params"])
    p["decoder_2_bias"] = p["decoder_2_bias"].at[col].add(2.0)
    return float(model.loss({"params": p}, factors, batch, key, {})[0])

  assert shifted(5) == base  # Unobserved column: its predictions do not count.
  assert shifted(1) != pytest.approx(base)


def test_l2_adds_lambda_times_the_kernels_squared_norm():
  """l2 = λ adds λ Σ‖W‖² (kernels only); the former weight_decay w added w/2 Σ‖W‖²."""
  params, factors = _init(_model(refeed_steps=0))
  batch, key = _batch(), jax.random.PRNGKey(1)
  plain = float(_model(refeed_steps=0).loss(params, factors, batch, key, {})[0])
  with_l2 = float(_model(refeed_steps=0, l2=0.05).loss(params, factors, batch, key, {})[0])
  kernels = [np.asarray(v, np.float64) for path, v in jax.tree_util.tree_leaves_with_path(params)
             if "kernel" in str(path[-1])]
  assert kernels and len(kernels) < len(jax.tree.leaves(params))  # Biases are left out.
  assert with_l2 - plain == pytest.approx(0.05 * sum((k ** 2).sum() for k in kernels), rel=1e-4)


def test_loss_gradients_are_right():
  # Without re-feeding: its stop-gradient makes the gradient differ from the loss's
  # finite differences on purpose (checked against a reference just above).
  model = _model(refeed_steps=0, dropout=0.5, l2=0.05)
  with jax.enable_x64(True):
    params, factors = _init(model)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    batch = _batch()
    batch["rows"] = batch["rows"].astype(jnp.float64)
    key = jax.random.PRNGKey(2)  # One key: the same dropout masks in every evaluation.
    f = lambda p: model.loss(p, factors, batch, key, {})[0]
    check_grads(jax.jit(f), (params,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_dropout_is_active_in_training_and_off_in_scoring():
  model = _model(refeed_steps=0, dropout=0.8)
  params, factors = _init(model)
  batch = _batch()
  a = model.loss(params, factors, batch, jax.random.PRNGKey(0), {})[0]
  b = model.loss(params, factors, batch, jax.random.PRNGKey(1), {})[0]
  assert float(a) != float(b)
  s1 = model.score(params, factors, batch["rows"])
  s2 = rae.DeepAutoencoder(n_out=7, hidden=HIDDEN, dropout=0.8).apply(params, batch["rows"])
  np.testing.assert_array_equal(s1, s2)


def _synthetic_ratings(n_users=300, n_items=150, rank=3, density=0.3, seed=0):
  rng = np.random.default_rng(seed)
  u, v = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
  score = 3.0 + 0.9 * (u @ v.T) / math.sqrt(rank) + 0.5 * rng.normal(size=(n_users, 1)) \
      + 0.2 * rng.normal(size=(n_users, n_items))
  observed = rng.random((n_users, n_items)) < density
  return sp.csr_matrix(np.where(observed, np.clip(np.rint(score), 1, 5), 0.0).astype(np.float32))


def test_deeprec_learns_through_the_runner(tmp_path):
  split = rating_split(_synthetic_ratings(), seed=1, orientation="users")
  model = get_model("deeprec", {"hidden": (64, 64, 128), "dropout": 0.5, "optimizer": "adam",
                                "learning_rate": 3e-3})
  config = TrainConfig(epochs=30, batch_size=32, eval_batch_size=64, n_devices=1, progress=False,
                       checkpoint=False, metrics=("rmse", "neg_rmse"), select_metric="neg_rmse")
  res = train_and_evaluate(model, split, config, tmp_path, log=lambda s: None)
  baseline = float(np.sqrt(np.mean((split.test.held_out.data - split.train.data.mean()) ** 2)))
  assert res["test"]["rmse"] < 0.75 * baseline, (res["test"], baseline)
