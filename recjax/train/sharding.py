"""The device mesh the runner builds: axes ``data`` (batches) and ``model`` (the item dimension).

The axis names and the placement helpers are `recjax.ops.mesh`'s (the lowest
layer that places arrays); this module builds the mesh from the run's
``n_devices`` and ``model_shards`` (a ``n_devices / model_shards`` x
``model_shards`` grid) and places a model's state by its ``partition``
(`place_state`, `place_factors`).  With ``model_shards`` = 1 (the default) the
``model`` axis has size 1: batches split over every device, parameters
replicated.  The same code runs on 1 device or N (CPU devices via
``JAX_NUM_CPU_DEVICES`` / ``--xla_force_host_platform_device_count``, or
accelerators).
"""

from __future__ import annotations

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recjax.ops import mesh as mesh_lib
from recjax.ops.mesh import DATA_AXIS, MODEL_AXIS, data_shards, place, replicate, replicated
from recjax.ops.mesh import row_sharded as batch_sharding

__all__ = ["DATA_AXIS", "MODEL_AXIS", "make_mesh", "check_model_shards", "batch_sharding",
           "replicated", "replicate", "round_up_to_devices", "state_specs", "place_state",
           "place_factors", "sharding_of", "batch_shardings", "state_shardings"]


def check_model_shards(n_devices: int, model_shards: int) -> None:
  """ValueError unless `model_shards` is a positive divisor of `n_devices`."""
  if not (isinstance(model_shards, int) and model_shards >= 1 and n_devices % model_shards == 0):
    raise ValueError(f"train: model_shards={model_shards} must divide the {n_devices} devices "
                     f"of the mesh (the mesh is n_devices/model_shards x model_shards); use "
                     f"one of {[d for d in range(1, n_devices + 1) if n_devices % d == 0]}")


def make_mesh(n_devices: int | None = None, model_shards: int = 1) -> Mesh:
  """A (n_devices / model_shards) x model_shards mesh, axes (data, model), over the first devices.

  `n_devices` defaults to every device (of every process); `model_shards` must
  divide it.  Consecutive devices share a ``data`` row (they hold the item
  shards of one replica).
  """
  available = len(jax.devices())
  n = available if n_devices is None else n_devices
  if not 1 <= n <= available:
    raise ValueError(f"asked for {n} devices, {available} available ({jax.devices()[0].platform})")
  check_model_shards(n, model_shards)
  # Auto axes: jit propagates the batch and parameter shardings through the step and
  # inserts the collectives (the gradient all-reduce over data, the item-axis reductions
  # over model); models need no sharding annotations inside their functions.
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((n // model_shards, model_shards), (DATA_AXIS, MODEL_AXIS),
                       devices=jax.devices()[:n], axis_types=(auto, auto))


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh's ``data`` axis size that is >= batch_size."""
  n = data_shards(mesh)
  return -(-batch_size // n) * n


def batch_shardings(batch: dict, mesh: Mesh) -> dict:
  """The sharding of each entry of a training batch (a dict of [B, ...] arrays).

  Every entry's rows are split over ``data`` (`batch_sharding`); the dense
  click rows ``batch["rows"]`` [B, I] (`recjax.data.batching.DenseRows`) also
  have their item columns split over ``model`` when it has several shards that
  divide I: on an item-sharded mesh each device then holds only its items'
  columns, which its [I, H] layer shard reads (measured by
  benchmarks/bench_item_shard.py: less memory and faster steps than a batch
  replicated over ``model``).
  """
  rows = batch_sharding(mesh)
  out = {k: rows for k in batch}
  m = mesh_lib.model_shards(mesh)
  dense = batch.get("rows")
  if m > 1 and dense is not None and dense.ndim == 2 and dense.shape[1] % m == 0:
    out["rows"] = NamedSharding(mesh, P(DATA_AXIS, MODEL_AXIS))
  return out


def state_specs(model, params, opt_state, factors):
  """PartitionSpec trees (or None: replicated) of params, opt_state and factors of `model`.

  From the model's ``partition(params, factors)`` (`recjax.models.base`); the
  optimizer state takes the specs of the parameters it mirrors (optax's
  `tree_map_params`), its other fields (step counts) are replicated.
  """
  partition = getattr(model, "partition", None)
  if partition is None:
    return None, None, None
  param_specs, factor_specs = partition(params, factors)
  opt_specs = None
  if param_specs is not None and model.optimizer is not None and opt_state:
    full = _expand(param_specs, params)
    opt_specs = optax.tree_map_params(model.optimizer, lambda _, spec: spec, opt_state, full,
                                      transform_non_params=lambda _: P(),
                                      is_leaf=lambda x: isinstance(x, P))
  return param_specs, opt_specs, factor_specs


def _expand(specs, tree):
  """`specs` (a prefix of `tree`) with one spec per leaf of `tree`."""
  return jax.tree.map(lambda spec, sub: jax.tree.map(lambda _: spec if spec is not None else P(),
                                                      sub),
                      specs, tree, is_leaf=lambda x: x is None or isinstance(x, P))


def place_state(model, params, opt_state, factors, mesh: Mesh | None):
  """(params, opt_state, factors) placed on `mesh` by the model's ``partition`` (default replicated)."""
  specs = state_specs(model, params, opt_state, factors)
  return tuple(place(t, s, mesh) for t, s in zip((params, opt_state, factors), specs))


def place_factors(model, params, factors, mesh: Mesh | None):
  """`factors` placed on `mesh` by the model's ``partition`` (default replicated)."""
  partition = getattr(model, "partition", None)
  return place(factors, None if partition is None else partition(params, factors)[1], mesh)


def state_shardings(model, params, factors, mesh: Mesh):
  """(params, factors) trees of NamedShardings by the model's ``partition`` (default replicated).

  The leaves of `params` and `factors` may be anything with a shape (arrays,
  `jax.ShapeDtypeStruct`, orbax's array metadata): e.g. to restore a saved
  state straight into its item-sharded layout.
  """
  partition = getattr(model, "partition", None)
  specs = (None, None) if partition is None else partition(params, factors)
  return tuple(mesh_lib.shardings(t, s, mesh) for t, s in zip((params, factors), specs))


def sharding_of(mesh: Mesh):
  """leaf -> its sharding: a placed array's (or a ShapeDtypeStruct's) own, else replicated on
  `mesh` (checkpoint restore into the layout `place_state` gave the template)."""
  rep = replicated(mesh)
  return lambda x: (x.sharding if isinstance(x, (jax.Array, jax.ShapeDtypeStruct))
                    and x.sharding is not None else rep)
