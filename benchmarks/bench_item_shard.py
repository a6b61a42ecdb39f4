r"""Mult-VAE on a catalog split over 8 CPU devices: memory per device and seconds per step,
item-sharded against replicated.

  python -m benchmarks.bench_item_shard                       # the full run (~10-20 min)
  python -m benchmarks.bench_item_shard --sizes=10000 --steps=2   # a quick check

Every case runs in a fresh subprocess with ``--xla_force_host_platform_device_count=8``
(8 CPU devices sharing this machine's cores and memory; the parent never imports jax),
so each case's peak resident memory is its own.

The model: Mult-VAE [I → H → K → H → I] (``get_model("mult-vae")``, dense input,
multinomial likelihood, Adam), H = --hidden, K = --latent, on a seeded synthetic catalog
(`recjax.data.synthetic.synthetic_implicit`: --users users, --clicks_per_user clicks each,
I items).  Layouts, on the runner's mesh (`recjax.train.sharding.make_mesh(8, m)`):

* ``replicated``: m = 1, an 8 x 1 mesh: every device holds the whole [I, H] and [H, I]
  layers and their Adam moments; the batch's rows are split 8 ways (data parallel);
* ``item-sharded``: m = 8, a 1 x 8 mesh: the item axis of those layers, of the output bias
  and of Adam's moments is split 8 ways (`Model.partition`); the dense [B, I] batch is
  placed either ``P("data")`` (split by rows only: on a 1 x 8 mesh every device holds the
  whole batch) or ``P("data", "model")`` (each device its items' columns,
  `recjax.train.sharding.batch_shardings`); and, on the largest catalog, m = 4 on a 2 x 4
  mesh (items over 4 devices, the batch's rows over 2).

What is measured, per case:

* ``need_per_device_gb``: XLA's own account of the compiled training step on one device
  (`compiled.memory_analysis()`: arguments + outputs - donated aliases + temporaries),
  for every case, also the ones that are not run: it is computed from abstract arrays
  (`jax.ShapeDtypeStruct` with the case's shardings), so nothing of the catalog is
  allocated.  The replicated 1M-item case is only compiled: its need per device is set
  against one device's share of this host's memory (MemTotal / 8);
* ``live_per_device_gb``: after the timed steps, the bytes of every live array's shards
  on each device (`jax.live_arrays()`); the largest device is reported;
* ``peak_rss_gb``: the subprocess's peak resident memory (all 8 devices together);
* ``step_s``: the runner's jitted step (`make_train_step(model)`, donating params and
  optimizer state, as the runner does) on one real batch of --batch users: compile timed
  apart, one warm-up call, then the median of --steps calls each ended by
  `block_until_ready`.  The 8 devices share the machine's cores, so these are not
  speed-ups, only the cost of each layout on the same hardware;
* ``batch_ab``: in the item-sharded case with the batch split over (data, model), the same
  step compiled for the batch split over data only, the two called alternately (same
  process, same state, same load) for --steps rounds after a warm-up round: the medians
  of each, and their ratio;
* for the 1M-item item-sharded case, one evaluation of --batch users through
  `recjax.eval.ranking.evaluate_ranking` (top-100 merged across the item shards): its
  wall time after a first compiling call.

The load average is recorded with the figures; results go to
benchmarks/results/bench_item_shard.json and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "bench_item_shard.json"
N_DEVICES = 8


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="10000,100000,1000000", help="Catalog sizes (items).")
  p.add_argument("--users", type=int, default=1024)
  p.add_argument("--clicks_per_user", type=int, default=40)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--latent", type=int, default=64)
  p.add_argument("--batch", type=int, default=64, help="Users per training step.")
  p.add_argument("--steps", type=int, default=5, help="Timed steps per case.")
  p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # A subprocess's one case.
  return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# One case (in its own subprocess, with 8 CPU devices).

def _case(args) -> dict:
  import resource

  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  from recjax.data import synthetic
  from recjax.eval import ranking as eval_ranking
  from recjax.models.registry import get_model
  from recjax.ops import mesh as mesh_lib
  from recjax.train import sharding as shd
  from recjax.train.runner import make_train_step

  spec = json.loads(args.case)
  n_items, m, batch_axes, execute = spec["items"], spec["model_shards"], spec["batch"], spec["run"]
  assert jax.device_count() == N_DEVICES, jax.devices()
  mesh = shd.make_mesh(N_DEVICES, m)
  model = get_model("mult-vae", {"hidden_dims": (args.hidden,), "latent_dim": args.latent,
                                 "total_anneal_steps": 1000})
  train = synthetic.synthetic_implicit(args.users, n_items, args.users * args.clicks_per_user,
                                       seed=0)
  b = args.batch
  rows_sharding = NamedSharding(mesh, P(*batch_axes))
  row_sharding = shd.batch_sharding(mesh)
  rep = shd.replicated(mesh)

  # XLA's account of the step on one device, from abstract arrays (nothing allocated).
  key = jax.random.PRNGKey(0)
  p_shape, f_shape = jax.eval_shape(lambda k: model.init(k, train), key)
  o_shape = jax.eval_shape(model.optimizer.init, p_shape)
  p_spec, o_spec, f_spec = shd.state_specs(model, p_shape, o_shape, f_shape)
  abstract = lambda tree, specs: jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
      mesh_lib.shardings(tree, specs, mesh))
  batch_abs = {"rows": jax.ShapeDtypeStruct((b, n_items), jnp.float32, sharding=rows_sharding),
               "mask": jax.ShapeDtypeStruct((b,), jnp.bool_, sharding=row_sharding),
               "index": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=row_sharding)}
  phase = jax.device_put({"step": np.int32(0), "epoch": np.int32(1)}, rep)
  step = make_train_step(model)  # Donates params and optimizer state, as in the runner.
  t0 = time.perf_counter()
  compiled = step.lower(abstract(p_shape, p_spec), abstract(o_shape, o_spec),
                        abstract(f_shape, f_spec), batch_abs, key, phase).compile()
  compile_s = time.perf_counter() - t0
  ma = compiled.memory_analysis()
  need = (ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
          + ma.temp_size_in_bytes)
  text = compiled.as_text()
  out = {**spec, "compile_s": compile_s, "need_per_device_gb": need / 2**30,
         "arguments_gb": ma.argument_size_in_bytes / 2**30, "temp_gb": ma.temp_size_in_bytes / 2**30,
         "params_gb": sum(x.size * 4 for x in jax.tree.leaves(p_shape)) / 2**30,
         "all_gathers": text.count(" all-gather("), "all_reduces": text.count(" all-reduce(")}
  if not execute:
    return out

  params, factors = model.init(key, train)
  opt_state = model.optimizer.init(params)
  params, opt_state, factors = shd.place_state(model, params, opt_state, factors, mesh)
  dense = np.zeros((b, n_items), np.float32)
  train[:b].toarray(out=dense)
  batch = {"rows": jax.device_put(dense, rows_sharding),
           "mask": jax.device_put(np.ones(b, bool), row_sharding),
           "index": jax.device_put(np.arange(b, dtype=np.int32), row_sharding)}
  del dense
  times = []
  for i in range(args.steps + 1):  # The first call warms up.
    t0 = time.perf_counter()
    params, opt_state, sums, _ = compiled(params, opt_state, factors, batch,
                                          jax.random.fold_in(key, i), phase)
    jax.block_until_ready((params, opt_state, sums))
    if i:
      times.append(time.perf_counter() - t0)
  live = {}
  for x in jax.live_arrays():
    for shard in x.addressable_shards:
      live[shard.device] = live.get(shard.device, 0) + shard.data.nbytes
  if spec.get("compare_batch"):
    out["batch_ab"] = _batch_ab(args, compiled, step, params, opt_state, factors, batch, key,
                                phase, mesh)
    params, opt_state = out["batch_ab"].pop("state")
  spec_of = lambda x: str(tuple(x.sharding.spec))
  out.update(step_s=statistics.median(times), step_s_all=times, loss=float(sums["loss"]) / b,
             live_per_device_gb=max(live.values()) / 2**30,
             live_min_device_gb=min(live.values()) / 2**30,
             decoder_kernel_spec=spec_of(params["decoder"]["params"]["output"]["kernel"]),
             adam_mu_spec=spec_of(opt_state[0].mu["decoder"]["params"]["output"]["kernel"]))
  if spec.get("evaluate"):
    import types

    import scipy.sparse as sp
    held = sp.random(b, n_items, density=20 / n_items, format="csr", random_state=1)
    eval_set = types.SimpleNamespace(fold_in=train[:b], held_out=held, users=np.arange(b))
    score = lambda st, x: model.score(st[0], st[1], x)
    run_eval = lambda: eval_ranking.evaluate_ranking(
        score, (params, factors), eval_set, metrics=("recall@20", "ndcg@100"), batch_size=b,
        sharding=row_sharding)
    t0 = time.perf_counter()
    run_eval()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = run_eval()
    out.update(eval_first_s=first, eval_s=time.perf_counter() - t0, eval_metrics=metrics)
  out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  return out


def _batch_ab(args, compiled, step, params, opt_state, factors, batch, key, phase, mesh) -> dict:
  """Seconds per step with the [B, I] batch split over (data, model) against split over data
  only, the two steps called alternately in this one process (same state, same load)."""
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P

  rows_only = dict(batch, rows=jax.device_put(batch["rows"], NamedSharding(mesh, P("data"))))
  other = step.lower(params, opt_state, factors, rows_only, key, phase).compile()
  times = {"data/model": [], "data": []}
  for i in range(args.steps + 1):
    for name, fn, b in (("data/model", compiled, batch), ("data", other, rows_only)):
      t0 = time.perf_counter()
      params, opt_state, sums, _ = fn(params, opt_state, factors, b, jax.random.fold_in(key, i),
                                      phase)
      jax.block_until_ready((params, opt_state, sums))
      if i:
        times[name].append(time.perf_counter() - t0)
  med = {k: statistics.median(v) for k, v in times.items()}
  return {"step_s": med, "all_s": times, "data_over_data_model": med["data"] / med["data/model"],
          "state": (params, opt_state)}


# ---------------------------------------------------------------------------------------------
# The driver (no jax in this process).

def _mem_total_gb() -> float:
  with open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemTotal:"):
        return int(line.split()[1]) / 2**20
  return float("nan")


def _run_case(args, spec: dict) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={N_DEVICES}"))
  argv = [sys.executable, "-m", "benchmarks.bench_item_shard", "--case", json.dumps(spec)]
  for name in ("users", "clicks_per_user", "hidden", "latent", "batch", "steps"):
    argv.append(f"--{name}={getattr(args, name)}")
  load = os.getloadavg()
  t0 = time.perf_counter()
  proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
  if proc.returncode != 0:
    return {**spec, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"],
            "loadavg_before": load}
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result.update(wall_s=time.perf_counter() - t0, loadavg_before=load, loadavg_after=os.getloadavg())
  return result


def main(argv=None):
  args = _args(argv)
  if args.case is not None:
    print(json.dumps(_case(args)))
    return
  sizes = [int(s) for s in args.sizes.split(",") if s]
  share = _mem_total_gb() / N_DEVICES
  cases = []
  for n in sizes:
    # The replicated layout runs only where it fits a device's share with room to spare.
    cases.append({"items": n, "layout": "replicated", "model_shards": 1, "batch": ["data"],
                  "run": None})
    cases.append({"items": n, "layout": "item-sharded", "model_shards": N_DEVICES,
                  "batch": ["data", "model"], "run": True, "evaluate": n == max(sizes),
                  "compare_batch": True})
    cases.append({"items": n, "layout": "item-sharded", "model_shards": N_DEVICES,
                  "batch": ["data"], "run": True})
  # A 2 x 4 mesh on the largest catalog: items over 4 devices, batch rows over 2.
  cases.append({"items": max(sizes), "layout": "item-sharded", "model_shards": N_DEVICES // 2,
                "batch": ["data", "model"], "run": True})
  results = []
  for spec in cases:
    if spec["run"] is None:  # Compile first; run only if the need fits the share.
      probe = _run_case(args, {**spec, "run": False})
      fits = "error" not in probe and probe["need_per_device_gb"] < 0.5 * share
      spec = {**spec, "run": fits}
      result = _run_case(args, spec) if fits else probe
    else:
      result = _run_case(args, spec)
    result["fits_device_share"] = ("error" not in result
                                   and result["need_per_device_gb"] <= share)
    results.append(result)
    print(json.dumps(result), flush=True)
  record = {"benchmark": "bench_item_shard", "devices": N_DEVICES,
            "host_mem_total_gb": share * N_DEVICES, "device_share_gb": share,
            "config": {k: getattr(args, k) for k in ("users", "clicks_per_user", "hidden",
                                                     "latent", "batch", "steps")},
            "cases": results}
  OUT.parent.mkdir(parents=True, exist_ok=True)
  OUT.write_text(json.dumps(record, indent=1))
  print(f"\nMult-VAE [I → {args.hidden} → {args.latent} → {args.hidden} → I], batch {args.batch}, "
        f"{N_DEVICES} CPU devices; one device's share of host memory: {share:.2f} GB")
  print(f"{'items':>9} {'layout':>13} {'mesh':>5} {'batch':>12} {'need/dev GB':>11} {'live/dev GB':>11} "
        f"{'peak RSS GB':>11} {'s/step':>8} {'compile s':>9} {'load':>5}")
  mesh_of = lambda r: f"{N_DEVICES // r['model_shards']}x{r['model_shards']}"
  for r in results:
    if "error" in r:
      print(f"{r['items']:>9} {r['layout']:>13} {mesh_of(r):>5} {'/'.join(r['batch']):>12}  "
            f"error: {r['error']}")
      continue
    cell = lambda key, fmt: format(r[key], fmt) if key in r else "-"
    print(f"{r['items']:>9} {r['layout']:>13} {mesh_of(r):>5} {'/'.join(r['batch']):>12} "
          f"{r['need_per_device_gb']:>11.3f} {cell('live_per_device_gb', '.3f'):>11} "
          f"{cell('peak_rss_gb', '.2f'):>11} {cell('step_s', '.3f'):>8} "
          f"{r['compile_s']:>9.1f} {r['loadavg_before'][0]:>5.1f}"
          + ("" if r["fits_device_share"] else "  > one device's share: not run"))
  for r in results:
    if "batch_ab" in r:
      ab = r["batch_ab"]["step_s"]
      print(f"{r['items']} items, {mesh_of(r)} mesh, the two batch layouts alternated in one "
            f"process: data/model {ab['data/model']:.3f} s/step, data {ab['data']:.3f} s/step "
            f"(x{r['batch_ab']['data_over_data_model']:.2f})")
  for r in results:
    if "eval_s" in r:
      print(f"evaluation of {args.batch} users at {r['items']} items ({mesh_of(r)} mesh, top 100 "
            f"merged across item shards): {r['eval_s']:.2f}s ({r['eval_first_s']:.1f}s with "
            f"compilation)")
  print(f"\nwritten to {OUT}")


if __name__ == "__main__":
  main()
