"""AutoRec: the masked objective against numpy, its gradient, unseen rows, and an end-to-end run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.test_util import check_grads

from recjax.data.ratings import rating_split
from recjax.models import autorec
from recjax.models.registry import get_model
from recjax.nn import rating_autoencoders as rae
from recjax.train.runner import TrainConfig, train_and_evaluate


def _batch(n_rows=5, n_cols=7, seed=0, padding=1):
  rng = np.random.default_rng(seed)
  x = np.where(rng.random((n_rows, n_cols)) < 0.4, rng.integers(1, 6, (n_rows, n_cols)), 0)
  x[0, :] = 0
  x[0, 2] = 4  # Every row has a rating; the last `padding` rows are padding.
  mask = np.arange(n_rows) < n_rows - padding
  x[~mask] = 0
  return {"rows": jnp.asarray(x, jnp.float32), "mask": jnp.asarray(mask),
          "index": jnp.where(jnp.asarray(mask), jnp.arange(n_rows), -1).astype(jnp.int32)}


def _model(**kw):
  return autorec.make(autorec.Config(**{"hidden": (4,), "l2": 0.3, **kw}))


def _train_matrix(n_rows=9, n_cols=7):
  return sp.csr_matrix(np.ones((n_rows, n_cols), np.float32))


def test_masked_squared_error_against_numpy():
  rng = np.random.default_rng(1)
  pred, target = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
  observed = rng.random((4, 6)) < 0.5
  expected = ((pred - target) ** 2 * observed).sum(axis=1)
  got = rae.masked_squared_error(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(observed))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # Targets where nothing is observed do not matter.
  target2 = np.where(observed, target, 1e3)
  got2 = rae.masked_squared_error(jnp.asarray(pred), jnp.asarray(target2), jnp.asarray(observed))
  np.testing.assert_array_equal(got, got2)


def test_loss_matches_the_objective_computed_in_numpy():
  model = _model()
  train = _train_matrix()
  params, factors = model.init(jax.random.PRNGKey(0), train)
  batch = _batch()
  loss, aux = model.loss(params, factors, batch, jax.random.PRNGKey(1), {})
  p = jax.tree.map(np.asarray, params["params"])
  x, m = np.asarray(batch["rows"], np.float64), np.asarray(batch["mask"])
  h = 1 / (1 + np.exp(-(x @ p["encoder"]["kernel"] + p["encoder"]["bias"])))
  out = h @ p["decoder"]["kernel"] + p["decoder"]["bias"]
  sse = (((out - x) ** 2) * (x != 0)).sum(axis=1)[m]
  reg = 0.5 * 0.3 * ((p["encoder"]["kernel"] ** 2).sum() + (p["decoder"]["kernel"] ** 2).sum())
  expected = sse.sum() / m.sum() + reg / train.shape[0]
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(aux["mse"]) == pytest.approx(sse.sum() / (x[m] != 0).sum(), rel=1e-5)


def test_loss_gradients_are_right():
  model = _model()
  with jax.enable_x64(True):
    params, factors = model.init(jax.random.PRNGKey(0), _train_matrix())
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    batch = _batch()
    batch["rows"] = batch["rows"].astype(jnp.float64)
    f = lambda p: model.loss(p, factors, batch, jax.random.PRNGKey(1), {})[0]
    check_grads(jax.jit(f), (params,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_loss_ignores_entries_that_are_not_observed():
  # Column 5 is unobserved in the batch: moving its output bias moves only its
  # (unobserved) predictions, so the loss stays; column 2 is observed, so it moves.
  model = _model()
  params, factors = model.init(jax.random.PRNGKey(0), _train_matrix())
  batch = _batch()
  batch["rows"] = batch["rows"].at[:, 5].set(0.0)
  base = model.loss(params, factors, batch, None, {})[0]

  def shifted(col):
    bias = params["params"]["decoder"]["bias"].at[col].add(2.0)
    p = {"params": {**params["params"], "decoder": {**params["params"]["decoder"], "bias": bias}}}
    return model.loss(p, factors, batch, None, {})[0]

  assert float(shifted(5)) == float(base)
  assert float(shifted(2)) != pytest.approx(float(base))
  # Padding rows never count, whatever they hold.
  batch2 = dict(batch, rows=batch["rows"].at[-1].set(5.0))
  assert float(model.loss(params, factors, batch2, None, {})[0]) == pytest.approx(float(base), rel=1e-6)


def test_score_predicts_the_default_rating_for_unseen_rows_and_columns():
  model = _model(default_rating=3.0)
  train = sp.csr_matrix(np.array([[5, 0, 1], [4, 0, 2]], np.float32))  # Column 1 never rated.
  params, factors = model.init(jax.random.PRNGKey(0), train)
  inputs = jnp.array([[5.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
  s = np.asarray(model.score(params, factors, inputs))
  net = rae.AutoRec(n_out=3, hidden=4)
  raw = np.asarray(net.apply(params, inputs))
  np.testing.assert_allclose(s[0, [0, 2]], raw[0, [0, 2]], rtol=1e-6)
  assert s[0, 1] == 3.0 and np.all(s[1] == 3.0)


def test_bad_config_raises_with_the_valid_choices():
  with pytest.raises(ValueError, match="optimizer"):
    _model(optimizer="lbfgs")
  with pytest.raises(ValueError, match="hidden_activation must be one of .*'sigmoid'"):
    _model(hidden_activation="sigmoidal")  # The message lists the valid choices.
  with pytest.raises(ValueError, match="hidden must hold exactly one width"):
    _model(hidden=(8, 4))


def synthetic_ratings(n_users=300, n_items=150, rank=3, density=0.3, seed=0):
  """Low-rank ratings in 1..5 plus noise: a model that learns beats the global mean by far."""
  rng = np.random.default_rng(seed)
  u = rng.normal(size=(n_users, rank))
  v = rng.normal(size=(n_items, rank))
  score = 3.0 + 0.9 * (u @ v.T) / math.sqrt(rank) + 0.5 * rng.normal(size=(n_users, 1)) \
      + 0.2 * rng.normal(size=(n_users, n_items))
  ratings = np.clip(np.rint(score), 1, 5)
  observed = rng.random((n_users, n_items)) < density
  return sp.csr_matrix(np.where(observed, ratings, 0.0).astype(np.float32))


def global_mean_rmse(split):
  mean = split.train.data.mean()
  return float(np.sqrt(np.mean((split.test.held_out.data - mean) ** 2)))


@pytest.mark.parametrize("orientation", ["items", "users"])
def test_autorec_learns_through_the_runner(tmp_path, orientation):
  split = rating_split(synthetic_ratings(), seed=1, orientation=orientation)
  model = get_model("autorec", {"hidden": (64,), "l2": 30.0, "learning_rate": 1e-2})
  config = TrainConfig(epochs=30, batch_size=32, eval_batch_size=64, n_devices=1, progress=False,
                       checkpoint=False, metrics=("rmse", "mae", "neg_rmse"),
                       select_metric="neg_rmse")
  res = train_and_evaluate(model, split, config, tmp_path, log=lambda s: None)
  baseline = global_mean_rmse(split)
  assert set(res["test"]) == {"rmse", "mae", "neg_rmse", "users"}
  assert res["test"]["rmse"] < 0.75 * baseline, (res["test"], baseline)
  assert res["validation"]["neg_rmse"] == pytest.approx(-res["validation"]["rmse"])
