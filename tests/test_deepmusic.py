"""DeepMusic: the regression loss against numpy, its gradients, scoring, and an end-to-end run."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.test_util import check_grads

from recjax.data import content as content_lib
from recjax.data import item_batches
from recjax.models import deepmusic
from recjax.models.registry import get_model
from recjax.nn.content import ContentMLP
from recjax.nn.sparse import PaddedRows
from recjax.train.runner import TrainConfig, train_and_evaluate
from test_ctr import planted_hybrid_split


def _numpy_mlp(params, x):
  p = jax.tree.map(lambda t: np.asarray(t, np.float64), params["params"])
  h = np.maximum(x @ p["input_kernel"] + p["input_bias"], 0.0)
  h = np.maximum(h @ p["layers_0"]["kernel"] + p["layers_0"]["bias"], 0.0)
  return h @ p["layers_1"]["kernel"] + p["layers_1"]["bias"]


def _model_and_data(**kw):
  split, docs = planted_hybrid_split(seed=7, n_users=40, n_items=30)
  config = deepmusic.Config(dim=3, hidden=(8, 6), wmf_sweeps=3, **kw)
  model = deepmusic.make(config)
  params, factors = model.init(jax.random.PRNGKey(0), split.train, item_content=docs)
  aux = model.prepare(split.train, item_content=docs)
  return config, model, split, docs, params, factors, aux


def test_regression_loss_and_batches_match_numpy():
  config, model, split, docs, params, factors, aux = _model_and_data()
  factors = model.block_step(params, factors, aux, None)
  n, batch = model.batch_source.epoch(split.train, aux, 7, 1, 0)
  batches = list(batch)
  assert len(batches) == n == -(-len(aux["clicked"]) // 7)
  seen = np.concatenate([b["index"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.sort(aux["clicked"]))
  b = batches[-1]  # The last batch has padding rows.
  assert not b["mask"].all()
  x = content_lib.scale(docs, config.content_scale).toarray().astype(np.float64)
  assert np.allclose(x.max(axis=0)[x.max(axis=0) > 0], 1.0)  # Each word / its max over items.
  dense = np.zeros((len(b["index"]), docs.shape[1]))
  np.add.at(dense, (np.arange(len(b["index"]))[:, None], b["words"]), b["values"])
  np.testing.assert_allclose(dense[b["mask"]], x[b["index"][b["mask"]]], rtol=1e-6)
  v = np.asarray(factors["V"], np.float64)
  err = np.sum((_numpy_mlp(params, dense) - v[np.maximum(b["index"], 0)]) ** 2, axis=1)
  want = err[b["mask"]].mean()
  jb = jax.tree.map(jnp.asarray, b)
  got, metrics = model.loss(params, factors, jb, None, {})
  np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_regression_loss_gradients_check():
  config, model, split, docs, params, factors, aux = _model_and_data(activation="tanh")
  factors = model.block_step(params, factors, aux, None)
  _, batch = model.batch_source.epoch(split.train, aux, 7, 1, 0)
  b = next(batch)
  with jax.enable_x64(True):  # Central differences in float64 (smooth tanh units).
    to64 = lambda t: jnp.asarray(t, jnp.float64) if np.issubdtype(np.asarray(t).dtype, np.floating) else jnp.asarray(t)
    p64, f64, b64 = (jax.tree.map(to64, t) for t in (params, factors, b))
    check_grads(jax.jit(lambda p: model.loss(p, f64, b64, None, {})[0]), (p64,), order=1,
                modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-6)


def test_first_block_step_is_wmf_and_later_ones_keep_it():
  config, model, split, docs, params, factors, aux = _model_and_data()
  once = model.block_step(params, factors, aux, None)
  assert int(once["wmf_done"]) == 1
  twice = model.block_step(params, once, aux, None)
  np.testing.assert_array_equal(np.asarray(twice["V"]), np.asarray(once["V"]))
  # WMF's V is optimal for its U: one more V half-sweep by hand changes nothing much.
  u, v = np.asarray(once["U"], np.float64), np.asarray(once["V"], np.float64)
  p = split.train.toarray()
  j = int(aux["clicked"][0])
  c = np.where(p[:, j] > 0, config.a, config.b)
  want = np.linalg.solve((u.T * c) @ u + config.reg_v * np.eye(3), (u.T * c) @ p[:, j])
  np.testing.assert_allclose(v[j], want, rtol=2e-3, atol=2e-4)


def test_score_uses_regressed_factors_for_all_or_only_cold_items():
  for mode in ("regressed", "cold"):
    config, model, split, docs, params, factors, aux = _model_and_data(score_items=mode)
    factors = model.block_step(params, factors, aux, None)
    x = content_lib.scale(docs, config.content_scale).toarray().astype(np.float64)
    v_reg = _numpy_mlp(params, x)
    coo = factors["content"]
    got_reg = ContentMLP(n_in=docs.shape[1], hidden=(8, 6), features=3).apply(
        params, coo["doc"], coo["word"], coo["value"], x.shape[0], deepmusic.COO_CHUNK,
        method=ContentMLP.from_coo)
    np.testing.assert_allclose(np.asarray(got_reg), v_reg, rtol=1e-4, atol=1e-5)
    v_wmf = np.asarray(factors["V"], np.float64)
    if mode == "cold":
      clicked = split.train.getnnz(axis=0) > 0
      v_reg = np.where(clicked[:, None], v_wmf, v_reg)
    rows = split.train.toarray()[:5]
    scores = np.asarray(model.score(params, factors, jnp.asarray(rows)))
    for r in range(5):
      c = np.where(rows[r] > 0, config.a, config.b)
      u = np.linalg.solve((v_wmf.T * c) @ v_wmf + config.reg_u * np.eye(3), (v_wmf.T * c) @ rows[r])
      np.testing.assert_allclose(scores[r], v_reg @ u, rtol=2e-3, atol=2e-4)


def test_padded_and_dense_rows_give_the_same_outputs():
  mlp = ContentMLP(n_in=9, hidden=(5,), features=2, activation="tanh")
  rows = PaddedRows(jnp.asarray([[1, 4, 0], [8, 0, 0]], jnp.int32),
                    jnp.asarray([[0.5, 2.0, 0.0], [1.0, 0.0, 0.0]], jnp.float32))
  params = mlp.init(jax.random.PRNGKey(0), rows)
  dense = jnp.zeros((2, 9)).at[jnp.arange(2)[:, None], rows.items].add(rows.values)
  np.testing.assert_allclose(np.asarray(mlp.apply(params, rows)),
                             np.asarray(mlp.apply(params, dense)), rtol=1e-5, atol=1e-6)


def test_deepmusic_trains_end_to_end_and_beats_popularity(tmp_path):
  split, docs = planted_hybrid_split()
  config = TrainConfig(epochs=30, batch_size=16, n_devices=1, checkpoint=False, progress=False,
                       eval_every=30, metrics=("recall_cdl@10", "recall@20"))
  model = get_model("deepmusic", {"dim": 4, "hidden": (16,), "learning_rate": 0.01,
                                  "wmf_sweeps": 5})
  res = train_and_evaluate(model, split, config, tmp_path / "dm", log=lambda s: None,
                           side={"item_content": docs})
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "p",
                           log=lambda s: None)
  assert res["test"]["recall_cdl@10"] > pop["test"]["recall_cdl@10"] + 0.1, (res, pop)


def test_subset_content_rows_pad_each_batch_to_the_smallest_width_that_holds_it():
  rng = np.random.default_rng(0)
  lengths = np.concatenate([rng.integers(1, 20, 40), [50, 100]])  # Widths 32, 64, 128.
  dense = np.zeros((len(lengths), 120), np.float32)
  for j, n in enumerate(lengths):
    dense[j, rng.choice(120, n, replace=False)] = rng.random(n) + 0.5
  content = sp.csr_matrix(dense)
  items = np.arange(1, len(lengths), 2)  # Every other item (the last two included).
  source = item_batches.SubsetContentRows("content", "items")
  n, it = source.epoch(None, {"content": content, "items": items}, 6, 3, 0)
  batches = list(it)
  assert n == len(batches) == 4
  assert sorted(np.concatenate([b["index"][b["mask"]] for b in batches])) == items.tolist()
  widths = set()
  for b in batches:
    need = lengths[b["index"][b["mask"]]].max()
    widths.add(b["words"].shape[1])
    assert b["words"].shape[1] == min(w for w in (32, 64, 128) if w >= need)
    rows = np.zeros((6, 120), np.float32)
    np.add.at(rows, (np.arange(6)[:, None], b["words"]), b["values"])
    np.testing.assert_array_equal(rows[b["mask"]], dense[b["index"][b["mask"]]])
    assert not rows[~b["mask"]].any()
  assert widths >= {32, 128}
