"""NCF (GMF, MLP, NeuMF): towers against numpy, gradients, negative sampling, pre-training, learning."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from recjax.data import pipeline, synthetic
from recjax.data.types import Dataset, Interactions
from recjax.eval import evaluate
from recjax.models import ncf
from recjax.models.registry import get_model
from recjax.nn.ncf import NCF
from recjax.train.runner import TrainConfig, train_and_evaluate

N_USERS, N_ITEMS = 7, 11
SMALL = dict(dim=4, mlp_layers=(8, 6, 4))


def _params(kind, seed=0):
  net = NCF(n_users=N_USERS, n_items=N_ITEMS, kind=kind, **SMALL)
  params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1,), jnp.int32),
                    jnp.zeros((1, 1), jnp.int32))
  # Non-zero biases so that they are tested too.
  params = jax.tree.map(lambda x: x + 0.05 * jnp.cos(jnp.arange(x.size).reshape(x.shape)),
                        params)
  return net, params


def numpy_logits(kind, params, users, items):
  """He et al. Eq. 9-12 with the MLP on the concatenated embeddings, one (u, i) pair at a time."""
  p = jax.tree.map(np.asarray, params["params"])
  relu = lambda z: np.maximum(z, 0.0)
  out = np.zeros(items.shape)
  for b, u in enumerate(users):
    for c, i in enumerate(items[b]):
      phi = []
      if kind in ("gmf", "neumf"):
        phi.append(p["gmf_user"][u] * p["gmf_item"][i])
      if kind in ("mlp", "neumf"):
        z = relu(np.concatenate([p["mlp_user"][u], p["mlp_item"][i]]) @ p["mlp_w1"] + p["mlp_b1"])
        k = 0
        while f"mlp_hidden_{k}" in p:
          z = relu(z @ p[f"mlp_hidden_{k}"]["kernel"] + p[f"mlp_hidden_{k}"]["bias"])
          k += 1
        phi.append(z)
      out[b, c] = np.concatenate(phi) @ p["predict_kernel"][:, 0] + p["predict_bias"][0]
  return out


@pytest.mark.parametrize("kind", ["gmf", "mlp", "neumf"])
def test_towers_match_numpy_for_candidates_and_all_items(kind):
  net, params = _params(kind)
  users = jnp.array([0, 3, 6], jnp.int32)
  items = jnp.array([[0, 5, 10], [2, 2, 7], [9, 1, 4]], jnp.int32)
  np.testing.assert_allclose(net.apply(params, users, items),
                             numpy_logits(kind, params, np.asarray(users), np.asarray(items)),
                             rtol=1e-5, atol=1e-6)
  every = np.tile(np.arange(N_ITEMS), (3, 1))
  np.testing.assert_allclose(net.apply(params, users, None),
                             numpy_logits(kind, params, np.asarray(users), every),
                             rtol=1e-5, atol=1e-6)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  rows = (rng.random((4, N_ITEMS)) < 0.3).astype(np.float32)
  rows[:, 0] = 1.0
  return {"rows": jnp.asarray(rows), "mask": jnp.array([True, True, True, False]),
          "index": jnp.array([2, 5, 0, -1], jnp.int32)}


@pytest.mark.parametrize("name", ["ncf-gmf", "ncf-mlp", "ncf-neumf"])
def test_loss_gradients_and_value(name):
  model = get_model(name, {**SMALL, "l2": 0.01})
  kind = name.split("-")[1]
  _, params = _params(kind, seed=1)
  batch, key = _batch(), jax.random.PRNGKey(3)
  f = lambda p: model.loss(p, {}, batch, key, {})[0]
  check_grads(f, (params,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)
  # The value: weighted log loss over the drawn instances, recomputed in numpy.
  value, aux = model.loss(params, {}, batch, key, {})
  rows = np.asarray(batch["rows"])
  n_pos = rows.sum(1, keepdims=True)
  draws = np.asarray(jax.random.poisson(key, 4 * n_pos / (N_ITEMS - n_pos) * (1 - rows),
                                        rows.shape))
  w = (rows + draws * (1 - rows)) * np.asarray(batch["mask"])[:, None]
  logits = numpy_logits(kind, params, np.maximum(np.asarray(batch["index"]), 0),
                        np.tile(np.arange(N_ITEMS), (4, 1)))
  ce = np.logaddexp(0, logits) - rows * logits
  p = params["params"]
  reg = sum(float(np.sum(np.asarray(p[k]) ** 2)) for k in ("gmf_user", "gmf_item", "mlp_user",
                                                           "mlp_item") if k in p)
  np.testing.assert_allclose(value, (w * ce).sum() / w.sum() + 0.01 * reg, rtol=1e-4)
  np.testing.assert_allclose(aux["log_loss"], (w * ce).sum() / w.sum(), rtol=1e-4)


def test_negative_draws_average_four_per_positive_and_skip_the_users_items():
  model = get_model("ncf-gmf", SMALL)
  _, params = _params("gmf")
  batch = _batch()
  per_user = []
  for s in range(300):
    _, aux = model.loss(params, {}, batch, jax.random.PRNGKey(s), {})
    per_user.append(float(aux["instances"]))
  n_pos = np.asarray(batch["rows"])[:3].sum(1).mean()
  np.testing.assert_allclose(np.mean(per_user), 5 * n_pos, rtol=0.05)  # 1 positive + 4 negatives


def _loo_split(n_users=300, n_items=300, nnz=6000, seed=1):
  matrix = synthetic.synthetic_implicit(n_users, n_items, nnz, seed=seed, n_clusters=6,
                                        cluster_strength=0.8, min_user_items=5)
  coo = matrix.tocoo()
  ts = np.random.default_rng(seed).integers(0, 10**6, len(coo.row))
  inter = Interactions(users=coo.row.astype(np.int64), items=coo.col.astype(np.int64),
                       values=np.ones(len(ts), np.float32), timestamps=ts,
                       user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                       duplicate_rule="last", name="toy")
  split, _ = pipeline.ranking_split(Dataset(name="toy", interactions=inter),
                                    pipeline.DataConfig(protocol="loo-sampled"))
  return split


def _config(**kw):
  base = dict(epochs=5, batch_size=8, eval_batch_size=300, n_devices=1, progress=False,
              checkpoint=False, metrics=("hr@10", "ndcg@10"))
  base.update(kw)
  return TrainConfig(**base)


OVERRIDES = {"dim": 8, "mlp_layers": (32, 16, 8), "learning_rate": 0.02}


@pytest.fixture(scope="module")
def loo_split_and_popularity(tmp_path_factory):
  split = _loo_split()
  pop = train_and_evaluate(get_model("popularity"), split, _config(),
                           tmp_path_factory.mktemp("pop"), log=lambda s: None)
  return split, pop["validation"]["ndcg@10"]


@pytest.mark.parametrize("name", ["ncf-gmf", "ncf-mlp", "ncf-neumf"])
def test_each_model_learns_and_beats_popularity(name, loo_split_and_popularity, tmp_path):
  split, pop_ndcg = loo_split_and_popularity
  result = train_and_evaluate(get_model(name, OVERRIDES), split, _config(eval_every=5),
                              tmp_path, log=lambda s: None)
  assert result["validation"]["ndcg@10"] > pop_ndcg + 0.02
  assert result["test"]["ndcg@10"] > pop_ndcg


def test_neumf_starts_from_the_validation_selected_gmf_and_mlp(loo_split_and_popularity,
                                                                tmp_path):
  split, _ = loo_split_and_popularity
  for name in ("ncf-gmf", "ncf-mlp"):
    train_and_evaluate(get_model(name, OVERRIDES), split, _config(epochs=1, checkpoint=True),
                       tmp_path / name, log=lambda s: None)
  neumf = get_model("ncf-neumf", {**OVERRIDES, "gmf_workdir": str(tmp_path / "ncf-gmf"),
                                  "mlp_workdir": str(tmp_path / "ncf-mlp"), "optimizer": "sgd"})
  params, _ = neumf.init(jax.random.PRNGKey(0), split.train)
  gmf_best = ncf.load_best_params(tmp_path / "ncf-gmf")
  mlp_best = ncf.load_best_params(tmp_path / "ncf-mlp")
  # The loaded params are the validation-selected ones: they reproduce results.json.
  gmf = get_model("ncf-gmf", OVERRIDES)
  score = lambda state, inputs: gmf.score(state, {}, inputs)
  again = evaluate(score, jax.tree.map(jnp.asarray, gmf_best), split.validation,
                   metrics=("hr@10", "ndcg@10"), batch_size=300, item_chunk=None, sharding=None)
  saved = json.loads((tmp_path / "ncf-gmf" / "results.json").read_text())["validation"]
  np.testing.assert_allclose(again["ndcg@10"], saved["ndcg@10"], rtol=1e-5)
  # NeuMF(α = 0.5) from pre-training: its logit is the mean of GMF's and MLP's.
  users = jnp.arange(5, dtype=jnp.int32)
  items = jnp.tile(jnp.arange(0, 150, 10, dtype=jnp.int32)[None, :], (5, 1))
  def logits(kind, p):
    return NCF(n_users=300, n_items=300, kind=kind, dim=8, mlp_layers=(32, 16, 8)).apply(
        jax.tree.map(jnp.asarray, p), users, items)
  np.testing.assert_allclose(logits("neumf", params),
                             0.5 * logits("gmf", gmf_best) + 0.5 * logits("mlp", mlp_best),
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="expected 'ncf-gmf'"):
    get_model("ncf-neumf", {**OVERRIDES, "gmf_workdir": str(tmp_path / "ncf-mlp")}).init(
        jax.random.PRNGKey(0), split.train)


def test_dense_rows_are_folded_in_and_match_unknown_query_rows():
  model = get_model("ncf-neumf", {**SMALL, "fold_in_steps": 5})
  _, params = _params("neumf")
  rows = _batch()["rows"][:3]
  dense = jax.jit(lambda p, x: model.score(p, {}, x))(params, rows)
  assert dense.shape == (3, N_ITEMS) and bool(jnp.all(jnp.isfinite(dense)))
  items = jnp.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], jnp.int32)
  query = {"rows": rows, "index": jnp.array([-1, 2, -1], jnp.int32), "items": items}
  scores = model.score(params, {}, query)
  picked = jnp.take_along_axis(dense, items, axis=1)
  np.testing.assert_allclose(scores[0], picked[0], rtol=1e-5)
  np.testing.assert_allclose(scores[2], picked[2], rtol=1e-5)
  net, _ = _params("neumf")
  np.testing.assert_allclose(scores[1], net.apply(params, jnp.array([2]), items[1:2])[0],
                             rtol=1e-5)
  # Fold-in fits the row: the user's items rise against the mean-user start.
  start = get_model("ncf-neumf", {**SMALL, "fold_in_steps": 0}).score(params, {}, rows)
  def margin(s):
    return float(jnp.sum(s * rows) / jnp.sum(rows) - jnp.sum(s * (1 - rows)) / jnp.sum(1 - rows))
  assert margin(dense) > margin(start)


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match="optimizer"):
    get_model("ncf-gmf", {"optimizer": "rmsprop"})
  with pytest.raises(ValueError, match="ncf-neumf only"):
    get_model("ncf-gmf", {"gmf_workdir": "x"})


@pytest.mark.parametrize("name", ["ncf_gmf_ml1m", "ncf_mlp_ml1m", "ncf_neumf_ml1m",
                                  "multdae_loo_ml1m"])
def test_configs_name_valid_fields(name):
  from experiments.train import load_config_file
  from recjax.data.pipeline import DataConfig
  from recjax.models.registry import model_config
  configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
  experiment = load_config_file(str(configs / f"{name}.py"))
  model_config(experiment["model"], experiment["model_config"])
  assert DataConfig(**experiment["data"]).protocol == "loo-sampled"
  assert TrainConfig(**experiment["train"]).metrics == ("hr@10", "ndcg@10")
