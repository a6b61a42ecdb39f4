"""The device mesh: one axis, ``data``; batches split over it, parameters replicated.

The same code runs on 1 device or N (CPU devices via ``JAX_NUM_CPU_DEVICES`` /
``--xla_force_host_platform_device_count``, or accelerators); multi-host runs
call ``jax.distributed.initialize()`` before building the mesh.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(n_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `n_devices` devices (all of them by default)."""
  available = len(jax.devices())
  n = available if n_devices is None else n_devices
  if not 1 <= n <= available:
    raise ValueError(f"asked for {n} devices, {available} available ({jax.devices()[0].platform})")
  # Auto axes: jit propagates the batch sharding through the step and inserts the
  # gradient all-reduce; models need no sharding annotations of their own.
  return jax.make_mesh((n,), (DATA_AXIS,), devices=jax.devices()[:n],
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (row) axis split over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh size that is >= batch_size."""
  n = mesh.devices.size
  return -(-batch_size // n) * n


def replicate(tree, sharding: NamedSharding):
  """Places every array of `tree` replicated with `sharding` (shape-only leaves pass through).

  ``may_alias``: an array already on the right devices keeps its buffer and only
  gains the mesh sharding (so jitted steps see one input type from the first
  call on), instead of a transient copy -- 6.7 GB for EASE's 41k x 41k weights.
  """
  def put(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.device_put(x, sharding, may_alias=True)
  return jax.tree.map(put, tree)
