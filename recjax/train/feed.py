"""The epoch's training batches, built on the host and placed on the run's mesh.

The model's batch source (`recjax.data.batching.BatchSource`) builds each
epoch's batches; `epoch_batches` places them: rows split over ``data``, the
dense click rows [B, I] also split over ``model`` on an item-sharded mesh
(`sharding.batch_shardings`).  In a multi-process run each process builds only
the rows of every batch that its own devices hold, when the source can cut its
batches (``local_epoch``, e.g. `DenseRows`), and the global batch is assembled
from those process-local pieces; otherwise every process builds the whole batch
(the same one everywhere: its order is a function of seed and epoch) and
places its part of it.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import numpy as np

from recjax.train import distributed
from recjax.train import sharding as shd


def global_batch_size(batch_size: int, mesh) -> int:
  """`batch_size` rounded up so that every row shard of the mesh gets as many rows."""
  return shd.round_up_to_devices(batch_size, mesh)


def host_batches(source, train, aux, batch_size: int, epoch: int, seed: int,
                 window: tuple[int, int] | None = None) -> tuple[int, Iterator[dict]]:
  """(n_batches, host batches) of `epoch`; with `window`, each cut to those rows."""
  if window is not None:
    return source.local_epoch(train, aux, batch_size, epoch, seed, window)
  return source.epoch(train, aux, batch_size, epoch, seed)


def _from_rows(v: np.ndarray, sharding, lo: int, n_rows: int) -> jax.Array:
  """The global [n_rows, ...] array of which `v` holds rows lo..lo+len(v)-1, the ones this
  process's devices hold under `sharding`."""
  def piece(index):
    rows = index[0]
    start = (rows.start or 0) - lo
    stop = (n_rows if rows.stop is None else rows.stop) - lo
    return v[(slice(start, stop),) + tuple(index[1:])]
  return jax.make_array_from_callback((n_rows,) + v.shape[1:], sharding, piece)


def epoch_batches(model, train, aux: Any, batch_size: int, epoch: int, seed: int,
                  mesh) -> tuple[int, Iterator[dict]]:
  """(n_batches, iterator of `epoch`'s batches as global arrays on `mesh`)."""
  batch_size = global_batch_size(batch_size, mesh)
  source = model.batch_source
  window = distributed.process_rows(shd.batch_sharding(mesh), batch_size)
  if window is None or not hasattr(source, "local_epoch"):
    n, batches = host_batches(source, train, aux, batch_size, epoch, seed)
    return n, (jax.device_put(b, shd.batch_shardings(b, mesh)) for b in batches)
  n, batches = host_batches(source, train, aux, batch_size, epoch, seed, window)

  def place(b):
    shardings = shd.batch_shardings({k: _Shape(v, batch_size) for k, v in b.items()}, mesh)
    return {k: _from_rows(v, shardings[k], window[0], batch_size) for k, v in b.items()}
  return n, (place(b) for b in batches)


class _Shape:
  """A process-local piece seen with its global shape (what `batch_shardings` reads)."""

  def __init__(self, v: np.ndarray, n_rows: int):
    self.shape, self.ndim = (n_rows,) + v.shape[1:], v.ndim
