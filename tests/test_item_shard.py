"""Item-sharded layouts (``TrainConfig.model_shards``) against the replicated one, on 4 CPU devices.

One subprocess (the devices must be configured before jax starts) trains and
evaluates through the runner on a (4 / m) x m mesh for m = 1, 2, 4:

* Mult-VAE: the same training losses, validation and test metrics (float
  tolerance) and final parameters for m = 1, 2 and 4; with m > 1 the [I, H] and
  [H, I] layers (and Adam's moments) are split over ``model``; the m = 2 run
  stops after 2 epochs and resumes from its checkpoint (the restore keeps each
  array's layout);
* EASE: the same weights and metrics for m = 1 and 2; the weights are split by
  columns, also when restored from the checkpoint of a finished run;
* serving (`recjax.serve.topk.rank_rows`) recommends the same top 10 from the
  item-sharded state (Mult-VAE m = 4 dense rows, EASE m = 2 padded item lists);
* the top k merged across item shards (`ops.ranking.top_k_over_shards`, with
  ties and exclusions, chunked and not, and the serving selection) equals the
  whole-row top k;
* the compiled Mult-VAE training and evaluation steps at m = 4 move no array
  as large as a [B, I] batch or an [H, I] layer between devices (no
  all-gather, all-to-all or collective-permute of it): jit reduces the softmax
  and the matmuls across item shards.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, re, sys, tempfile
sys.path.insert(0, "tests")
import time
import jax, jax.numpy as jnp, numpy as np
assert jax.device_count() == 4, jax.devices()
T0 = time.time()
def lap(what):
  print(f"{what}: {time.time() - T0:.1f}s", file=sys.stderr, flush=True)
import toy_model
from recjax.eval import ranking as eval_ranking
from recjax.models.registry import get_model
from recjax.ops import ranking
from recjax.serve import topk as serve_topk
from recjax.train import sharding as shd
from recjax.train.artifact import TrainedModel
from recjax.train.runner import TrainConfig, make_train_step, train_and_evaluate

split = toy_model.make_split()  # 120 items: split 1, 2 or 4 ways.
quiet = lambda s: None
VAE = {"hidden_dims": (16,), "latent_dim": 8, "total_anneal_steps": 20}
out = {"vae": {}, "ease": {}}


def run(name, overrides, m, workdir, epochs, **kw):
  config = TrainConfig(epochs=epochs, batch_size=32, eval_batch_size=40, n_devices=4,
                       model_shards=m, progress=False, metrics=("recall@20", "ndcg@50"), **kw)
  results, (params, factors) = train_and_evaluate(get_model(name, overrides), split, config,
                                                  workdir, return_state=True, log=quiet)
  return results, params, factors


def spec(x):
  # 'replicated', or the shape of one device's block.
  return "replicated" if x.sharding.is_fully_replicated else list(x.addressable_shards[0].data.shape)


def vae_record(results, params, losses):
  kernel = params["decoder"]["params"]["output"]["kernel"]
  return {"validation": results["validation"], "test": results["test"], "losses": losses,
          "kernel": np.asarray(kernel).tolist(), "kernel_spec": spec(kernel),
          "input_spec": spec(params["encoder"]["params"]["input"]["kernel"])}


def losses_of(d):
  return [json.loads(l)["train"]["loss"] for l in open(d + "/metrics.jsonl")]


def recommend(name, overrides, m, params, factors):
  # Top 10 of the test users' fold-in rows through the serving engine, on the run's mesh.
  train = split.train
  tm = TrainedModel(model=get_model(name, overrides), params=params, factors=factors,
                    mesh=shd.make_mesh(4, m), info={}, item_ids=np.arange(train.shape[1]),
                    user_ids=np.arange(train.shape[0]), train=train,
                    popularity=np.asarray((train != 0).sum(axis=0), np.float32).ravel())
  allowed = np.ones(train.shape[1], bool)
  return [np.asarray(cols).tolist() for _, _, cols, _ in serve_topk.rank_rows(
      tm, split.test.fold_in, 10, allowed, exclude_seen=True, batch_size=16, item_chunk=None)]


for m in (1, 4):
  with tempfile.TemporaryDirectory() as d:
    results, params, factors = run("mult-vae", VAE, m, d, 3, checkpoint=False)
    out["vae"][m] = vae_record(results, params, losses_of(d))
  out["vae"][m]["recommended"] = recommend("mult-vae", VAE, m, params, factors)
for m in (1, 2):
  with tempfile.TemporaryDirectory() as d:
    run("ease", {"l2": 10.0}, m, d, 1)
    # Run again: the finished run's checkpoint is restored (no block step) into the layout.
    results, _, factors = run("ease", {"l2": 10.0}, m, d, 1)
  out["ease"][m] = {"test": results["test"], "spec": spec(factors["weights"]),
                    "weights": np.asarray(factors["weights"]).tolist(),
                    "recommended": recommend("ease", {"l2": 10.0}, m, {}, factors)}
lap("runs")
# m = 2: 2 epochs, then resumed from that checkpoint (of the item-sharded state) to 3 epochs.
with tempfile.TemporaryDirectory() as d:
  run("mult-vae", VAE, 2, d, 2, checkpoint_every_s=0.0)
  results, params, _ = run("mult-vae", VAE, 2, d, 3, checkpoint_every_s=0.0)
  out["vae"][2] = vae_record(results, params, losses_of(d))
lap("resumed")
# Top k across item shards: ties (scores rounded to a few values), exclusions, chunks.
rng = np.random.default_rng(0)
scores = (np.round(rng.normal(size=(8, 96)), 1) + 0.0).astype(np.float32)  # + 0: no -0.0.
exclude = rng.random((8, 96)) < 0.5
exclude[0, 3:] = True  # Row 0: fewer allowed items than k (excluded ones fill in, last).
topk = {}
for m in (1, 2, 4):
  mesh = shd.make_mesh(4, m)
  put = lambda x: jax.device_put(x, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data", "model")))
  for chunk in (None, 7):
    select = lambda s, e, k: ranking.top_k_excluding(s, e, k, chunk)
    f = jax.jit(lambda s, e: ranking.top_k_over_shards(select, 30, mesh, s, e))
    v, i = f(put(scores), put(exclude))
    topk[f"{m}/{chunk}"] = [np.asarray(v).tolist(), np.asarray(i).tolist()]
  masked = np.where(exclude, -np.inf, scores).astype(np.float32)
  for chunk in (None, 7):
    v, i = serve_topk._select_step(30, chunk, mesh)(put(masked))
    topk[f"serve {m}/{chunk}"] = [np.asarray(v).tolist(), np.asarray(i).tolist()]
out["topk"] = topk
out["topk_scores"] = [scores.tolist(), exclude.tolist()]

lap("topk")
# What the compiled steps move between devices, at m = 4 (B = 64 rows, I = 4096 items, H = 64).
B, I, H = 64, 4096, 64
mesh = shd.make_mesh(4, 4)
model = get_model("mult-vae", {"hidden_dims": (H,), "latent_dim": H // 2, "total_anneal_steps": 5})
train = jax.random.bernoulli(jax.random.PRNGKey(0), 0.01, (B, I)).astype(jnp.float32)
import scipy.sparse as sp
params, factors = model.init(jax.random.PRNGKey(0), sp.csr_matrix(np.asarray(train)))
opt = model.optimizer.init(params)
params, opt, factors = shd.place_state(model, params, opt, factors, mesh)
rows = shd.batch_sharding(mesh)
rep = shd.replicated(mesh)
batch = jax.device_put({"rows": train, "mask": np.ones(B, bool), "index": np.arange(B, dtype=np.int32)}, rows)
phase = jax.device_put({"step": np.int32(0), "epoch": np.int32(1)}, rep)
texts = {"train": make_train_step(model).lower(params, opt, factors, batch, jax.random.PRNGKey(0),
                                               phase).compile().as_text()}
score = lambda st, x: model.score(st[0], st[1], x)
step = eval_ranking._batch_step(score, ("recall@20",), None, True, mesh)
totals = jax.device_put({"recall@20": np.float32(0), "users": np.int32(0)}, rep)
from recjax.eval import batches as eval_batches
inputs = eval_batches.placement(rows, B).items(np.asarray(train))  # As evaluate_ranking places them.
assert inputs.addressable_shards[0].data.shape == (B, I // 4)
texts["eval"] = step.lower((params, factors), inputs, batch["rows"] > 0,
                           jax.device_put(np.ones(B, np.int32), rows),
                           jax.device_put(np.ones(B, np.int32), rows), batch["mask"],
                           jax.device_put(np.ones(I, bool), rep), totals).compile().as_text()
moved = {}
collective = re.compile(
    r"= (\(.*?\)|\S+) (all-gather|all-reduce|all-to-all|collective-permute)(?:-start)?\(")
for name, text in texts.items():
  moved[name] = [[op, [int(d) for d in dims.split(",") if d]]
                 for shapes, op in collective.findall(text)
                 for dims in re.findall(r"\w+\[([\d,]*)\]", shapes)]
out["moved"] = moved
out["moved_limit"] = [B, I, H]
out["param_specs"] = {k: spec(v) for k, v in [
    ("adam_mu_out", opt[0].mu["decoder"]["params"]["output"]["kernel"])]}
lap("compiled")
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result():
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def _close(a, b, tol=1e-4):
  for key in a:
    if key != "users":
      assert abs(a[key] - b[key]) <= tol, (key, a[key], b[key])
  assert a["users"] == b["users"]


def test_multvae_item_sharded_matches_replicated(result):
  vae = result["vae"]
  base = vae["1"]
  assert base["kernel_spec"] == base["input_spec"] == "replicated" and len(base["losses"]) == 3
  hidden, items = np.shape(base["kernel"])
  for m in ("2", "4"):  # m = 2 resumed from its epoch-2 checkpoint: the restore keeps the layout.
    run = vae[m]
    assert run["kernel_spec"] == [hidden, items // int(m)], run["kernel_spec"]
    assert run["input_spec"] == [items // int(m), hidden], run["input_spec"]
    np.testing.assert_allclose(run["losses"], base["losses"], rtol=1e-5)
    _close(run["validation"], base["validation"])
    _close(run["test"], base["test"])
    np.testing.assert_allclose(run["kernel"], base["kernel"], rtol=1e-4, atol=1e-6)
  assert vae["4"]["recommended"] == base["recommended"] and len(base["recommended"]) > 1
  b, n_items, h = result["moved_limit"]
  assert result["param_specs"]["adam_mu_out"] == [h, n_items // 4]  # Adam's moments follow.


def test_ease_item_sharded_matches_replicated(result):
  ease = result["ease"]
  assert ease["1"]["spec"] == "replicated"
  items = len(ease["1"]["weights"])
  assert ease["2"]["spec"] == [items, items // 2]
  np.testing.assert_allclose(ease["2"]["weights"], ease["1"]["weights"], rtol=1e-5, atol=1e-6)
  _close(ease["2"]["test"], ease["1"]["test"])
  # Serving: EASE's padded fold-in (its seen items set to -inf by a scatter) on split columns.
  assert ease["2"]["recommended"] == ease["1"]["recommended"]


def test_top_k_merged_across_shards_equals_whole_row(result):
  scores, exclude = (np.asarray(a) for a in result["topk_scores"])
  masked = np.where(exclude, -np.inf, scores)
  # numpy: descending score, ties (and the -inf of excluded items) by lower item index.
  order = np.lexsort((np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), -masked))
  want = order[:, :30]
  assert exclude[0].sum() > scores.shape[1] - 30  # Row 0 needs excluded items to fill its k.
  assert len(result["topk"]) == 12
  for key, (values, indices) in result["topk"].items():
    np.testing.assert_array_equal(indices, want, err_msg=key)
    np.testing.assert_array_equal(values, np.take_along_axis(masked, want, 1), err_msg=key)


def test_compiled_steps_move_no_item_sized_array(result):
  b, n_items, h = result["moved_limit"]
  moved = result["moved"]
  # What must move: the first layer's [B, H] partial products, summed over the item shards
  # (training and scoring), and the shards' top-k candidates (evaluation).
  assert ["all-reduce", [b, h]] in moved["train"], moved["train"]
  assert ["all-reduce", [b, h]] in moved["eval"], moved["eval"]
  assert any(op == "all-gather" for op, _ in moved["eval"]), moved["eval"]
  for name, ops in moved.items():
    for op, dims in ops:
      assert np.prod(dims) < min(b * n_items, h * n_items) // 4, (name, op, dims)
