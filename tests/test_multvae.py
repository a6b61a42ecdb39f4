"""Mult-VAE^PR and Mult-DAE: schedule, losses by hand, fold-in scoring, learning, sharding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.test_util import check_grads

import toy_model
from recjax.data import batching
from recjax.eval.ranking import evaluate_ranking
from recjax.models import multvae
from recjax.models.registry import get_model
from recjax.nn import likelihoods
from recjax.train.runner import TrainConfig, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
SMALL = {"hidden_dims": (16,), "latent_dim": 8}
FAST = {"hidden_dims": (32,), "latent_dim": 16, "learning_rate": 0.01}  # Learns in a few epochs.


def _train_matrix(n_users=12, n_items=15, seed=0):
  rng = np.random.default_rng(seed)
  x = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
  x[:, 0] = 1.0
  return sp.csr_matrix(x)


def _dense_batch(m):
  b = next(batching.dense_row_batches(m, m.shape[0] + 2))  # Two padding rows.
  return {"rows": jnp.asarray(b.rows), "mask": jnp.asarray(b.mask),
          "index": jnp.asarray(b.index, jnp.int32)}


def _padded_batch(m):
  b = next(batching.padded_row_batches(m, m.shape[0] + 2))
  return {"items": jnp.asarray(b.items), "values": jnp.asarray(b.values),
          "mask": jnp.asarray(b.mask), "index": jnp.asarray(b.index, jnp.int32)}


def _phase(step=0):
  """The runner's ``phase``: optax updates so far and the (1-based) epoch."""
  return {"step": jnp.asarray(step, jnp.int32), "epoch": jnp.asarray(1, jnp.int32)}


def test_anneal_schedule():
  beta = lambda s, total=1000, cap=0.2: float(likelihoods.anneal_beta(s, total, cap))
  assert beta(0) == 0.0
  assert beta(100) == pytest.approx(0.1)
  assert beta(199) == pytest.approx(0.199)
  assert beta(200) == pytest.approx(0.2)
  assert beta(10_000) == pytest.approx(0.2)
  assert beta(500, cap=1.0) == pytest.approx(0.5)
  assert beta(7, total=0, cap=0.3) == pytest.approx(0.3)
  # Inside the loss, β follows the run's update count, phase["step"].
  m = _train_matrix()
  model = get_model("mult-vae", {**SMALL, "total_anneal_steps": 40, "anneal_cap": 0.5})
  params, factors = model.init(jax.random.PRNGKey(0), m)
  loss = jax.jit(model.loss)
  for step, want in ((0, 0.0), (10, 0.25), (20, 0.5), (300, 0.5)):
    _, aux = loss(params, factors, _dense_batch(m), jax.random.PRNGKey(1), _phase(step))
    assert float(aux["beta"]) == pytest.approx(want)


def test_dae_loss_by_hand():
  """Without dropout the DAE loss is -mean_u Σ x log softmax(f(x)) + λ Σ‖W‖² (padding rows ignored)."""
  m = _train_matrix()
  model = get_model("mult-dae", {**SMALL, "dropout": 0.0, "l2": 0.03})
  params, factors = model.init(jax.random.PRNGKey(0), m)
  loss, aux = model.loss(params, factors, _dense_batch(m), jax.random.PRNGKey(1), _phase())
  x = m.toarray()
  logits = np.asarray(model.score(params, factors, jnp.asarray(x)), np.float64)
  log_pi = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  nll = -(x * log_pi).sum(1).mean()
  kernels = [np.asarray(v) for path, v in jax.tree_util.tree_leaves_with_path(params)
             if path[-1].key == "kernel"]
  assert len(kernels) == 4  # [I→16], [16→8], [8→16], [16→I]; biases are not decayed.
  want = nll + 0.03 * sum(float((k.astype(np.float64) ** 2).sum()) for k in kernels)
  assert float(aux["neg_ll"]) == pytest.approx(nll, rel=1e-5)
  assert float(loss) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("likelihood", ["multinomial", "gaussian", "logistic"])
def test_vae_loss_is_neg_ll_plus_beta_kl(likelihood):
  m = _train_matrix()
  model = get_model("mult-vae", {**SMALL, "dropout": 0.0, "likelihood": likelihood,
                                 "pos_weight": 3.0, "total_anneal_steps": 100})
  params, factors = model.init(jax.random.PRNGKey(0), m)
  loss, aux = model.loss(params, factors, _dense_batch(m), jax.random.PRNGKey(1), _phase(30))
  assert float(aux["beta"]) == pytest.approx(0.2)
  assert float(loss) == pytest.approx(float(aux["neg_ll"]) + 0.2 * float(aux["kl"]), rel=1e-6)
  # The KL term is that of the encoder's (mu, logvar), averaged over real users.
  encoder = multvae.autoencoders.MLPEncoder(15, (16,), 8, True, 0.0)
  mu, logvar = encoder.apply(params["encoder"], jnp.asarray(m.toarray()))
  mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
  kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1).mean()
  assert float(aux["kl"]) == pytest.approx(kl, rel=1e-5)


def test_model_loss_gradients():
  m = _train_matrix(n_users=4, n_items=6)
  with jax.enable_x64(True):
    model = get_model("mult-vae", {"hidden_dims": (3,), "latent_dim": 2, "dropout": 0.5,
                                   "total_anneal_steps": 10})
    params, factors = model.init(jax.random.PRNGKey(0), m)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    batch = _dense_batch(m)
    batch["rows"] = batch["rows"].astype(jnp.float64)
    key = jax.random.PRNGKey(3)  # Fixed: dropout masks and ε are constants of the function.
    check_grads(jax.jit(lambda p: model.loss(p, factors, batch, key, _phase(5))[0]), (params,),
                order=1,
                modes=["rev"], eps=1e-4)


@pytest.mark.parametrize("name,likelihood", [("mult-vae", "multinomial"), ("mult-vae", "gaussian"),
                                             ("mult-dae", "logistic")])
def test_padded_batches_give_the_dense_loss_and_gradient(name, likelihood):
  m = _train_matrix()
  cfg = {**SMALL, "likelihood": likelihood, "dropout": 0.0,
         **({"total_anneal_steps": 200_000} if name == "mult-vae" else {})}  # Loss called directly.
  dense = get_model(name, cfg)
  padded = get_model(name, {**cfg, "sparse_input": True})
  assert dense.batch_source == batching.DenseRows()
  assert padded.batch_source == batching.PaddedRows(group_by_length=False)
  grouped = get_model(name, {**cfg, "sparse_input": True, "group_by_length": True})
  assert grouped.batch_source == batching.PaddedRows(group_by_length=True)
  params, factors = dense.init(jax.random.PRNGKey(0), m)
  key = jax.random.PRNGKey(4)
  grad = lambda model: jax.jit(jax.value_and_grad(model.loss, has_aux=True))
  (l1, _), g1 = grad(dense)(params, factors, _dense_batch(m), key, _phase(7))
  (l2, _), g2 = grad(padded)(params, factors, _padded_batch(m), key, _phase(7))
  assert float(l1) == pytest.approx(float(l2), rel=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fold_in_scores_never_rank_input_items():
  split = toy_model.make_split()
  model = get_model("mult-vae", SMALL)
  params, factors = model.init(jax.random.PRNGKey(0), split.train)
  inputs = jnp.asarray(split.validation.fold_in.toarray(), jnp.float32)
  s1 = model.score(params, factors, inputs)
  np.testing.assert_array_equal(s1, model.score(params, factors, inputs))  # No dropout, no sampling.
  score_fn = lambda state, x: model.score(state[0], state[1], x)
  # Held-out = the fold-in items themselves: every one is excluded from the top-10.
  ev = split.validation
  assert np.diff(ev.fold_in.indptr).max() <= ev.fold_in.shape[1] - 10  # 10 other items remain.
  echo = type(ev)(fold_in=ev.fold_in, held_out=ev.fold_in, users=ev.users)
  res = evaluate_ranking(score_fn, (params, factors), echo, metrics=("recall@10", "ndcg@10"),
                         batch_size=17)
  assert res["users"] > 0 and res["recall@10"] == 0.0 and res["ndcg@10"] == 0.0
  # Without the exclusion the same scores would rank input items first.
  top = np.argsort(-np.asarray(s1), axis=1)[:, :10]
  assert np.take_along_axis(ev.fold_in.toarray(), top, axis=1).sum() > 0
  # Scores of an untrained model, with the fold-in items excluded, still find some held-out items.
  res = evaluate_ranking(score_fn, (params, factors), ev, metrics=("recall@100",), batch_size=17)
  assert res["recall@100"] > 0.0


def _config(**kw):
  base = dict(epochs=6, batch_size=32, eval_batch_size=64, n_devices=1, progress=False,
              checkpoint=False, metrics=("recall@20", "ndcg@100"))
  base.update(kw)
  return TrainConfig(**base)


def test_models_learn_beyond_popularity(tmp_path):
  split = toy_model.make_split()
  quiet = lambda s: None
  pop = train_and_evaluate(get_model("popularity"), split, _config(epochs=1), tmp_path / "pop",
                           log=quiet)["validation"]["ndcg@100"]
  runs = {
      "vae": ("mult-vae", {**FAST, "total_anneal_steps": 60}),
      "dae-sampled": ("mult-dae", {**FAST, "sparse_input": True, "sampled_softmax": 40,
                                   "sampler": "popularity"}),
  }
  for tag, (name, overrides) in runs.items():
    res = train_and_evaluate(get_model(name, overrides), split, _config(), tmp_path / tag, log=quiet)
    records = [json.loads(l) for l in (tmp_path / tag / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train"]["neg_ll"] < records[0]["train"]["neg_ll"], tag
    assert res["validation"]["ndcg@100"] > 1.3 * pop, (tag, res["validation"], pop)


def test_bad_configs_raise_clear_errors():
  with pytest.raises(ValueError, match="likelihood"):
    get_model("mult-vae", {"likelihood": "poisson"})
  with pytest.raises(ValueError, match="sparse_input"):
    get_model("mult-dae", {"sampled_softmax": 10})
  with pytest.raises(ValueError, match="multinomial"):
    get_model("mult-vae", {"sampled_softmax": 10, "sparse_input": True, "likelihood": "logistic"})
  with pytest.raises(ValueError, match="no config field"):
    get_model("mult-dae", {"anneal_cap": 0.2})  # The DAE has no β.
  with pytest.raises(ValueError, match="group_by_length applies to sparse_input"):
    get_model("mult-vae", {"group_by_length": True})  # Dense rows have no length.
  with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
    get_model("mult-dae", {"l2": -0.01})


_SHARDED = r"""
import json, sys
import jax, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P
from recjax.data import batching, synthetic
from recjax.models.registry import get_model
from recjax.train.sharding import make_mesh
assert len(jax.devices()) == 4, jax.devices()
train = synthetic.synthetic_implicit(n_users=40, n_items=30, nnz=400, seed=3)
out = {}
# Padded rows and the sampled softmax: gathers and a shared draw of items under a split batch
# (the dense path is the toy model's, checked in test_runner.py).
for tag in ("sampled",):
  model = get_model("mult-vae", {"hidden_dims": (8,), "latent_dim": 4, "total_anneal_steps": 5,
                                 "sparse_input": True, "sampled_softmax": 20})
  batches = [{**b._asdict(), "index": b.index.astype(np.int32)}
             for b in batching.padded_row_batches(train, 12)]
  for n in (1, 4):
    mesh = make_mesh(n)  # The runner's mesh (auto axes).
    rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params, factors = jax.device_put(model.init(jax.random.PRNGKey(0), train), rep)
    opt_state = jax.device_put(model.optimizer.init(params), rep)

    @jax.jit
    def step(params, opt_state, batch, key, phase):
      (loss, aux), g = jax.value_and_grad(model.loss, has_aux=True)(params, factors, batch, key,
                                                                    phase)
      updates, opt_state = model.optimizer.update(g, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i, b in enumerate(batches):  # 4 batches: the last one has 4 padding rows.
      phase = jax.device_put({"step": np.int32(i), "epoch": np.int32(1)}, rep)
      params, opt_state, loss = step(params, opt_state, jax.device_put(b, rows),
                                     jax.random.PRNGKey(i), phase)
      losses.append(float(loss))
    out[f"{tag}{n}"] = {"losses": losses,
                        "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(params)]}
print("RESULTS " + json.dumps(out))
"""


def test_sharded_steps_match_single_device_steps():
  """Four optax steps on a 4-device mesh (batch split, params replicated) equal 1-device steps."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"}
  proc = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True,
                        timeout=300, cwd=REPO, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")][-1]
  out = json.loads(line[len("RESULTS "):])
  for tag in ("sampled",):
    one, four = out[f"{tag}1"], out[f"{tag}4"]
    assert len(one["losses"]) == 4
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, err_msg=tag)
    for a, b in zip(one["params"], four["params"]):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=tag)


# compute_dtype="bfloat16": bf16 matmul operands, f32 accumulation, f32 params and loss.
# bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2% per operand), so one layer's
# output is off by up to ~0.4% of its scale (two rounded operands, errors of both signs
# averaging out over the dot product).  The loss, a mean of log-softmax terms of size
# ~log(I), moves far less (measured ~1e-6 relative here); rel=1e-3 leaves a wide margin yet
# would catch a float16-style overflow or a layer left out of float32 accumulation.  Gradient
# entries move by up to a few percent, so they are compared by direction and norm.


def _bf16_pair(extra=None, n_users=24, n_items=200):
  m = _train_matrix(n_users=n_users, n_items=n_items, seed=5)
  cfg = {"hidden_dims": (64,), "latent_dim": 16, "dropout": 0.5, "total_anneal_steps": 10,
         **(extra or {})}
  f32 = get_model("mult-vae", cfg)
  bf16 = get_model("mult-vae", {**cfg, "compute_dtype": "bfloat16"})
  params, factors = f32.init(jax.random.PRNGKey(0), m)
  return m, f32, bf16, params, factors


def test_bf16_loss_close_to_float32_and_params_stay_float32():
  m, f32, bf16, params, factors = _bf16_pair()
  p16, _ = bf16.init(jax.random.PRNGKey(0), m)
  # Same parameter tree, same float32 leaves: bf16 only changes how the matmuls run.
  assert jax.tree.structure(p16) == jax.tree.structure(params)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p16))
  batch, key = _dense_batch(m), jax.random.PRNGKey(2)  # Same key: same dropout and ε.
  grad = lambda model: jax.jit(jax.value_and_grad(model.loss, has_aux=True))
  (l32, a32), g32 = grad(f32)(params, factors, batch, key, _phase(4))
  (l16, a16), g16 = grad(bf16)(params, factors, batch, key, _phase(4))
  assert l16.dtype == jnp.float32 and a16["kl"].dtype == jnp.float32
  assert float(l16) == pytest.approx(float(l32), rel=1e-3)
  assert float(a16["kl"]) == pytest.approx(float(a32["kl"]), rel=2e-2, abs=1e-3)
  assert float(l16) != float(l32)  # The bf16 path really ran.
  for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16)):
    assert b.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(b)))
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)
    assert cos > 0.999 and np.linalg.norm(b) == pytest.approx(np.linalg.norm(a), rel=0.01)
  # An Adam step keeps float32 master weights.
  updates, _ = bf16.optimizer.update(g16, bf16.optimizer.init(params), params)
  new = jax.tree.map(lambda p, u: p + u, params, updates)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new))
  # Fold-in scores: float32 logits close to the float32 model's.
  x = jnp.asarray(m.toarray())
  s32, s16 = f32.score(params, factors, x), bf16.score(params, factors, x)
  assert s16.dtype == jnp.float32
  np.testing.assert_allclose(s16, s32, atol=2e-2 * float(jnp.max(jnp.abs(s32))))


def test_bf16_sparse_and_sampled_paths_run_finite():
  for extra in ({"sparse_input": True}, {"sparse_input": True, "sampled_softmax": 30}):
    m, f32, bf16, params, factors = _bf16_pair(extra)
    _, factors = bf16.init(jax.random.PRNGKey(0), m)
    batch, key, phase = _padded_batch(m), jax.random.PRNGKey(6), _phase(3)
    (l32, _), _ = jax.jit(jax.value_and_grad(f32.loss, has_aux=True))(params, factors, batch,
                                                                      key, phase)
    (l16, _), g16 = jax.jit(jax.value_and_grad(bf16.loss, has_aux=True))(params, factors, batch,
                                                                          key, phase)
    assert float(l16) == pytest.approx(float(l32), rel=1e-3), extra
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
               for g in jax.tree.leaves(g16)), extra


def test_bad_compute_dtype_raises():
  for name in ("mult-vae", "mult-dae"):
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
      get_model(name, {"compute_dtype": "float16"})
  with pytest.raises(ValueError, match="compute_dtype"):
    multvae.autoencoders.MLPDecoder(15, (4,), compute_dtype="bf16").init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3)))


def test_eps_std_scales_the_reparameterization_noise():
  m = _train_matrix()
  base = {**SMALL, "dropout": 0.0, "total_anneal_steps": 0, "anneal_cap": 0.0}
  batch, phase = _dense_batch(m), _phase(3)
  losses = {}
  for eps_std in (0.0, 0.01, 1.0):
    model = get_model("mult-vae", {**base, "eps_std": eps_std})
    params, factors = model.init(jax.random.PRNGKey(0), m)
    losses[eps_std] = [float(model.loss(params, factors, batch, jax.random.PRNGKey(k),
                                        phase)[1]["neg_ll"]) for k in (1, 2)]
  # ε = 0: z = μ, the same loss for every key; 0.01: keys barely matter; 1: they do.
  assert losses[0.0][0] == losses[0.0][1]
  spread = {s: abs(v[0] - v[1]) for s, v in losses.items()}
  assert 0 < spread[0.01] < spread[1.0]
  assert abs(losses[0.01][0] - losses[0.0][0]) < abs(losses[1.0][0] - losses[0.0][0])
  with pytest.raises(ValueError, match="eps_std"):
    get_model("mult-vae", {**base, "eps_std": -1.0})
