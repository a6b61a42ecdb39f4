"""The one device-mesh vocabulary of the zoo: axis ``data``, replicated and row-split arrays.

Every mesh here is 1-D with axis `DATA_AXIS`: batches (and ALS rows) are split
over it, parameters and fixed factors replicated.  `recjax.ops` is the lowest
layer that places arrays on a mesh, so the names live here and the layers
above (`recjax.train`) import them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def n_devices(mesh: Mesh | None) -> int:
  """Devices of `mesh`; 1 without one."""
  return 1 if mesh is None else mesh.devices.size


def check_mesh(mesh: Mesh | None) -> None:
  """ValueError unless `mesh` is None or 1-D with axis `DATA_AXIS`."""
  if mesh is not None and tuple(mesh.axis_names) != (DATA_AXIS,):
    raise ValueError(f"expected a 1-D mesh with axis {DATA_AXIS!r}, got {mesh.axis_names}")


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def row_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (row) axis split over `DATA_AXIS`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh | None):
  """Every array of `tree` replicated on `mesh` (None leaves stay None; no mesh: jnp arrays).

  ``may_alias``: an array already on the right devices keeps its buffer and
  only gains the mesh sharding, instead of a transient copy (6.7 GB for EASE's
  41k x 41k weights).  `jax.ShapeDtypeStruct` leaves pass through unchanged.
  """
  def put(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    if mesh is None:
      return jnp.asarray(x)
    return jax.device_put(x, replicated(mesh), may_alias=True)
  return jax.tree.map(put, tree)


def shard_rows(x, mesh: Mesh | None):
  """`x` with its leading axis split over the mesh (no mesh: a jnp array)."""
  if mesh is None:
    return jnp.asarray(x)
  return jax.device_put(x, row_sharded(mesh))
