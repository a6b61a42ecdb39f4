"""Train from a scipy.sparse user x item matrix and get a loadable model back.

For people who come from `implicit`: no dataset registry, no split to build.
Every user trains (``heldout_users=0``), nothing is evaluated unless asked
for, and the run is an ordinary workdir (resumable, refuses a different
experiment) whose ``model/`` `load` reads.
"""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Any

import numpy as np
import scipy.sparse as sp

from recjax.data import pipeline
from recjax.data.types import Dataset, Interactions
from recjax.models import registry
from recjax.train import runner
from recjax.train.artifact import TrainedModel, load


def _ids(ids, n: int, what: str) -> np.ndarray:
  if ids is None:
    return np.arange(n, dtype=np.int64)
  ids = np.asarray(ids)
  if ids.shape != (n,):
    raise ValueError(f"fit: {what}_ids has shape {ids.shape}, the matrix has {n} {what}s")
  if len(np.unique(ids)) != n:
    raise ValueError(f"fit: {what}_ids has repeated ids")
  return ids if ids.dtype.kind in "iu" else ids.astype(str).astype(object)


def fit(matrix: sp.spmatrix, model: str = "wmf", *, workdir: str | None = None,
        config: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None, user_ids=None, item_ids=None,
        item_content: sp.spmatrix | None = None, overwrite: bool = False, log=print
        ) -> TrainedModel:
  """Trains `model` on every row of `matrix` and returns the loaded result.

  Args:
    matrix: users x items; stored entries are interactions (clicks, counts or
      ratings; explicit ratings are binarized only if ``data`` asks, e.g.
      ``{"binarize_threshold": 4}``).
    model: a registry name (`recjax.models.registry.list_models()`).
    workdir: where the run and its model live (default: a new temp dir, printed).
    config: model config overrides; train: `TrainConfig` overrides; data:
      `DataConfig` overrides (default: no held-out users, no binarization).
    user_ids, item_ids: raw ids of the rows / columns (default 0..n-1).
    item_content: optional items x words matrix for hybrid models (rows follow
      the columns of `matrix`).
    overwrite: discard a different run in `workdir`.

  Returns:
    The `TrainedModel` exported to ``workdir/model``.
  """
  matrix = sp.csr_matrix(matrix)
  n_users, n_items = matrix.shape
  coo = matrix.tocoo()
  if coo.nnz == 0:
    raise ValueError("fit: the matrix has no stored entry")
  inter = Interactions(users=coo.row.astype(np.int64), items=coo.col.astype(np.int64),
                       values=coo.data.astype(np.float32), timestamps=None,
                       user_ids=_ids(user_ids, n_users, "user"),
                       item_ids=_ids(item_ids, n_items, "item"), duplicate_rule="sum",
                       name="matrix")
  dataset = Dataset(name="matrix", interactions=inter, kind="implicit")
  data_config = pipeline.DataConfig(**{"heldout_users": 0, "binarize_threshold": None,
                                       **(data or {})})
  split, data_info = pipeline.ranking_split(dataset, data_config)
  for conversion in data_info.get("conversions", ()):
    log(f"fit: {conversion}")
  dropped = n_items - split.train.shape[1]
  if dropped:
    log(f"fit: {dropped} item columns have no interaction in the training rows and are not "
        f"items of the model")
  m = registry.get_model(model, config or {})
  train_config = runner.TrainConfig(**{"progress": False, **(train or {})})
  side = {}
  if item_content is not None:
    side["item_content"] = sp.csr_matrix(item_content)[split.items]
  if workdir is None:
    workdir = tempfile.mkdtemp(prefix=f"recjax-{model}-")
    log(f"fit: workdir {workdir}")
  rows, columns = runner.split_ids(split)
  runner.train_and_evaluate(
      m, split, train_config, workdir, log=log, side=side, overwrite=overwrite,
      ids={"users": inter.user_ids[rows], "items": inter.item_ids[columns]},
      run_info={"dataset": "matrix", "data_config": dataclasses.asdict(data_config),
                "data": data_info})
  return load(workdir)
