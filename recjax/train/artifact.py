"""A finished run as a self-contained model: ``workdir/model/``.

The runner writes it after the last epoch, before ``results.json``; everything a
query needs is in it, the training data is never read again:

* ``model.json`` -- what the model is: its registry name and config, the
  dataset and the preprocessing that was applied (resolved `DataConfig`,
  protocol), how an input row is encoded (``input_values``: "binary",
  "counts", "time_rank" or "rating"), the epoch chosen and why.
* ``ids.json`` -- the raw id of every item column and of every training row,
  as read from the user's file (ints stay ints, strings stay strings).
* ``train.npz`` -- the training rows (scipy csr, values as the model saw
  them): a known user is scored by folding in its own row, and its items are
  excluded from its recommendations.
* ``state/`` -- the chosen ``{"params", "factors"}`` as an orbax checkpoint.

The directory is written under a temporary name and renamed when complete, so
a run killed while exporting leaves either the previous model or none.

`load` returns a `TrainedModel`: the model's pure functions and its state as
plain, immutable values, placed replicated on a mesh of the local devices.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import scipy.sparse as sp

from recjax.models.base import Model
from recjax.train import distributed
from recjax.train import sharding as shd
from recjax.train.checkpoint import quiet_refused_writes
from recjax.train.writer import (DiskWriteError, disk_errno, is_space, reason, write_json,
                                 writing)

FORMAT = "recjax-model"
VERSION = 1
MODEL_DIR = "model"


class ModelLoadError(ValueError):
  """A directory is not a finished recjax model; the message says why and what to do."""


def input_values_of(protocol: str, implicit_values: str | None = None) -> str:
  """How the protocol encodes a user's row: what a new user's history must become.

  "binary" (clicks 1.0), "counts" (``implicit_values="counts"``: summed
  counts), "time_rank" (1-based ranks in time order) or "rating".
  """
  if protocol == "strong-temporal-ordered":
    return "time_rank"  # 1-based time ranks (SVAE rebuilds the order from them).
  if protocol in ("ratings", "ratings-items"):
    return "rating"
  return "counts" if implicit_values == "counts" else "binary"


def _ids_jsonable(ids: np.ndarray) -> list:
  ids = np.asarray(ids)
  if ids.dtype.kind in "iu":
    return [int(x) for x in ids]
  return [str(x) for x in ids]


def export(workdir: str | Path, *, model: Model, params: Any, factors: Any, train: sp.spmatrix,
           item_ids: np.ndarray, user_ids: np.ndarray, info: dict[str, Any]) -> Path:
  """Writes ``workdir/model/`` atomically; returns its path.

  Args:
    model: the trained model (its name and config are recorded).
    params, factors: the chosen state.
    train: [n_train_rows, n_items] csr, the training rows as the model saw them.
    item_ids: raw id of each item column; user_ids: raw id of each training row.
    info: the rest of model.json (dataset, data config, protocol, epochs...).
  """
  workdir = Path(workdir).absolute()
  train = sp.csr_matrix(train)
  if len(item_ids) != train.shape[1] or len(user_ids) != train.shape[0]:
    raise ValueError(f"export: {len(user_ids)} user ids / {len(item_ids)} item ids for a "
                     f"{train.shape[0]} x {train.shape[1]} training matrix")
  final = workdir / MODEL_DIR
  tmp = workdir / (MODEL_DIR + ".tmp")
  # Several processes (a multi-process run): process 0 writes the files, every process takes
  # part in the orbax save of the state (its own shards of it), process 0 renames.
  primary = distributed.is_primary()
  if primary:
    _write_files(tmp, model, train, item_ids, user_ids, info)
  distributed.barrier("recjax: export files")
  _save_state(tmp, final, workdir, params, factors)
  distributed.barrier("recjax: export state")
  if primary:
    old = workdir / (MODEL_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
      final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
  distributed.barrier("recjax: export renamed")
  return final


def _write_files(tmp: Path, model: Model, train, item_ids, user_ids, info) -> None:
  """model.json, ids.json and train.npz into a fresh `tmp`."""
  shutil.rmtree(tmp, ignore_errors=True)
  with writing(tmp):
    tmp.mkdir(parents=True)
  meta = {"format": FORMAT, "version": VERSION, "model": model.name,
          "model_config": dataclasses.asdict(model.config),
          "n_items": int(train.shape[1]), "n_users": int(train.shape[0]),
          "item_vectors": model.item_vectors_doc if model.item_vectors is not None else None,
          **info}
  write_json(tmp / "model.json", meta)
  write_json(tmp / "ids.json", {"items": _ids_jsonable(item_ids), "users": _ids_jsonable(user_ids)})
  with writing(tmp / "train.npz"):
    sp.save_npz(tmp / "train.npz", train, compressed=True)


def _save_state(tmp: Path, final: Path, workdir: Path, params, factors) -> None:
  """The chosen state as an orbax checkpoint under `tmp`/state (a refused write: one line)."""
  try:
    with quiet_refused_writes():  # A full disk: one line, not orbax's background tracebacks.
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(tmp / "state", {"params": params, "factors": factors})
      checkpointer.wait_until_finished()
      checkpointer.close()
  except Exception as e:  # pylint: disable=broad-except
    code = disk_errno(e)
    if code is None:
      raise
    shutil.rmtree(tmp, ignore_errors=True)
    todo = "free space" if is_space(code) else f"make {workdir} writable"
    raise DiskWriteError(code, f"{reason(code)} while exporting the model to {final}; the "
                         f"checkpoints are kept; {todo} and rerun the same command to finish",
                         str(final)) from None


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A loaded model: pure functions and plain values.

  Attributes:
    model: the registry `Model` (its ``score`` and ``item_vectors``).
    params, factors: the chosen state, replicated on ``mesh`` (factors with the
      model's ``serving_factors`` added, if it has them).
    mesh: the device mesh queries run on (batches split over its data axis).
    info: model.json.
    item_ids: [n_items] raw id of each item column.
    user_ids: [n_train_rows] raw id of each training row.
    train: [n_train_rows, n_items] csr of the training rows.
    popularity: [n_items] float32, training users per item (the fallback for
      an empty history).
    item_index, user_index: raw id (as text) -> item column / training row.
  """

  model: Model
  params: Any
  factors: Any
  mesh: Any
  info: dict
  item_ids: np.ndarray
  user_ids: np.ndarray
  train: sp.csr_matrix
  popularity: np.ndarray
  item_index: dict = dataclasses.field(default_factory=dict, repr=False)
  user_index: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def n_items(self) -> int:
    return int(self.train.shape[1])

  @property
  def input_values(self) -> str:
    return self.info.get("input_values", "binary")


def model_dir(path: str | Path) -> Path:
  """``path/model`` for a workdir, ``path`` itself for a model directory; or a clear error."""
  path = Path(path)
  if not path.exists():
    raise ModelLoadError(f"{path}: no such directory")
  if (path / "model.json").is_file():
    return path
  if (path / MODEL_DIR / "model.json").is_file():
    return path / MODEL_DIR
  if (path / "checkpoints").is_dir() or (path / "config.json").is_file():
    epochs = ""
    try:
      config = json.loads((path / "config.json").read_text())
      epochs = f" of {config['train_config']['epochs']} epochs"
    except (OSError, ValueError, KeyError, TypeError):
      pass
    raise ModelLoadError(
        f"{path}: this workdir holds an unfinished run (no model/ yet{epochs}); run the same "
        f"training command again to finish it (it resumes from its last checkpoint)")
  raise ModelLoadError(f"{path}: not a recjax workdir or model directory (no model/model.json)")


def _ids(values: list) -> np.ndarray:
  if all(isinstance(v, int) for v in values):
    return np.asarray(values, dtype=np.int64)
  return np.asarray([str(v) for v in values], dtype=object)


def load(path: str | Path, n_devices: int | None = None) -> TrainedModel:
  """Loads a finished run (a workdir or its ``model/`` directory).

  Args:
    path: the workdir of a finished run, or its model directory.
    n_devices: devices of the query mesh (None: all local devices).

  Raises:
    ModelLoadError: not a model, an unfinished run, a newer format, or a model
      name or config this recjax does not know; the message says which.
  """
  from recjax.models import registry  # pylint: disable=import-outside-toplevel

  directory = model_dir(path).absolute()  # orbax reads relative paths as nothing.
  try:
    info = json.loads((directory / "model.json").read_text())
  except ValueError as e:
    raise ModelLoadError(f"{directory / 'model.json'}: not valid JSON ({e})") from None
  if info.get("format") != FORMAT:
    raise ModelLoadError(f"{directory / 'model.json'}: not a recjax model file")
  if int(info.get("version", 0)) > VERSION:
    raise ModelLoadError(f"{directory}: model format version {info['version']} is newer than this "
                         f"recjax reads ({VERSION}); upgrade recjax")
  name = info["model"]
  config = dict(info["model_config"])
  try:
    config_cls = registry.MODELS[name][0]
  except KeyError:
    raise ModelLoadError(f"{directory}: model {name!r} is not in this recjax's registry") from None
  hints = {f.name: f.type for f in dataclasses.fields(config_cls)}
  for k, v in config.items():  # JSON turns tuples into lists.
    if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
      config[k] = tuple(v)
  try:
    model = registry.get_model(name, config)
  except (TypeError, ValueError) as e:
    raise ModelLoadError(f"{directory}: its {name} config does not build here: {e}") from None
  ids = json.loads((directory / "ids.json").read_text())
  train = sp.csr_matrix(sp.load_npz(directory / "train.npz"))
  mesh = shd.make_mesh(n_devices)
  replicated = shd.replicated(mesh)
  checkpointer = ocp.StandardCheckpointer()
  try:
    metadata = checkpointer.metadata(directory / "state").item_metadata
    if metadata is None:
      raise FileNotFoundError("no orbax item metadata")
    tree = metadata.tree
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated),
                            tree)
    state = checkpointer.restore(directory / "state", abstract)
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise ModelLoadError(f"{directory / 'state'}: the model state cannot be read ({e})") from None
  finally:
    checkpointer.close()
  popularity = np.asarray((train != 0).sum(axis=0), np.float32).ravel()
  factors = state["factors"]
  if model.serving_factors is not None:  # Derived once here, not once a query (e.g. b·VᵀV).
    factors = jax.jit(model.serving_factors)(state["params"], factors)
  return TrainedModel(model=model, params=state["params"], factors=factors, mesh=mesh,
                      info=info, item_ids=_ids(ids["items"]), user_ids=_ids(ids["users"]),
                      train=train, popularity=popularity,
                      item_index={str(i): c for c, i in enumerate(ids["items"])},
                      user_index={str(u): r for r, u in enumerate(ids["users"])})


def split_ids(split) -> tuple[np.ndarray, np.ndarray]:
  """Dataset-dense index of each training row and each column of ``split.train``.

  Rows are users and columns items, except for a RatingSplit oriented by items
  (I-AutoRec), whose rows are items and columns users.
  """
  if hasattr(split, "train_users"):
    return np.asarray(split.train_users), np.asarray(split.items)
  return np.asarray(split.row_ids), np.asarray(split.column_ids)
