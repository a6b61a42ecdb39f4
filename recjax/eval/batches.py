"""What the batched evaluation protocols (ranking, rating, sampled) share.

Each protocol walks its users in fixed-size batches, builds each batch's dense
inputs from sparse rows on the host, places them on the devices (split by rows
when a sharding is given) and adds the batch's metric sums to totals kept on
the device.  This module holds those common parts: the metric-name
normalisation, the batch placement, dense row batches, and the running totals
and their means.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

import jax
import numpy as np
import scipy.sparse as sp
from jax.sharding import NamedSharding, PartitionSpec

from recjax.ops import mesh as mesh_lib
from recjax.ops import ranking as ranking_ops
from recjax.ops.mesh import MODEL_AXIS


def metric_names(metrics: Iterable[str]) -> tuple[str, ...]:
  """`metrics` stripped, lower-cased and without repeats, in their first order."""
  return tuple(dict.fromkeys(m.strip().lower() for m in metrics))


def data_shards(sharding: NamedSharding) -> int:
  """How many ways `sharding` splits the leading (row) axis."""
  spec = tuple(sharding.spec)
  axes = spec[0] if spec else None
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(sharding.mesh.shape[a] for a in axes)


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a protocol's batches go.

  Attributes:
    batch_size: rows per batch, rounded up to a multiple of the row shards.
    full: puts an array with the given sharding itself (dense [B, I] inputs).
    rows: puts an array split along its leading (row) axis only, any rank.
    replicated: puts an array on every device whole (totals, candidates).
    items: puts a [B, I] array with its rows split as `full` does and, on a mesh
      with a ``model`` axis (an item-sharded model), its item columns split over
      it, so each device holds only the columns of its own items (I not a
      multiple of the shards: as `full`).
  """
  batch_size: int
  full: Callable[[Any], jax.Array]
  rows: Callable[[Any], jax.Array]
  replicated: Callable[[Any], jax.Array]
  items: Callable[[Any], jax.Array] | None = None

  def __post_init__(self):
    if self.items is None:
      object.__setattr__(self, "items", self.full)


class LazyRows:
  """``matrix[rows]`` as a dense [batch_size, n_cols] batch (zero rows below), densified only
  where it is read: `np.asarray` builds all of it; indexing with slices (what
  `jax.make_array_from_callback` asks for each device) builds those rows only.
  """

  def __init__(self, matrix: sp.csr_matrix, rows: np.ndarray, batch_size: int, dtype=None):
    self.matrix, self.rows, self.batch_size = matrix, np.asarray(rows), batch_size
    self.dtype = np.dtype(matrix.dtype if dtype is None else dtype)
    self.shape = (batch_size, matrix.shape[1])

  def __getitem__(self, index) -> np.ndarray:
    index = index if isinstance(index, tuple) else (index,)
    start, stop, _ = index[0].indices(self.batch_size)
    block = dense_rows(self.matrix, self.rows[start:min(stop, len(self.rows))], stop - start,
                       self.dtype)
    return block[(slice(None),) + tuple(index[1:])]

  def __array__(self, dtype=None, copy=None):
    out = dense_rows(self.matrix, self.rows, self.batch_size, self.dtype)
    return out if dtype is None else out.astype(dtype)


def _put(x, sharding: NamedSharding) -> jax.Array:
  """`x` placed by `sharding`; a `LazyRows` batch bound for a mesh of several processes has
  each process densify only the rows its devices hold."""
  if isinstance(x, LazyRows):
    if not sharding.is_fully_addressable:
      return jax.make_array_from_callback(x.shape, sharding, x.__getitem__)
    x = np.asarray(x)
  return jax.device_put(x, sharding)


def placement(sharding: NamedSharding | None, batch_size: int) -> Placement:
  """The `Placement` of batches of `batch_size` rows: plain `device_put` without a sharding."""
  if sharding is None:
    def local(x):
      return jax.device_put(np.asarray(x) if isinstance(x, LazyRows) else x)
    return Placement(batch_size, local, jax.device_put, jax.device_put)
  shards = data_shards(sharding)
  row_sharding = NamedSharding(sharding.mesh, PartitionSpec(*tuple(sharding.spec)[:1]))
  replicated = NamedSharding(sharding.mesh, PartitionSpec())
  model_shards = mesh_lib.model_shards(sharding.mesh)
  item_sharding = None if model_shards == 1 else NamedSharding(
      sharding.mesh, PartitionSpec(*tuple(sharding.spec)[:1], MODEL_AXIS))

  def items(x):
    if item_sharding is not None and x.shape[-1] % model_shards == 0:
      return _put(x, item_sharding)
    return _put(x, sharding)

  return Placement(batch_size=-(-batch_size // shards) * shards,
                   full=lambda x: _put(x, sharding),
                   rows=lambda x: jax.device_put(x, row_sharding),
                   replicated=lambda x: jax.device_put(x, replicated), items=items)


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, batch_size: int,
               dtype=None) -> np.ndarray:
  """`matrix[rows]` as a dense [batch_size, n_cols] array, zero-padded at the bottom."""
  out = np.zeros((batch_size, matrix.shape[1]), matrix.dtype if dtype is None else dtype)
  matrix[rows].toarray(out=out[:len(rows)])
  return out


def zero_totals(metrics: tuple[str, ...], put: Callable[[Any], jax.Array]) -> dict:
  """Device totals of per-user metric sums: float32 zeros per metric, int32 ``"users"``
  (and ``"users_train_test"`` when a metric is divided by it: `ranking_ops.denominator`)."""
  totals = {m: np.zeros((), np.float32) for m in metrics}
  for key in {"users", *(ranking_ops.denominator(m) for m in metrics)}:
    totals[key] = np.zeros((), np.int32)
  return jax.tree.map(put, totals)


def mean_metrics(totals: dict, metrics: tuple[str, ...]) -> dict[str, float]:
  """Fetches `totals` and returns {metric: mean per user (NaN without users), "users": n}.

  Each metric is divided by its own count (`ranking_ops.denominator`);
  ``"users_train_test"`` is returned too when a metric used it.
  """
  totals = jax.device_get(totals)
  counts = {key: int(totals[key]) for key in totals if key.startswith("users")}
  result = {}
  for m in metrics:
    n = counts[ranking_ops.denominator(m)]
    result[m] = float(totals[m]) / n if n else float("nan")
  result.update(counts)
  if all(ranking_ops.denominator(m) != "users" for m in metrics):
    # Only recall_train_test asked for: "users" (which callers read as "anyone scored?")
    # is the count those metrics were averaged over.
    result["users"] = counts["users_train_test"]
  return result
