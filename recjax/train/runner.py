"""The runner: closed-form block steps and optax gradient steps, epoch by epoch.

The runner knows no model by name.  Per epoch it runs the model's block step
(if any), then one pass of jitted optax steps over shuffled, fixed-shape
training batches (if the model has a loss: the training user rows, or the
batches of the model's own `batches` hook, e.g. item content), evaluates on the validation users,
keeps the best state by ``select_metric``, checkpoints, and stops early after
``patience`` epochs without improvement.  At the end it evaluates the best
state on the test users and writes ``results.json``.

Outputs under ``workdir``: ``config.json``, ``metrics.jsonl`` (one record per
epoch), ``results.json`` (``{"validation": {...}, "test": {...}, ...}``) and
``checkpoints/`` (orbax).  Re-running the same command resumes from the last
checkpoint and ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import batching
from recjax.eval import evaluate as evaluate_protocol
from recjax.eval import rating as rating_eval
from recjax.models.base import Model, check_config, gradient_update
from recjax.ops import ranking as ranking_ops
from recjax.train import artifact
from recjax.train import sharding as shd
from recjax.train.checkpoint import Checkpointer
from recjax.train.progress import Heartbeat, ProgressBar
from recjax.train.state import TrainState
from recjax.train.writer import MetricWriter, ensure_writable_dir, write_json


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the runner trains and evaluates; every field can be set from the command line."""

  epochs: int | None = None  # Epochs to run; None takes the model's default (1 for closed-form models).
  batch_size: int = 500  # Training users (or items of a model's `batches`) per optax step (rounded up to a multiple of the devices).
  eval_batch_size: int = 500  # Users per evaluation batch.
  metrics: tuple[str, ...] = ("recall@20", "recall@50", "ndcg@100")  # Reported metrics.
  select_metric: str | None = None  # Validation metric that picks the best epoch; None: the last of `metrics`.
  patience: int = 0  # Stop after this many evaluations without improvement; 0 never stops early.
  eval_every: int = 1  # Evaluate on validation users every this many epochs (and at the last).
  seed: int = 0  # Seeds parameters, dropout and batch order (the split has its own seed).
  checkpoint: bool = True  # Save checkpoints (see checkpoint_every_s) and resume from the latest.
  checkpoint_every_s: float = 60.0  # Save after an epoch once this many seconds passed since the last save (0: every epoch); always after the last epoch and at an early stop.
  keep_checkpoints: int = 2  # How many checkpoints orbax keeps.
  item_chunk: int | None = None  # Reduce scores to top-k in item chunks of this size.
  n_devices: int | None = None  # Devices on the mesh's data axis; None uses all.
  progress: bool = True  # Progress bar inside epochs with several batches.
  group_by_length: bool = False  # Padded-batch models: batch rows of similar length (less padding, but batches are no longer uniformly random; see batching.length_grouped_order).
  exclude_fold_in: bool = True  # Remove fold-in items from the ranking; False ranks every item, fold-in items too.
  cold_start: bool = False  # Also report test metrics on cold items only (no interaction in training or any fold-in): they alone are ranked and counted as held out ("test_cold" in results.json).

  def __post_init__(self):
    """Checks every field (types and ranges) and the metric names; lower-cases the metrics.

    Which metrics the run's evaluation protocol accepts is checked by
    `check_metrics` once the protocol is known (before any data is read in
    `experiments.train.run_experiment`, and again before training).
    """
    check_config(self, "train", at_least={"epochs": 1, "batch_size": 1, "eval_batch_size": 1,
                                          "patience": 0, "eval_every": 1, "seed": 0,
                                          "checkpoint_every_s": 0.0, "keep_checkpoints": 1,
                                          "item_chunk": 1, "n_devices": 1},
                 at_most={"seed": 2**32 - 1}, nonempty=("metrics",),
                 allow_inf=("checkpoint_every_s",))
    if not isinstance(self.select_metric, (str, type(None))):
      raise ValueError(f"train: select_metric must be a metric name (or None), "
                       f"got {self.select_metric!r}")
    metrics = tuple(dict.fromkeys(m.strip().lower() for m in self.metrics))
    object.__setattr__(self, "metrics", metrics)
    if self.select_metric is not None:
      object.__setattr__(self, "select_metric", self.select_metric.strip().lower())
    for name in metrics + ((self.select_metric,) if self.select_metric is not None else ()):
      if name not in rating_eval.METRICS:
        try:
          ranking_ops.parse_metric(name)
        except ValueError:
          field = "select_metric" if name == self.select_metric else "metrics"
          raise ValueError(
              f"train: {field}: unknown metric {name!r}; expected '<kind>@<k>' with k >= 1 and "
              f"kind one of {', '.join(ranking_ops.METRIC_KINDS)} (e.g. 'recall@20', "
              f"'ndcg@100'), or a rating metric ({', '.join(rating_eval.METRICS)})") from None


# The evaluation protocol of each eval-set class (`recjax.eval.EVALUATORS`), for `check_metrics`.
PROTOCOL_OF_EVAL_SET = {"EvalSet": "ranking", "SampledEvalSet": "sampled",
                        "RatingEvalSet": "rating"}
# Rating metrics that are better when lower: the runner keeps the epoch that MAXIMIZES
# select_metric, so these select on their negatives.
_LOWER_IS_BETTER = {"rmse": "neg_rmse", "mae": "neg_mae"}


def check_metrics(config: TrainConfig, protocol: str, n_candidates: int | None = None,
                  n_items: int | None = None) -> None:
  """Raises a one-line ValueError unless every metric (and select_metric) fits `protocol`.

  Args:
    config: the run's TrainConfig.
    protocol: "ranking" (fold-in ranking: recall@K, ndcg@K...), "sampled" (one
      held-out item among sampled negatives: hr@K, ndcg@K...; K <= candidates)
      or "rating" (rmse, mae, neg_rmse, neg_mae).
    n_candidates: the sampled protocol's candidates per user, when known.
    n_items: the items a ranking ranks (the catalog), when known: K <= n_items.
  """
  metrics = tuple(config.metrics)
  select = config.select_metric if config.select_metric is not None else metrics[-1]
  if protocol == "rating":
    bad = [m for m in metrics + (select,) if m not in rating_eval.METRICS]
    if bad:
      raise ValueError(
          f"train: metric {bad[0]!r} does not apply to this run's rating protocol (held-out "
          f"ratings); valid: {', '.join(rating_eval.METRICS)} (e.g. --set metrics=rmse,mae,"
          f"neg_rmse --set select_metric=neg_rmse)")
    if select in _LOWER_IS_BETTER:
      raise ValueError(
          f"train: select_metric {select!r} is better when lower, but the best epoch is the one "
          f"that maximizes select_metric; use {_LOWER_IS_BETTER[select]!r}")
    return
  if protocol not in ("ranking", "sampled"):
    raise ValueError(f"check_metrics: unknown protocol {protocol!r}")
  for m in metrics + (select,):
    field = "select_metric" if m == select and m not in metrics else "metrics"
    if m in rating_eval.METRICS:
      raise ValueError(
          f"train: {field}: {m!r} is a rating metric, but this run's protocol ranks items "
          f"({protocol}); use ranking metrics such as recall@20, ndcg@100"
          + (", hr@10" if protocol == "sampled" else ""))
    _, k = ranking_ops.parse_metric(m)
    if protocol == "sampled" and n_candidates is not None and k > n_candidates:
      raise ValueError(f"train: {field}: {m!r} needs k <= {n_candidates}, the candidates each "
                       f"user's held-out item is ranked among (sampled protocol)")
    if protocol == "ranking" and n_items is not None and k > n_items:
      raise ValueError(f"train: {field}: {m!r} ranks the top {k} items, but the catalog has "
                       f"{n_items}; use a cutoff <= {n_items} (e.g. --set metrics=recall@"
                       f"{min(20, n_items)},ndcg@{n_items})")


def check_devices(n_devices: int | None) -> None:
  """ValueError unless `n_devices` (TrainConfig.n_devices) is None or at most the devices present."""
  if n_devices is None:
    return
  available = jax.devices()
  if n_devices > len(available):
    raise ValueError(f"train: n_devices={n_devices}, but there {'is' if len(available) == 1 else 'are'} "
                     f"only {len(available)} {available[0].platform} device"
                     f"{'' if len(available) == 1 else 's'} (leave n_devices unset to use all)")


def _replicate(tree, sharding):
  """Places every array replicated on the mesh.

  ``may_alias``: an array already on the right devices keeps its buffer and only
  gains the mesh sharding (so jitted steps see one input type from the first
  call on), instead of a transient copy -- 6.7 GB for EASE's 41k x 41k weights.
  """
  def put(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.device_put(x, sharding, may_alias=True)
  return jax.tree.map(put, tree)


def _copy(tree):
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else jnp.copy(x), tree)


def _peak_rss_gb() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _block_key(rng, epoch: int):
  """Block-step keys: a stream of their own, apart from the per-step keys fold_in(rng, step)."""
  return jax.random.fold_in(jax.random.fold_in(rng, 0x7FFFFFFF), epoch)


def make_train_step(model: Model, donate: bool = True):
  """The jitted optimization step of `model`: its own ``update`` or `gradient_update`.

  ``step(params, opt_state, factors, batch, key, phase) -> (params, opt_state,
  sums, n)``; with `donate` the parameters and optimizer state are donated (the
  runner); benchmarks pass ``donate=False`` to call it repeatedly on one state.
  """
  update = model.update or gradient_update(model.loss, model.optimizer)
  return jax.jit(update, donate_argnums=(0, 1) if donate else ())


def _score_fn(model: Model):
  def score(state, inputs):
    params, factors = state
    return model.score(params, factors, inputs)
  return score


def cold_items(split) -> np.ndarray:
  """[n_items] bool: the items with no interaction in training or in any fold-in row.

  Their held-out interactions are the cold-start test: a model can only reach
  them from side information (e.g. item content).
  """
  seen = np.asarray(sp.csr_matrix(split.train).getnnz(axis=0)) > 0
  for eval_set in (split.validation, split.test):
    fold_in = getattr(eval_set, "fold_in", None)
    if fold_in is not None:
      seen |= np.asarray(sp.csr_matrix(fold_in).getnnz(axis=0)) > 0
  return ~seen


def _fmt(metrics: dict) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "users")


class WorkdirMismatch(ValueError):
  """A workdir holds a different experiment than the one asked for."""


# TrainConfig fields that change how a run goes, not what it computes: a workdir
# may be resumed with other values.  `epochs` is checked on its own (it may grow).
RUNTIME_FIELDS = ("epochs", "progress", "checkpoint", "checkpoint_every_s", "keep_checkpoints",
                  "n_devices", "eval_batch_size", "item_chunk")
# Files a run owns under its workdir (removed by `overwrite`).
RUN_FILES = ("config.json", "metrics.jsonl", "results.json", "checkpoints", artifact.MODEL_DIR,
             artifact.MODEL_DIR + ".tmp", artifact.MODEL_DIR + ".old")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def experiment_identity(info: dict[str, Any]) -> dict[str, Any]:
  """What makes two runs the same experiment, flattened to ``group.field`` keys.

  Everything config.json records except the devices, the data summary (its
  counts are checked through train_shape/train_nnz) and `RUNTIME_FIELDS`.
  """
  info = json.loads(json.dumps(info, default=str))  # The JSON view (tuples -> lists), as on disk.
  ident = {k: v for k, v in info.items() if k not in ("devices", "data")}
  ident["train_config"] = {k: v for k, v in ident.get("train_config", {}).items()
                           if k not in RUNTIME_FIELDS}
  return _flatten(ident)


def _short(value: Any) -> str:
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


def check_workdir(workdir: Path, info: dict[str, Any], epochs: int, overwrite: bool, log) -> None:
  """Refuses a workdir that holds another experiment; clears it when `overwrite`.

  Raises:
    WorkdirMismatch: one line naming what differs and how to proceed.
  """
  present = [f for f in RUN_FILES if (workdir / f).exists()]
  if not present:
    return
  if overwrite:
    for f in present:
      target = workdir / f
      shutil.rmtree(target) if target.is_dir() else target.unlink()
    log(f"overwrite: removed the previous run's {', '.join(present)} from {workdir}")
    return
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise WorkdirMismatch(
        f"{workdir} holds {', '.join(present)} but no config.json, so its experiment is "
        f"unknown; use a fresh --workdir, or pass --overwrite to discard what is there")
  try:
    old = json.loads(config_path.read_text())
  except ValueError:
    raise WorkdirMismatch(f"{config_path} is not valid JSON; use a fresh --workdir or pass "
                          f"--overwrite") from None
  before, now = experiment_identity(old), experiment_identity(info)
  if before.get("model") != now.get("model"):  # Another model: its config fields say nothing more.
    before = {k: v for k, v in before.items() if not k.startswith("model_config.")}
    now = {k: v for k, v in now.items() if not k.startswith("model_config.")}
  diffs = [f"{k}: {_short(before.get(k, '<unset>'))} -> {_short(now.get(k, '<unset>'))}"
           for k in sorted(set(before) | set(now)) if before.get(k, "<unset>") != now.get(k, "<unset>")]
  if diffs:
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    raise WorkdirMismatch(
        f"{workdir} was made by a different experiment ({shown}); use a fresh --workdir, or "
        f"pass --overwrite (overwrite=True) to discard it")
  old_epochs = old.get("train_config", {}).get("epochs")
  if isinstance(old_epochs, int) and epochs > old_epochs:
    log(f"epochs raised from {old_epochs} to {epochs}: training this workdir further")


def _previous_epochs(workdir: Path, model_name: str, epochs: int) -> int:
  """The epochs of the run that made `workdir` (same model), else `epochs`."""
  try:
    old = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError):
    return epochs
  old_epochs = old.get("train_config", {}).get("epochs") if isinstance(old, dict) else None
  if old.get("model") == model_name and isinstance(old_epochs, int) and old_epochs >= 1:
    return old_epochs
  return epochs


def _scorable(eval_set) -> bool:
  """Whether evaluating `eval_set` scores anyone: users, and (ranking) a held-out item."""
  held_out = getattr(eval_set, "held_out", None)
  if isinstance(held_out, sp.spmatrix) or hasattr(held_out, "nnz"):
    return eval_set.n_users > 0 and held_out.nnz > 0
  return eval_set.n_users > 0


def split_ids(split) -> tuple[np.ndarray, np.ndarray]:
  """Dataset-dense index of each training row and each column of ``split.train``.

  Rows are users and columns items, except for a RatingSplit oriented by items
  (I-AutoRec), whose rows are items and columns users.
  """
  if hasattr(split, "train_users"):
    return np.asarray(split.train_users), np.asarray(split.items)
  return np.asarray(split.row_ids), np.asarray(split.column_ids)


def train_and_evaluate(model: Model, split, config: TrainConfig, workdir: str | Path,
                       run_info: dict[str, Any] | None = None, log=print,
                       side: dict[str, Any] | None = None, return_state: bool = False,
                       ids: dict[str, np.ndarray] | None = None, overwrite: bool = False):
  """Trains `model` on `split.train`, selects on validation users, reports test users.

  Args:
    model: a `recjax.models.base.Model`.
    split: a `recjax.data.splits.RankingSplit` (train matrix, validation and test
      `EvalSet`s of fold-in / held-out rows).
    config: `TrainConfig`.
    workdir: output directory (created); an existing checkpoint there is resumed.
    run_info: extra JSON-able description of the run (dataset, model config...)
      written to config.json and results.json.
    log: where the one-line-per-epoch progress goes.
    side: side information by name (e.g. ``item_content`` aligned with the
      split's item columns), passed to ``model.prepare`` for the keys in
      ``model.side_keys``.
    return_state: also return the best state (e.g. to read a model's item
      factors after the run).
    ids: raw ids for the exported model: ``{"users": [n_train_rows],
      "items": [n_items]}`` (default: the dataset-dense indices of the split).
    overwrite: discard whatever run the workdir holds instead of refusing a
      different experiment (see `check_workdir`).

  A workdir remembers its experiment: if it holds a run whose model, data or
  training settings differ, this raises `WorkdirMismatch` before any work.
  Without validation users (``heldout_users=0``: training on every user) the
  last epoch is kept and results.json says there was no evaluation.  The
  chosen state is exported to ``workdir/model/`` (see `recjax.train.artifact`).

  Returns:
    The dict written to results.json; with `return_state`, the pair (that
    dict, (best params, best factors)).
  """
  side = dict(side or {})
  missing = [k for k in model.side_keys if side.get(k) is None]
  if missing:
    raise ValueError(f"model {model.name!r} needs side information {missing}; "
                     f"this dataset provides {sorted(k for k, v in side.items() if v is not None)}")
  workdir = Path(workdir)
  epochs = config.epochs if config.epochs is not None else model.train_defaults.get("epochs", 1)
  if not (isinstance(epochs, int) and epochs >= 1):
    raise ValueError(f"train: epochs must be an integer >= 1, got {epochs!r}")
  eval_kind = PROTOCOL_OF_EVAL_SET.get(type(split.validation).__name__)
  if eval_kind is not None and (split.validation.n_users or split.test.n_users):
    # Before any work, not after the first epoch (no evaluated user: the metrics are unused).
    items = getattr(split.validation, "items", None)
    check_metrics(config, eval_kind, n_candidates=(
        int(items.shape[1]) if eval_kind == "sampled" and getattr(items, "ndim", 0) == 2 else None),
        n_items=int(split.train.shape[1]))
  check_devices(config.n_devices)
  ensure_writable_dir(workdir)
  if config.select_metric is None:
    config = dataclasses.replace(config, select_metric=config.metrics[-1])
  elif config.select_metric not in config.metrics:
    config = dataclasses.replace(config, metrics=tuple(config.metrics) + (config.select_metric,))
  if model.with_run_length is not None and model.loss is not None:
    # Schedules defined in updates (Mult-VAE's β) follow the run's length.  The length is that
    # of the run that started this workdir (a resumed run with more epochs derives the same).
    length_epochs = epochs if overwrite else _previous_epochs(workdir, model.name, epochs)
    resolved = model.with_run_length(split.train, config.batch_size, length_epochs)
    before, after = dataclasses.asdict(model.config), dataclasses.asdict(resolved.config)
    changed = {k: after[k] for k in after if before.get(k) != after[k]}
    if changed:
      log(f"{model.name}: derived from the run's length ({length_epochs} epochs of batches of "
          f"{config.batch_size}): " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    model = resolved
  mesh = shd.make_mesh(config.n_devices)
  rep = shd.replicated(mesh)
  batch_sh = shd.batch_sharding(mesh)
  train = split.train
  info = {"model": model.name, "model_config": dataclasses.asdict(model.config),
          "train_config": dataclasses.asdict(dataclasses.replace(config, epochs=epochs)),
          "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
          "train_shape": list(train.shape), "train_nnz": int(train.nnz),
          "validation_users": int(split.validation.n_users),
          "test_users": int(split.test.n_users), **(run_info or {})}
  check_workdir(workdir, info, epochs, overwrite, log)
  write_json(workdir / "config.json", info)
  evaluated = _scorable(split.validation)
  if not evaluated:
    why = (f"none of the {split.validation.n_users} validation users has a held-out item to "
           f"score" if split.validation.n_users else "no validation users")
    log(f"{why}: nothing to select on, the last epoch is kept"
        + ("" if _scorable(split.test) else " and there is no evaluation (training on every user)"))

  key = jax.random.PRNGKey(config.seed)
  # Models that train on side information (a `batches` hook) size their networks from it.
  init_side = {k: side[k] for k in model.side_keys}
  params, factors = model.init(jax.random.fold_in(key, 0), train, **init_side)
  opt_state = model.optimizer.init(params) if model.loss is not None else {}
  params, opt_state, factors = (_replicate(t, rep) for t in (params, opt_state, factors))
  state = TrainState.create(params, opt_state, factors, config.seed)
  donates = model.loss is not None
  if donates:  # best_params must not alias the buffers the first step donates (eval_every > 1).
    state = state.replace(best_params=_copy(state.params))

  writer = MetricWriter(workdir)
  ckpt = Checkpointer(workdir, config.keep_checkpoints, log=log) if config.checkpoint else None
  if ckpt is not None and ckpt.latest_epoch() is not None:
    try:
      state = ckpt.restore(state, rep)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:  # orbax: tree/shape mismatch.
      raise WorkdirMismatch(
          f"{ckpt.directory}: the checkpoint of epoch {ckpt.latest_epoch()} does not fit this "
          f"model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); use a fresh --workdir, "
          f"or pass --overwrite to discard it") from None
    if donates and state.best_is_current:
      state = state.replace(best_params=_copy(state.params))
    writer.truncate_after(state.epoch)
    best_text = (f"best {config.select_metric}={state.best_metric:.4f} at epoch {state.best_epoch}"
                 if evaluated else "no validation: the last epoch is kept")
    log(f"resumed from {ckpt.directory} at epoch {state.epoch} ({best_text})")
  else:
    writer.truncate_after(0)

  score_fn = _score_fn(model)
  eval_extra = {} if config.exclude_fold_in else {"exclude_fold_in": False}  # Ranking protocol only.
  def evaluate(st, eval_set, label="eval", **kw):
    bar = None

    def on_batch(done, total):
      nonlocal bar
      if bar is None:
        bar = ProgressBar(total, label, enabled=config.progress)
      bar.update()

    return evaluate_protocol(
        score_fn, st, eval_set, metrics=tuple(config.metrics), batch_size=config.eval_batch_size,
        item_chunk=config.item_chunk, sharding=batch_sh, on_batch=on_batch, **eval_extra, **kw)

  aux_data = None
  stopped = config.patience > 0 and state.bad_epochs >= config.patience
  if state.epoch < epochs and not stopped:
    if model.prepare is not None:
      t0 = time.perf_counter()
      aux_data = model.prepare(train, **{k: side[k] for k in model.side_keys})
      log(f"prepared host-side data in {time.perf_counter() - t0:.1f}s")
    train_step = make_train_step(model) if model.loss is not None else None
    batch_size = shd.round_up_to_devices(config.batch_size, mesh)
    n_batches = batching.n_batches(train.shape[0], batch_size)
    if model.schedule_report is not None and train_step is not None:
      planned_batches = model.batch_source.epoch(train, aux_data, batch_size, 1, config.seed)[0]
      report = model.schedule_report(epochs * planned_batches, False)
      if report:
        log(report)

  saved_at = time.perf_counter()
  first_block = first_step = True
  while state.epoch < epochs and not stopped:
    epoch = state.epoch + 1
    t0 = time.perf_counter()
    record: dict[str, Any] = {"epoch": epoch}
    params, opt_state, factors, step = state.params, state.opt_state, state.factors, state.step
    if model.block_step is not None:
      tb = time.perf_counter()
      if first_block:
        log(f"first closed-form block step (epoch {epoch}; it compiles its solvers)...")
      with Heartbeat(f"epoch {epoch}: block step", log, enabled=config.progress):
        factors = model.block_step(params, factors, aux_data, _block_key(state.rng, epoch))
        factors = jax.block_until_ready(_replicate(factors, rep))
      record["block_seconds"] = time.perf_counter() - tb
      if first_block:
        log(f"first block step done in {record['block_seconds']:.1f}s")
        first_block = False
    if train_step is not None:
      epoch_batches, source = model.batch_source.epoch(train, aux_data, batch_size, epoch,
                                                       config.seed)
      phase = {"epoch": jnp.int32(epoch),
               **{k: jnp.asarray(v, jnp.int32 if isinstance(v, (int, np.integer)) else jnp.float32)
                  for k, v in (model.phase(epoch) if model.phase is not None else {}).items()}}
      bar = ProgressBar(epoch_batches, f"epoch {epoch}", enabled=config.progress)
      sums, count = None, jnp.zeros(())
      for batch in source:
        batch = jax.device_put(batch, batch_sh)
        phase["step"] = step  # optax updates so far (a replicated int32 scalar), e.g. for KL annealing.
        key_t = jax.random.fold_in(state.rng, step)
        if first_step:
          t_compile = time.perf_counter()
        params, opt_state, s, n = train_step(params, opt_state, factors, batch, key_t, phase)
        if first_step:  # jit traces and compiles inside the first call.
          log(f"compiled the training step in {time.perf_counter() - t_compile:.1f}s "
              f"(epoch {epoch}, first batch)")
          first_step = False
        sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
        count = count + n
        step = step + 1
        bar.update()
      train_metrics = {k: float(v) / max(float(count), 1.0) for k, v in jax.device_get(sums).items()}
      if not all(math.isfinite(v) for v in train_metrics.values()):
        raise FloatingPointError(
            f"epoch {epoch}: non-finite training metrics {train_metrics}; the last good "
            f"checkpoint (epoch {state.epoch}) is kept under {workdir / 'checkpoints'}")
      record["train"] = train_metrics
    state = state.replace(params=params, opt_state=opt_state, factors=factors, step=step,
                          epoch=epoch, best_is_current=False)
    if not evaluated:  # Nothing to select on: the current state is the chosen one.
      state = state.replace(best_params=_copy(params) if donates else params,
                            best_factors=factors, best_epoch=epoch, best_is_current=True)
    elif epoch % config.eval_every == 0 or epoch == epochs:
      val = evaluate((params, factors), split.validation, f"epoch {epoch} validation")
      record["validation"] = val
      current = val[config.select_metric]
      if current > state.best_metric or val.get("users", 1) == 0:  # No one scored: keep the newest.
        best_params = _copy(params) if donates else params
        state = state.replace(best_params=best_params, best_factors=factors,
                              best_metric=float(current), best_epoch=epoch, bad_epochs=0,
                              best_is_current=True)
      else:
        state = state.replace(bad_epochs=state.bad_epochs + 1)
      stopped = config.patience > 0 and state.bad_epochs >= config.patience
    record["seconds"] = time.perf_counter() - t0
    record["peak_host_memory_gb"] = _peak_rss_gb()
    last = epoch == epochs or stopped
    # The record first: a kill between the two leaves a record past the last checkpoint,
    # which the resume truncates and recomputes; the other order lost the epoch's record.
    writer.write(record)
    if ckpt is not None and (last or time.perf_counter() - saved_at >= config.checkpoint_every_s):
      ckpt.save(state)
      saved_at = time.perf_counter()
    parts = [f"epoch {epoch}/{epochs}"]
    if "train" in record:
      parts.append(_fmt(record["train"]))
    if "validation" in record:
      parts.append("val " + _fmt(record["validation"]))
    parts.append(f"({record['seconds']:.1f}s, peak {record['peak_host_memory_gb']:.1f} GB)")
    log(" ".join(parts))
    if stopped:
      log(f"early stop: no {config.select_metric} improvement in {config.patience} evaluations")

  if model.schedule_report is not None and model.loss is not None:
    report = model.schedule_report(int(jax.device_get(state.step)), True)
    if report:
      log(report)
  best = (state.best_params, state.best_factors)
  if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(best)):
    raise ValueError(f"{workdir}: no epoch was trained, so there is no model to evaluate "
                     f"or export (epochs={epochs}); set epochs >= 1")
  t0 = time.perf_counter()
  val = evaluate(best, split.validation, "validation (best)") if evaluated else None
  test = evaluate(best, split.test, "test") if split.test.n_users else None
  for name, metrics in (("validation", val), ("test", test)):
    if metrics is not None and metrics.get("users", 1) == 0:
      log(f"{name}: none of its {getattr(split, name).n_users} users has a held-out item to "
          f"score, so it has no metrics")
  val = val if val is not None and val.get("users", 1) else None
  test = test if test is not None and test.get("users", 1) else None
  cold = None
  if config.cold_start and test is not None:
    candidates = cold_items(split)
    cold = evaluate(best, split.test, "test (cold items)", candidates=candidates)
    cold["items"] = int(candidates.sum())
  results = {"validation": val, "test": test, "best_epoch": state.best_epoch,
             "epochs_run": state.epoch, "select_metric": config.select_metric if evaluated else None,
             "eval_seconds": time.perf_counter() - t0, "run": info}
  if val is None and test is None:
    results["evaluation"] = ("none: no validation or test user with a held-out item "
                             f"(validation users {split.validation.n_users}, test users "
                             f"{split.test.n_users}); the state of the last epoch is kept")
  if cold is not None:
    results["test_cold"] = cold
  run = info
  users, items = split_ids(split)
  ids = ids or {}
  artifact.export(
      workdir, model=model, params=best[0], factors=best[1], train=train,
      item_ids=np.asarray(ids.get("items", items)), user_ids=np.asarray(ids.get("users", users)),
      info={"dataset": run.get("dataset"), "data_config": run.get("data_config"),
            "preprocessing": run.get("data", {}).get("resolved"),
            "protocol": getattr(split, "protocol", None),
            "orientation": getattr(split, "orientation", "users"),
            "input_values": artifact.input_values_of(
                str(getattr(split, "protocol", "")),
                (run.get("data", {}).get("resolved") or {}).get("implicit_values")),
            "chosen_epoch": state.best_epoch, "epochs_run": state.epoch,
            "chosen_by": (f"best validation {config.select_metric}" if evaluated
                          else "last epoch (no validation users)"),
            "validation": val, "test": test})
  write_json(workdir / "results.json", results)
  if val is not None:
    log(f"best epoch {state.best_epoch}: val {_fmt(val)}")
  if test is not None:
    log(f"test ({test['users']} users): {_fmt(test)}")
  else:
    log(f"no test evaluation; kept epoch {state.best_epoch}")
  if cold is not None:
    log(f"test, cold items only ({cold['items']} items, {cold['users']} users): "
        f"{_fmt({k: v for k, v in cold.items() if k != 'items'})}")
  log(f"model saved to {workdir / artifact.MODEL_DIR} "
      f"(query it: python -m experiments.recommend --workdir={workdir} --users=... --k=10)")
  if ckpt is not None:
    ckpt.close()
  return (results, best) if return_state else results
