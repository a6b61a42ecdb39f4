"""The runner: closed-form block steps and optax gradient steps, epoch by epoch.

The runner knows no model by name and is the only training loop of the zoo.
`train_and_evaluate` reads like the flax examples' function of that name:
build the run (`_build`), initialize or restore its state (`_initial_state`),
train epoch by epoch (`_train_epoch`: the model's block step, then one pass of
jitted steps over its batch source; `_validate`: keep the best state by
``select_metric``, stop early after ``patience`` evaluations without gain),
checkpoint, then evaluate the chosen state and save it (`_finish`).

Randomness: ``PRNGKey(seed)`` is split once into ``rng_init`` (parameters and
factors) and ``rng_loop`` (kept in the state): step ``s`` uses
``fold_in(rng_loop, s)``, the block step of epoch ``e`` a stream of its own
derived from ``rng_loop`` and ``e`` (`_block_key`).  So a resumed run draws what
an uninterrupted one drew, and no two uses share a key.

Outputs under ``workdir``: ``config.json``, ``metrics.jsonl`` (one record per
epoch), ``results.json`` (``{"validation": {...}, "test": {...}, ...}``),
``checkpoints/`` (orbax) and ``model/`` (the chosen state, `recjax.train.artifact`).
Re-running the same command resumes from the last checkpoint and ends with the
same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.eval import evaluate as evaluate_protocol
from recjax.eval.cold_start import cold_items
from recjax.models.base import Model, gradient_update
from recjax.train import artifact
from recjax.train import distributed, feed
from recjax.train.artifact import split_ids
from recjax.train import sharding as shd
from recjax.train.checkpoint import Checkpointer
from recjax.train.config import (PROTOCOL_OF_EVAL_SET, TrainConfig, check_devices,
                                 check_metrics, resolve_run)
from recjax.train.progress import Heartbeat, ProgressBar
from recjax.train.state import TrainState
from recjax.train.workdir import (RUN_FILES, RUNTIME_FIELDS, WorkdirMismatch, check_workdir,
                                  experiment_identity)
from recjax.train.writer import MetricWriter, write_json

__all__ = ["TrainConfig", "check_metrics", "check_devices", "WorkdirMismatch", "check_workdir",
           "experiment_identity", "RUN_FILES", "RUNTIME_FIELDS", "cold_items", "make_train_step",
           "split_ids", "train_and_evaluate", "PROTOCOL_OF_EVAL_SET"]


def make_train_step(model: Model, donate: bool = True):
  """The jitted optimization step of `model`: its own ``update`` or `gradient_update`.

  ``step(params, opt_state, factors, batch, key, phase) -> (params, opt_state,
  sums, n)``; with `donate` the parameters and optimizer state are donated (the
  runner); benchmarks pass ``donate=False`` to call it repeatedly on one state.
  """
  update = model.update or gradient_update(model.loss, model.optimizer)
  return jax.jit(update, donate_argnums=(0, 1) if donate else ())


def _copy(tree):
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else jnp.copy(x), tree)


def _peak_rss_gb() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _block_key(rng_loop, epoch: int):
  """Block-step keys: a stream of their own, apart from the per-step keys fold_in(rng_loop, step)."""
  return jax.random.fold_in(jax.random.fold_in(rng_loop, 0x7FFFFFFF), epoch)


def _silent(*args, **kwargs) -> None:
  """The log of the processes other than 0."""


def _fmt(metrics: dict) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                  if not k.startswith("users") and not isinstance(v, list))


def _scorable(eval_set) -> bool:
  """Whether evaluating `eval_set` scores anyone: users, and (ranking) a held-out item."""
  held_out = getattr(eval_set, "held_out", None)
  if isinstance(held_out, sp.spmatrix) or hasattr(held_out, "nnz"):
    return eval_set.n_users > 0 and held_out.nnz > 0
  return eval_set.n_users > 0


@dataclasses.dataclass
class _Run:
  """What one call of `train_and_evaluate` works with, built once by `_build`."""

  model: Model
  split: Any
  config: TrainConfig
  epochs: int
  workdir: Path
  side: dict[str, Any]
  info: dict[str, Any]
  mesh: Any
  evaluated: bool  # Validation users with something to score: select on them.
  donates: bool  # The train step donates params: the best params must be copies.
  log: Callable[[str], None]
  aux: Any = None  # `prepare`'s output, made when the first epoch needs it.
  train_step: Any = None

  @property
  def replicated(self):
    return shd.replicated(self.mesh)

  def evaluate(self, state_pair, eval_set, label: str, **kw) -> dict:
    """Metrics of (params, factors) on `eval_set` by its protocol, with a progress bar."""
    bar = None

    def on_batch(done, total):
      nonlocal bar
      if bar is None:
        bar = ProgressBar(total, label, enabled=self.config.progress)
      bar.update()

    if not self.config.exclude_fold_in:
      kw["exclude_fold_in"] = False  # Ranking protocol only.
    model = self.model
    return evaluate_protocol(
        lambda st, inputs: model.score(st[0], st[1], inputs), state_pair, eval_set,
        metrics=tuple(self.config.metrics), batch_size=self.config.eval_batch_size,
        item_chunk=self.config.item_chunk, sharding=shd.batch_sharding(self.mesh),
        on_batch=on_batch, **kw)


def _defaults(model_config) -> dict | None:
  """The model's and TrainConfig's default fields (for `check_workdir`), None if unbuildable."""
  try:
    return {"model_config": dataclasses.asdict(type(model_config)()),
            "train_config": dataclasses.asdict(TrainConfig())}
  except TypeError:  # A config class with a required field has no default for it.
    return None


def _build(model, split, config, workdir, run_info, side, overwrite, log) -> _Run:
  """Resolves and checks the run, refuses a foreign workdir, writes config.json."""
  workdir, side = Path(workdir), dict(side or {})
  model, config, epochs = resolve_run(model, split, config, workdir, side, overwrite, log)
  mesh = shd.make_mesh(config.n_devices, config.model_shards)
  train = split.train
  processes = jax.process_count()
  info = {"model": model.name, "model_config": dataclasses.asdict(model.config),
          "train_config": dataclasses.asdict(dataclasses.replace(config, epochs=epochs)),
          "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}"
                     + (f" ({processes} processes)" if processes > 1 else ""),
          "train_shape": list(train.shape), "train_nnz": int(train.nnz),
          "validation_users": int(split.validation.n_users),
          "test_users": int(split.test.n_users), **(run_info or {})}
  # Every process checks the workdir (the same files, the same verdict: no process is left
  # waiting for one that failed); process 0 alone clears and writes it.
  if distributed.is_primary() or not overwrite:
    check_workdir(workdir, info, epochs, overwrite, log, _defaults(model.config))
  distributed.barrier("recjax: workdir checked")
  if distributed.is_primary():
    write_json(workdir / "config.json", info)
  evaluated = _scorable(split.validation)
  if not evaluated:
    why = (f"none of the {split.validation.n_users} validation users has a held-out item to "
           f"score" if split.validation.n_users else "no validation users")
    log(f"{why}: nothing to select on, the last epoch is kept"
        + ("" if _scorable(split.test) else " and there is no evaluation (training on every user)"))
  return _Run(model=model, split=split, config=config, epochs=epochs, workdir=workdir, side=side,
              info=info, mesh=mesh, evaluated=evaluated, donates=model.loss is not None, log=log)


def _initial_state(run: _Run, ckpt: Checkpointer | None, writer: MetricWriter) -> TrainState:
  """The state at epoch 0 (rng_init seeds the parameters), or the latest checkpoint's."""
  model, config = run.model, run.config
  rng_init, rng_loop = jax.random.split(jax.random.PRNGKey(config.seed))
  params, factors = model.init(rng_init, run.split.train,
                               **{k: run.side[k] for k in model.side_keys})
  opt_state = model.optimizer.init(params) if model.loss is not None else {}
  params, opt_state, factors = shd.place_state(model, params, opt_state, factors, run.mesh)
  state = TrainState.create(params, opt_state, factors, rng=rng_loop)
  # The step counter and the loop key live on every device too: a multi-process run's
  # jitted steps take only global arrays.
  state = state.replace(step=shd.replicate(state.step, run.mesh),
                        rng=shd.replicate(state.rng, run.mesh))
  if run.donates:  # best_params must not alias the buffers the first step donates (eval_every > 1).
    state = state.replace(best_params=_copy(state.params))
  if ckpt is None or ckpt.latest_epoch() is None:
    writer.truncate_after(0)
    return state
  try:
    state = ckpt.restore(state, shd.sharding_of(run.mesh))
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:  # orbax: tree/shape mismatch.
    raise WorkdirMismatch(
        f"{ckpt.directory}: the checkpoint of epoch {ckpt.latest_epoch()} does not fit this "
        f"model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); use a fresh --workdir, "
        f"or pass --overwrite to discard it") from None
  if run.donates and state.best_is_current:
    state = state.replace(best_params=_copy(state.params))
  writer.truncate_after(state.epoch)
  best_text = (f"best {config.select_metric}={state.best_metric:.4f} at epoch {state.best_epoch}"
               if run.evaluated else "no validation: the last epoch is kept")
  run.log(f"resumed from {ckpt.directory} at epoch {state.epoch} ({best_text})")
  return state


def _prepare(run: _Run) -> None:
  """Host-side data of the model (`prepare`), its jitted step, and the planned schedule."""
  model = run.model
  if model.prepare is not None:
    t0 = time.perf_counter()
    run.aux = model.prepare(run.split.train, **{k: run.side[k] for k in model.side_keys}, **(
        {"mesh": run.mesh} if "mesh" in inspect.signature(model.prepare).parameters else {}))
    run.log(f"prepared host-side data in {time.perf_counter() - t0:.1f}s")
  if model.loss is not None:
    run.train_step = make_train_step(model)
    if model.schedule_report is not None:
      planned = feed.host_batches(run.model.batch_source, run.split.train, run.aux,
                                  feed.global_batch_size(run.config.batch_size, run.mesh), 1,
                                  run.config.seed)[0]
      report = model.schedule_report(run.epochs * planned, False)
      if report:
        run.log(report)


def _epoch_batches(run: _Run, epoch: int):
  return feed.epoch_batches(run.model, run.split.train, run.aux, run.config.batch_size, epoch,
                            run.config.seed, run.mesh)


def _phase(model: Model, epoch: int) -> dict:
  """The loss's ``phase`` of `epoch`: the epoch and the model's schedule values as scalars."""
  values = model.phase(epoch) if model.phase is not None else {}
  return {"epoch": jnp.int32(epoch),
          **{k: jnp.asarray(v, jnp.int32 if isinstance(v, (int, np.integer)) else jnp.float32)
             for k, v in values.items()}}


def _gradient_pass(run: _Run, state: TrainState, params, opt_state, factors, epoch: int,
                   first: bool):
  """One pass of jitted optimization steps over the epoch's batches."""
  n_batches, source = _epoch_batches(run, epoch)
  phase = _phase(run.model, epoch)
  step = state.step
  bar = ProgressBar(n_batches, f"epoch {epoch}", enabled=run.config.progress)
  sums, count = None, jnp.zeros(())
  for batch in source:
    phase["step"] = step  # optax updates so far (a replicated int32 scalar), e.g. for KL annealing.
    t_compile = time.perf_counter()
    params, opt_state, s, n = run.train_step(params, opt_state, factors, batch,
                                             jax.random.fold_in(state.rng, step), phase)
    if first:  # jit traces and compiles inside the first call.
      run.log(f"compiled the training step in {time.perf_counter() - t_compile:.1f}s "
              f"(epoch {epoch}, first batch)")
      first = False
    sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
    count = count + n
    step = step + 1
    bar.update()
  metrics = {k: float(v) / max(float(count), 1.0) for k, v in jax.device_get(sums or {}).items()}
  if not all(math.isfinite(v) for v in metrics.values()):
    raise FloatingPointError(
        f"epoch {epoch}: non-finite training metrics {metrics}; the last good "
        f"checkpoint (epoch {state.epoch}) is kept under {run.workdir / 'checkpoints'}")
  return params, opt_state, step, metrics


def _train_epoch(run: _Run, state: TrainState, first: dict) -> tuple[TrainState, dict]:
  """The block step (if any), then the gradient pass (if any), of epoch state.epoch + 1."""
  model, epoch = run.model, state.epoch + 1
  record: dict[str, Any] = {"epoch": epoch}
  params, opt_state, factors, step = state.params, state.opt_state, state.factors, state.step
  if model.block_step is not None:
    tb = time.perf_counter()
    if first["block"]:
      run.log(f"first closed-form block step (epoch {epoch}; it compiles its solvers)...")
    with Heartbeat(f"epoch {epoch}: block step", run.log, enabled=run.config.progress):
      factors = model.block_step(params, factors, run.aux, _block_key(state.rng, epoch))
      factors = jax.block_until_ready(shd.place_factors(model, params, factors, run.mesh))
    record["block_seconds"] = time.perf_counter() - tb
    if first["block"]:
      run.log(f"first block step done in {record['block_seconds']:.1f}s")
      first["block"] = False
  if run.train_step is not None:
    params, opt_state, step, record["train"] = _gradient_pass(
        run, state, params, opt_state, factors, epoch, first["step"])
    first["step"] = False
  state = state.replace(params=params, opt_state=opt_state, factors=factors, step=step,
                        epoch=epoch, best_is_current=False)
  return state, record


def _keep(run: _Run, state: TrainState, **best) -> TrainState:
  """`state` with its current parameters and factors as the best (copied when donated)."""
  params = _copy(state.params) if run.donates else state.params
  return state.replace(best_params=params, best_factors=state.factors, best_epoch=state.epoch,
                       best_is_current=True, **best)


def _validate(run: _Run, state: TrainState, record: dict) -> TrainState:
  """Evaluates on validation when due and keeps the best state by select_metric."""
  config, epoch = run.config, state.epoch
  if not run.evaluated:  # Nothing to select on: the current state is the chosen one.
    return _keep(run, state)
  if epoch % config.eval_every and epoch != run.epochs:
    return state
  val = run.evaluate((state.params, state.factors), run.split.validation,
                     f"epoch {epoch} validation")
  record["validation"] = val
  current = val[config.select_metric]
  if current > state.best_metric or val.get("users", 1) == 0:  # No one scored: keep the newest.
    return _keep(run, state, best_metric=float(current), bad_epochs=0)
  return state.replace(bad_epochs=state.bad_epochs + 1)


def _stopped(run: _Run, state: TrainState) -> bool:
  return run.config.patience > 0 and state.bad_epochs >= run.config.patience


def _log_epoch(run: _Run, record: dict) -> None:
  parts = [f"epoch {record['epoch']}/{run.epochs}"]
  if "train" in record:
    parts.append(_fmt(record["train"]))
  if "validation" in record:
    parts.append("val " + _fmt(record["validation"]))
  parts.append(f"({record['seconds']:.1f}s, peak {record['peak_host_memory_gb']:.1f} GB)")
  run.log(" ".join(parts))


def _train(run: _Run, state: TrainState, ckpt: Checkpointer | None,
           writer: MetricWriter) -> TrainState:
  """Epochs until `run.epochs` or an early stop, each recorded, checkpointed when due."""
  if state.epoch >= run.epochs or _stopped(run, state):
    return state
  _prepare(run)
  saved_at, first = time.perf_counter(), {"block": True, "step": True}
  while state.epoch < run.epochs and not _stopped(run, state):
    t0 = time.perf_counter()
    state, record = _train_epoch(run, state, first)
    state = _validate(run, state, record)
    record["seconds"] = time.perf_counter() - t0
    record["peak_host_memory_gb"] = _peak_rss_gb()
    last = state.epoch == run.epochs or _stopped(run, state)
    # The record first: a kill between the two leaves a record past the last checkpoint,
    # which the resume truncates and recomputes; the other order lost the epoch's record.
    writer.write(record)
    if ckpt is not None and (last or time.perf_counter() - saved_at >= run.config.checkpoint_every_s):
      ckpt.save(state)
      saved_at = time.perf_counter()
    _log_epoch(run, record)
    if _stopped(run, state):
      run.log(f"early stop: no {run.config.select_metric} improvement in "
              f"{run.config.patience} evaluations")
  return state


def _final_metrics(run: _Run, state: TrainState, best) -> dict:
  """results.json's content: the chosen state on validation and test (and cold items)."""
  split, config = run.split, run.config
  t0 = time.perf_counter()
  val = run.evaluate(best, split.validation, "validation (best)") if run.evaluated else None
  test = run.evaluate(best, split.test, "test") if split.test.n_users else None
  for name, metrics in (("validation", val), ("test", test)):
    if metrics is not None and metrics.get("users", 1) == 0:
      run.log(f"{name}: none of its {getattr(split, name).n_users} users has a held-out item to "
              f"score, so it has no metrics")
  val = val if val is not None and val.get("users", 1) else None
  test = test if test is not None and test.get("users", 1) else None
  results = {"validation": val, "test": test, "best_epoch": state.best_epoch,
             "epochs_run": state.epoch,
             "select_metric": config.select_metric if run.evaluated else None}
  if val is None and test is None:
    results["evaluation"] = ("none: no validation or test user with a held-out item "
                             f"(validation users {split.validation.n_users}, test users "
                             f"{split.test.n_users}); the state of the last epoch is kept")
  if config.cold_start and test is not None:
    candidates = cold_items(split)
    cold = run.evaluate(best, split.test, "test (cold items)", candidates=candidates)
    results["test_cold"] = {**cold, "items": int(candidates.sum())}
  results["eval_seconds"] = time.perf_counter() - t0
  results["run"] = run.info
  return results


def _export(run: _Run, state: TrainState, best, results: dict, ids) -> None:
  """Saves the chosen state with its raw ids under workdir/model (`recjax.train.artifact`)."""
  info, split = run.info, run.split
  users, items = split_ids(split)
  ids = ids or {}
  resolved = info.get("data", {}).get("resolved") or {}
  artifact.export(
      run.workdir, model=run.model, params=best[0], factors=best[1], train=split.train,
      item_ids=np.asarray(ids.get("items", items)), user_ids=np.asarray(ids.get("users", users)),
      info={"dataset": info.get("dataset"), "data_config": info.get("data_config"),
            "preprocessing": info.get("data", {}).get("resolved"),
            "protocol": getattr(split, "protocol", None),
            "orientation": getattr(split, "orientation", "users"),
            "input_values": artifact.input_values_of(str(getattr(split, "protocol", "")),
                                                     resolved.get("implicit_values")),
            "chosen_epoch": state.best_epoch, "epochs_run": state.epoch,
            "chosen_by": (f"best validation {run.config.select_metric}" if run.evaluated
                          else "last epoch (no validation users)"),
            "validation": results["validation"], "test": results["test"]})


def _finish(run: _Run, state: TrainState, ids) -> tuple[dict, Any]:
  """Evaluates the chosen state, exports it, writes results.json, logs the outcome."""
  model, log = run.model, run.log
  if model.schedule_report is not None and model.loss is not None:
    report = model.schedule_report(int(jax.device_get(state.step)), True)
    if report:
      log(report)
  best = (state.best_params, state.best_factors)
  if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(best)):
    raise ValueError(f"{run.workdir}: no epoch was trained, so there is no model to evaluate "
                     f"or export (epochs={run.epochs}); set epochs >= 1")
  results = _final_metrics(run, state, best)
  _export(run, state, best, results, ids)
  if distributed.is_primary():
    write_json(run.workdir / "results.json", results)
  val, test, cold = results["validation"], results["test"], results.get("test_cold")
  if val is not None:
    log(f"best epoch {state.best_epoch}: val {_fmt(val)}")
  if test is not None:
    log(f"test ({test['users']} users): {_fmt(test)}")
  else:
    log(f"no test evaluation; kept epoch {state.best_epoch}")
  if cold is not None:
    log(f"test, cold items only ({cold['items']} items, {cold['users']} users): "
        f"{_fmt({k: v for k, v in cold.items() if k != 'items'})}")
  log(f"model saved to {run.workdir / artifact.MODEL_DIR} "
      f"(query it: python -m experiments.recommend --workdir={run.workdir} --users=... --k=10)")
  return results, best


def train_and_evaluate(model: Model, split, config: TrainConfig, workdir: str | Path,
                       run_info: dict[str, Any] | None = None, log=print,
                       side: dict[str, Any] | None = None, return_state: bool = False,
                       ids: dict[str, np.ndarray] | None = None, overwrite: bool = False):
  """Trains `model` on `split.train`, selects on validation users, reports test users.

  Args:
    model: a `recjax.models.base.Model`.
    split: a split with ``train`` (csr) and ``validation``/``test`` eval sets whose
      class names their evaluation protocol (`recjax.eval.EVALUATORS`).
    config: `TrainConfig`.
    workdir: output directory (created); an existing checkpoint there is resumed.
    run_info: extra JSON-able description of the run (dataset, model config...)
      written to config.json and results.json.
    log: where the one-line-per-epoch progress goes.
    side: side information by name (e.g. ``item_content`` aligned with the
      split's item columns), passed to ``model.init`` and ``model.prepare`` for
      the keys in ``model.side_keys``.
    return_state: also return the best state (e.g. to read a model's item
      factors after the run).
    ids: raw ids for the exported model: ``{"users": [n_train_rows],
      "items": [n_items]}`` (default: the dataset-dense indices of the split).
    overwrite: discard whatever run the workdir holds instead of refusing a
      different experiment (see `recjax.train.workdir.check_workdir`).

  A workdir remembers its experiment: if it holds a run whose model, data or
  training settings differ, this raises `WorkdirMismatch` before any work.
  Without validation users (``heldout_users=0``: training on every user) the
  last epoch is kept and results.json says there was no evaluation.  The
  chosen state is exported to ``workdir/model/`` (see `recjax.train.artifact`).

  Returns:
    The dict written to results.json; with `return_state`, the pair (that
    dict, (best params, best factors)).
  """
  if not distributed.is_primary():  # One voice per run: process 0's.
    log, config = _silent, dataclasses.replace(config, progress=False)
  run = _build(model, split, config, workdir, run_info, side, overwrite, log)
  writer = MetricWriter(run.workdir, enabled=distributed.is_primary())
  ckpt = Checkpointer(run.workdir, config.keep_checkpoints, log=log) if config.checkpoint else None
  state = _initial_state(run, ckpt, writer)
  state = _train(run, state, ckpt, writer)
  results, best = _finish(run, state, ids)
  if ckpt is not None:
    ckpt.close()
  return (results, best) if return_state else results
