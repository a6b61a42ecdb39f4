"""CDAE: the loss against numpy, gradients, fold-in of unseen users, learning on a synthetic split."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import toy_model
from recjax.models.registry import get_model
from recjax.train.runner import TrainConfig, train_and_evaluate

N_USERS, N_ITEMS, K = 6, 9, 5


class _Train:
  shape = (N_USERS, N_ITEMS)


def _model_and_params(seed=0, **overrides):
  model = get_model("cdae", {"hidden": (K,), **overrides})
  params, _ = model.init(jax.random.PRNGKey(seed), _Train())
  # Non-zero biases and user vectors of a trained size, so that every term matters.
  params = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape) + 1.0),
                        params)
  return model, params


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  rows = (rng.random((4, N_ITEMS)) < 0.4).astype(np.float32)
  rows[:, 0] = 1.0
  return {"rows": jnp.asarray(rows), "mask": jnp.array([True, True, True, False]),
          "index": jnp.array([3, 0, 5, -1], jnp.int32)}


def numpy_forward(params, x, v):
  """tanh(W_2ᵀ tanh(W_1ᵀ x + V_u + b_1) + b_2) before the last tanh, in float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  h = np.tanh(x @ p["encoder"]["kernel"] + p["encoder"]["bias"] + v)
  return h @ p["decoder"]["kernel"] + p["decoder"]["bias"]


def numpy_loss(params, batch, keep, q, click_weight, lam):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  x = np.asarray(batch["rows"], np.float64)
  x_in = np.where(keep, x / (1 - q), 0.0)
  index = np.maximum(np.asarray(batch["index"]), 0)
  v = p["users"][index]
  f = np.tanh(numpy_forward(params, x_in, v))
  c = np.where(x > 0, click_weight, 1.0)
  per_user = (c * (x - f) ** 2).sum(1) + lam * (v ** 2).sum(1)
  m = np.asarray(batch["mask"], np.float64)
  weights = (p["encoder"]["kernel"] ** 2).sum() + (p["decoder"]["kernel"] ** 2).sum()
  return (per_user * m).sum() / m.sum() + lam * weights


@pytest.mark.parametrize("q", [0.0, 0.5])
def test_loss_matches_numpy(q):
  model, params = _model_and_params(dropout=q, click_weight=3.0, l2=0.1)
  batch, key = _batch(), jax.random.PRNGKey(7)
  value, aux = model.loss(params, {}, batch, key, {})
  # The corruption mask is the Bernoulli(1 - q) draw of the loss's key.
  keep = (np.ones(batch["rows"].shape, bool) if q == 0 else
          np.asarray(jax.random.bernoulli(key, 1 - q, batch["rows"].shape)))
  if q:
    assert 0 < keep.mean() < 1
  np.testing.assert_allclose(value, numpy_loss(params, batch, keep, q, 3.0, 0.1), rtol=1e-5)
  assert float(aux["square_loss"]) <= float(value)


def test_loss_gradients():
  model, params = _model_and_params(dropout=0.5, l2=0.1)
  batch, key = _batch(1), jax.random.PRNGKey(2)
  check_grads(lambda p: model.loss(p, {}, batch, key, {})[0], (params,), order=1, modes=("rev",),
              atol=1e-2, rtol=1e-2)


def test_scores_of_unseen_users_fold_in_and_training_users_use_their_vectors():
  x = _batch()["rows"][:3]
  # No fold-in steps: the zero user vector.
  model0, params = _model_and_params(fold_in_steps=0)
  np.testing.assert_allclose(model0.score(params, {}, x),
                             numpy_forward(params, np.asarray(x), 0.0), rtol=1e-5, atol=1e-6)
  # Fold-in steps lower the unseen user's own objective below the zero vector's.
  model, _ = _model_and_params(fold_in_steps=30, fold_in_lr=0.05, click_weight=3.0,
                               l2=0.1)
  scores = jax.jit(lambda p, r: model.score(p, {}, r))(params, x)
  xn = np.asarray(x, np.float64)
  c = np.where(xn > 0, 3.0, 1.0)
  def objective(out, v):
    return (c * (xn - np.tanh(out)) ** 2).sum(1) + 0.1 * (v ** 2).sum(1)
  # Recover the folded-in vector's objective from scores (no access to v): compare
  # against the zero vector, whose reg term is 0, with the data term alone as a bound.
  fitted_data = (c * (xn - np.tanh(np.asarray(scores, np.float64))) ** 2).sum(1)
  zero = objective(numpy_forward(params, xn, 0.0), np.zeros((3, K)))
  assert (fitted_data < zero).all()
  # A query (leave-one-out protocol) scores training users with their own V_u,
  # and folds in rows with index -1 exactly as dense scoring does.
  items = jnp.array([[0, 4, 8], [1, 2, 3], [5, 6, 7]], jnp.int32)
  query = {"rows": x, "index": jnp.array([2, -1, 4], jnp.int32), "items": items}
  got = model.score(params, {}, query)
  v = np.asarray(params["params"]["users"])
  for r, u in ((0, 2), (2, 4)):
    want = numpy_forward(params, np.asarray(x[r:r + 1]), v[u])[0, np.asarray(items[r])]
    np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], scores[1, np.asarray(items[1])], rtol=1e-5, atol=1e-6)


def test_learns_on_a_synthetic_split_and_beats_popularity(tmp_path):
  split = toy_model.make_split()
  config = TrainConfig(epochs=25, batch_size=50, eval_batch_size=60, eval_every=25,
                       n_devices=1, progress=False, checkpoint=False)
  cdae = train_and_evaluate(
      get_model("cdae", {"hidden": (32,), "learning_rate": 0.01, "l2": 0.001,
                         "fold_in_steps": 20}),
      split, config, tmp_path / "cdae", log=lambda s: None)
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "pop",
                           log=lambda s: None)
  assert cdae["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"] + 0.02
  assert cdae["test"]["ndcg@100"] > pop["test"]["ndcg@100"]


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match="dropout"):
    get_model("cdae", {"dropout": 1.0})
  with pytest.raises(ValueError, match="fold_in_steps"):
    get_model("cdae", {"fold_in_steps": -1})
  with pytest.raises(ValueError, match="hidden must hold exactly one width"):
    get_model("cdae", {"hidden": (32, 16)})
  with pytest.raises(ValueError, match="hidden must be a tuple"):
    get_model("cdae", {"hidden": 32})


@pytest.mark.parametrize("name", ["cdae_ml1m", "cdae_gowalla"])
def test_configs_name_valid_fields(name):
  from experiments.train import load_config_file
  from recjax.data.pipeline import DataConfig
  from recjax.models.registry import model_config
  configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
  experiment = load_config_file(str(configs / f"{name}.py"))
  assert model_config(experiment["model"], experiment["model_config"]).hidden == (200,)
  DataConfig(**experiment["data"])
  TrainConfig(**experiment["train"])
