"""Builds a run from a plain-dict experiment description and hands it to the runner.

An experiment is a dict (from a config file in ``experiments/configs/`` and/or
command-line overrides)::

    {"model": "ease", "dataset": "ml-1m-lightgcn",
     "model_config": {"l2": 500.0},          # fields of the model's Config
     "data": {"heldout_users": 0.1},          # fields of recjax.data.pipeline.DataConfig
     "train": {"epochs": 1, "seed": 0}}       # fields of recjax.train.runner.TrainConfig

`split_overrides` sorts flat ``key=value`` overrides into those three groups by
field name (a ``model.``/``data.``/``train.`` prefix picks the group explicitly).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import time
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

from recjax.data import pipeline
from recjax.data import side as side_lib
from recjax.data.registry import load_dataset
from recjax.models import registry as model_registry
from recjax.train import runner
from recjax.train.runner import TrainConfig, train_and_evaluate

GROUPS = ("model", "data", "train")


def load_config_file(path: str) -> dict:
  """Imports a config module and returns its ``get_config()`` dict."""
  p = Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"config file {path} not found")
  spec = importlib.util.spec_from_file_location(f"recjax_config_{p.stem}", p)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path}: a config file must define get_config() -> dict")
  return module.get_config()


def _field_types(cls) -> dict[str, Any]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _parse_value(text: str, annotation, where: str):
  """Parses a command-line string into the type a config field declares."""
  args = typing.get_args(annotation)
  origin = typing.get_origin(annotation)
  if text.lower() in ("none", "null") and (annotation is type(None) or type(None) in args):
    return None
  if annotation is bool:
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"{where}: expected true/false, got {text!r}")
  if annotation is str:
    return text
  if annotation in (int, float):
    try:
      return annotation(text) if annotation is float else int(text)
    except ValueError:
      raise ValueError(f"{where}: expected {annotation.__name__}, got {text!r}") from None
  if origin in (typing.Union, types.UnionType):
    errors = []
    for a in args:
      if a is type(None):
        continue
      try:
        return _parse_value(text, a, where)
      except ValueError as e:
        errors.append(str(e))
    raise ValueError(f"{where}: {text!r} matches none of {annotation}")
  if origin is tuple:
    items = [t.strip() for t in text.split(",") if t.strip()]
    inner = args[0] if args else str
    return tuple(_parse_value(t, inner, where) for t in items)
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def split_overrides(model_name: str, overrides: list[str]) -> dict[str, dict[str, Any]]:
  """Sorts ``key=value`` strings into model/data/train groups, typed by their fields."""
  model_cls = model_registry.MODELS[model_name][0] if model_name in model_registry.MODELS else None
  tables = {"model": _field_types(model_cls) if model_cls else {},
            "data": _field_types(pipeline.DataConfig), "train": _field_types(TrainConfig)}
  out: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r}: expected key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    group = None
    if "." in key:
      group, key = key.split(".", 1)
      if group not in GROUPS:
        raise ValueError(f"override {item!r}: prefix must be one of {GROUPS}")
    else:
      owners = [g for g in GROUPS if key in tables[g]]
      if not owners:
        valid = {g: sorted(t) for g, t in tables.items()}
        hint = model_registry.did_you_mean(key, [f for t in tables.values() for f in t])
        raise ValueError(f"override {item!r}: no config field {key!r}{hint}; fields are {valid}")
      if len(owners) > 1:
        raise ValueError(f"override {item!r}: {key!r} is a field of the {' and the '.join(owners)} "
                         f"configs; say which with a prefix: "
                         + " or ".join(f"{g}.{key}={text.strip()}" for g in owners))
      group = owners[0]
    if key not in tables[group]:
      raise ValueError(f"override {item!r}: {group} config has no field {key!r}"
                       f"{model_registry.did_you_mean(key, tables[group])}; "
                       f"its fields: {sorted(tables[group])}")
    out[group][key] = _parse_value(text.strip(), tables[group][key], f"override {item!r}")
  return out


def build_experiment(config: str | None = None, model: str | None = None,
                     dataset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                     default_model: str | None = None, only_model: str | None = None) -> dict:
  """The experiment dict of a binary's flags: config file, then --model/--dataset, then --set.

  Shared by experiments/main.py, beta_select.py and crae_bleu.py.

  Args:
    config: path of an experiments/configs/*.py file (optional).
    model, dataset: override the config's.
    overrides: ``--set key=value`` strings (see `split_overrides`).
    default_model: the model when neither the config nor `model` names one.
    only_model: the one model this binary supports (an error names it otherwise).

  Raises:
    ValueError: a missing model or dataset, an unknown or unsupported model, a bad
      override; the message says which (binaries turn it into a usage error).
  """
  experiment = load_config_file(config) if config else {}
  if default_model:
    experiment.setdefault("model", default_model)
  if model:
    experiment["model"] = model
  if dataset:
    experiment["dataset"] = dataset
  for required in ("model", "dataset"):
    if not experiment.get(required):
      raise ValueError(f"--{required} is required (or a --config that sets it)")
  name = experiment["model"]
  if only_model is not None and name != only_model:
    raise ValueError(f"this binary runs model {only_model!r} only, got {name!r}")
  if name not in model_registry.list_models():
    raise ValueError(f"unknown model {name!r}"
                     f"{model_registry.did_you_mean(name, model_registry.list_models())}; "
                     f"valid models: {', '.join(model_registry.list_models())}")
  for group, values in split_overrides(name, list(overrides)).items():
    key = "model_config" if group == "model" else group
    experiment[key] = {**experiment.get(key, {}), **values}
  return experiment


# Data protocols (`pipeline.PROTOCOLS`) whose eval sets are not fold-in ranking; every other
# protocol (strong, given, strong-temporal*, random-P*, predefined splits) ranks items.
_EVALUATION_OF_PROTOCOL = {"loo-sampled": "sampled", "ratings": "rating", "ratings-items": "rating",
                           "sequence-tail": "sequence", "sequence-tail-novalid": "sequence"}


def evaluation_protocol(data_protocol: str) -> str:
  """The evaluation protocol ("ranking", "sampled", "rating") a data protocol leads to."""
  return _EVALUATION_OF_PROTOCOL.get(str(data_protocol), "ranking")


def _make_config(cls, values: dict, group: str):
  """``cls(**values)``; an unknown field is a one-line ValueError naming the valid ones."""
  if not isinstance(values, dict):
    raise ValueError(f"{group} config must be a dict of fields, got {values!r}")
  fields = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"{group} config has no field(s) {unknown}"
                     f"{model_registry.did_you_mean(unknown[0], fields)}; its fields: "
                     f"{sorted(fields)}")
  return cls(**values)


def run_experiment(experiment: dict, workdir: str, data_dir: str | None = None,
                   cache_dir: str | None = None, download: bool = True, log=print,
                   hidden_content=None, return_state: bool = False, overwrite: bool = False):
  """Loads the data, splits it, builds the model and runs train_and_evaluate.

  Args:
    hidden_content: optional callable `n_items -> bool [n_items]` over the split's
      item columns: those items' content rows are emptied before the model sees
      them (the CRAE paper's generation task trains baselines without 20% of the
      items' content).  Models with their own mechanism (CRAE's
      hidden_content_fraction) do not need it.
    return_state: return (results, (best params, best factors)), as
      `train_and_evaluate` does.
    overwrite: discard a different experiment's run in `workdir` instead of
      refusing it.
  """
  model_name = experiment["model"]
  # Every config is checked before any data is read (their __post_init__ and check_metrics).
  model = model_registry.get_model(model_name, experiment.get("model_config", {}))
  data_config = _make_config(pipeline.DataConfig, experiment.get("data", {}), "data")
  train_config = _make_config(TrainConfig, experiment.get("train", {}), "train")
  runner.check_metrics(train_config, evaluation_protocol(data_config.protocol))
  runner.check_devices(train_config.n_devices, train_config.model_shards)
  t0 = time.perf_counter()
  dataset = load_dataset(experiment["dataset"], data_dir=data_dir, cache_dir=cache_dir,
                         download=download)
  for note in getattr(dataset, "notes", ()):
    log(f"data {dataset.name}: {note}")
  split, data_info = pipeline.ranking_split(dataset, data_config)
  for conversion in data_info.get("conversions", ()):
    log(f"data {dataset.name}: {conversion}")
  log(f"data {dataset.name}: {data_info['summary']} ({time.perf_counter() - t0:.1f}s)")
  run_info = {"dataset": dataset.name, "data_config": dataclasses.asdict(data_config),
              "data": data_info}
  side = side_lib.side_information(dataset, split, model.side_keys, log)
  if hidden_content is not None and side.get("item_content") is not None:
    hidden = np.asarray(hidden_content(len(split.items)), bool)
    side["item_content"] = side_lib.hide_item_content(side["item_content"], hidden)
    run_info["hidden_content_items"] = int(hidden.sum())
    log(f"item_content: emptied for {int(hidden.sum())} items (hidden content)")
  rows, columns = runner.split_ids(split)
  inter = dataset.interactions
  by_items = getattr(split, "orientation", "users") == "items"  # I-AutoRec: rows are items.
  ids = {"users": (inter.item_ids if by_items else inter.user_ids)[rows],
         "items": (inter.user_ids if by_items else inter.item_ids)[columns]}
  return train_and_evaluate(model, split, train_config, workdir, run_info=run_info, log=log,
                            side=side, return_state=return_state, ids=ids, overwrite=overwrite)
