"""The device mesh the runner builds: one axis, ``data``; batches split over it, parameters replicated.

The axis name and the placement helpers are `recjax.ops.mesh`'s (the lowest
layer that places arrays); this module only builds the mesh from the run's
``n_devices``.  The same code runs on 1 device or N (CPU devices via
``JAX_NUM_CPU_DEVICES`` / ``--xla_force_host_platform_device_count``, or
accelerators).
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh

from recjax.ops.mesh import DATA_AXIS, replicate, replicated
from recjax.ops.mesh import row_sharded as batch_sharding

__all__ = ["DATA_AXIS", "make_mesh", "batch_sharding", "replicated", "replicate",
           "round_up_to_devices"]


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


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh size that is >= batch_size."""
  n = mesh.devices.size
  return -(-batch_size // n) * n
