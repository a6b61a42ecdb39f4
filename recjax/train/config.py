"""How the runner trains and evaluates (`TrainConfig`) and the checks made before any work.

Every field of `TrainConfig` can be set from the command line (``--set
epochs=10``); `check_metrics` and `check_devices` refuse a run whose metrics
do not fit its evaluation protocol, or which asks for more devices than exist,
before any data is read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax

from recjax.eval import rating as rating_eval
from recjax.eval import sequence as sequence_eval
from recjax.models.base import check_config
from recjax.ops import ranking as ranking_ops
from recjax.train.sharding import check_model_shards
from recjax.train.workdir import previous_epochs
from recjax.train.writer import ensure_writable_dir


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the runner trains and evaluates; every field can be set from the command line."""

  epochs: int | None = None  # Epochs to run; None takes the model's default (1 for closed-form models).
  batch_size: int = 500  # Examples of the model's batch source (users, items, sequences) per optax step (rounded up to a multiple of the devices).
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
  n_devices: int | None = None  # Devices of the mesh; None uses all.
  model_shards: int = 1  # Devices the item dimension is split over (the mesh is n_devices/model_shards x model_shards; axes data, model): EASE's weights and the autoencoders' item layers with their optimizer state; must divide n_devices.
  progress: bool = True  # Progress bar inside epochs with several batches.
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
                                          "item_chunk": 1, "n_devices": 1, "model_shards": 1},
                 at_most={"seed": 2**32 - 1}, nonempty=("metrics",),
                 allow_inf=("checkpoint_every_s",))
    if not isinstance(self.select_metric, (str, type(None))):
      raise ValueError(f"train: select_metric must be a metric name (or None), "
                       f"got {self.select_metric!r}")
    if self.n_devices is not None:
      check_model_shards(self.n_devices, self.model_shards)
    metrics = tuple(dict.fromkeys(m.strip().lower() for m in self.metrics))
    object.__setattr__(self, "metrics", metrics)
    if self.select_metric is not None:
      object.__setattr__(self, "select_metric", self.select_metric.strip().lower())
    for name in metrics + ((self.select_metric,) if self.select_metric is not None else ()):
      if name not in rating_eval.METRICS + sequence_eval.METRICS:
        try:
          ranking_ops.parse_metric(name)
        except ValueError:
          field = "select_metric" if name == self.select_metric else "metrics"
          raise ValueError(
              f"train: {field}: unknown metric {name!r}; expected '<kind>@<k>' with k >= 1 and "
              f"kind one of {', '.join(ranking_ops.METRIC_KINDS)} (e.g. 'recall@20', "
              f"'ndcg@100'), a rating metric ({', '.join(rating_eval.METRICS)}) or a sequence "
              f"metric ({', '.join(sequence_eval.METRICS)})") from None


# The evaluation protocol of each eval-set class (`recjax.eval.EVALUATORS`), for `check_metrics`.
PROTOCOL_OF_EVAL_SET = {"EvalSet": "ranking", "SampledEvalSet": "sampled",
                        "RatingEvalSet": "rating", "SequenceEvalSet": "sequence"}
# Rating metrics that are better when lower: the runner keeps the epoch that MAXIMIZES
# select_metric, so these select on their negatives.
_LOWER_IS_BETTER = {"rmse": "neg_rmse", "mae": "neg_mae", "error": "neg_error"}
# Protocols whose metrics are a fixed list: (names, what is scored, a valid --set example).
_NAMED_METRICS = {
    "rating": (rating_eval.METRICS, "held-out ratings",
               "--set metrics=rmse,mae,neg_rmse --set select_metric=neg_rmse"),
    "sequence": (sequence_eval.METRICS, "next-item error of held-out tails",
                 "--set metrics=error,neg_error --set select_metric=neg_error"),
}


def check_metrics(config: TrainConfig, protocol: str, n_candidates: int | None = None,
                  n_items: int | None = None) -> None:
  """Raises a one-line ValueError unless every metric (and select_metric) fits `protocol`.

  Args:
    config: the run's TrainConfig.
    protocol: "ranking" (fold-in ranking: recall@K, ndcg@K...), "sampled" (one
      held-out item among sampled negatives: hr@K, ndcg@K...; K <= candidates)
      "rating" (rmse, mae, neg_rmse, neg_mae) or "sequence" (error, neg_error:
      next-item NLL of held-out tails).
    n_candidates: the sampled protocol's candidates per user, when known.
    n_items: the items a ranking ranks (the catalog), when known: K <= n_items.
  """
  metrics = tuple(config.metrics)
  select = config.select_metric if config.select_metric is not None else metrics[-1]
  if protocol in _NAMED_METRICS:
    valid, what, example = _NAMED_METRICS[protocol]
    bad = [m for m in metrics + (select,) if m not in valid]
    if bad:
      raise ValueError(
          f"train: metric {bad[0]!r} does not apply to this run's {protocol} protocol ({what}); "
          f"valid: {', '.join(valid)} (e.g. {example})")
    if select in _LOWER_IS_BETTER:
      raise ValueError(
          f"train: select_metric {select!r} is better when lower, but the best epoch is the one "
          f"that maximizes select_metric; use {_LOWER_IS_BETTER[select]!r}")
    return
  if protocol not in ("ranking", "sampled"):
    raise ValueError(f"check_metrics: unknown protocol {protocol!r}")
  for m in metrics + (select,):
    field = "select_metric" if m == select and m not in metrics else "metrics"
    if m in rating_eval.METRICS + sequence_eval.METRICS:
      kind = "rating" if m in rating_eval.METRICS else "sequence"
      raise ValueError(
          f"train: {field}: {m!r} is a {kind} metric, but this run's protocol ranks items "
          f"({protocol}); use ranking metrics such as recall@20, ndcg@100"
          + (", hr@10" if protocol == "sampled" else ""))
    kind, k = ranking_ops.parse_metric(m)
    if protocol == "sampled" and kind in ranking_ops.TRAIN_TEST_KINDS:
      raise ValueError(f"train: {field}: {m!r} ranks the whole catalog with the training items "
                       f"(the CVAE authors' evaluatePaper.m); the sampled protocol ranks one "
                       f"held-out item among sampled negatives: use hr@K or ndcg@K")
    if protocol == "sampled" and n_candidates is not None and k > n_candidates:
      raise ValueError(f"train: {field}: {m!r} needs k <= {n_candidates}, the candidates each "
                       f"user's held-out item is ranked among (sampled protocol)")
    if protocol == "ranking" and n_items is not None and k > n_items:
      raise ValueError(f"train: {field}: {m!r} ranks the top {k} items, but the catalog has "
                       f"{n_items}; use a cutoff <= {n_items} (e.g. --set metrics=recall@"
                       f"{min(20, n_items)},ndcg@{n_items})")


def check_devices(n_devices: int | None, model_shards: int = 1) -> None:
  """ValueError unless `n_devices` (TrainConfig.n_devices) is None or at most the devices present,
  and `model_shards` divides the devices the mesh will have."""
  available = jax.devices()
  if n_devices is None:
    check_model_shards(len(available), model_shards)
    return
  check_model_shards(n_devices, model_shards)
  if n_devices > len(available):
    raise ValueError(f"train: n_devices={n_devices}, but there {'is' if len(available) == 1 else 'are'} "
                     f"only {len(available)} {available[0].platform} device"
                     f"{'' if len(available) == 1 else 's'} (leave n_devices unset to use all)")


def resolve_run(model, split, config: TrainConfig, workdir: Path, side: dict, overwrite: bool,
                log) -> tuple[Any, TrainConfig, int]:
  """Checks everything that can be checked before any work; resolves epochs, metrics, schedules."""
  missing = [k for k in model.side_keys if side.get(k) is None]
  if missing:
    raise ValueError(f"model {model.name!r} needs side information {missing}; "
                     f"this dataset provides {sorted(k for k, v in side.items() if v is not None)}")
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
  check_devices(config.n_devices, config.model_shards)
  ensure_writable_dir(workdir)
  if config.select_metric is None:
    config = dataclasses.replace(config, select_metric=config.metrics[-1])
  elif config.select_metric not in config.metrics:
    config = dataclasses.replace(config, metrics=tuple(config.metrics) + (config.select_metric,))
  if model.with_run_length is not None and model.loss is not None:
    # Schedules defined in updates (Mult-VAE's β) follow the run's length.  The length is that
    # of the run that started this workdir (a resumed run with more epochs derives the same).
    length_epochs = epochs if overwrite else previous_epochs(workdir, model.name, epochs)
    resolved = model.with_run_length(split.train, config.batch_size, length_epochs)
    before, after = dataclasses.asdict(model.config), dataclasses.asdict(resolved.config)
    changed = {k: after[k] for k in after if before.get(k) != after[k]}
    if changed:
      log(f"{model.name}: derived from the run's length ({length_epochs} epochs of batches of "
          f"{config.batch_size}): " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    model = resolved
  return model, config, epochs
