"""The one device-mesh vocabulary of the zoo: axes ``data`` and ``model``, and array placement.

A mesh here has the axes (`DATA_AXIS`, `MODEL_AXIS`) (the runner's, from
`recjax.train.sharding.make_mesh`) or only `DATA_AXIS` (older callers, tests):

* ``data`` splits batches (user rows, ALS rows): ``P(DATA_AXIS)`` names it alone,
  so the same spec holds on both kinds of mesh, each row block replicated over
  ``model``;
* ``model`` splits the item dimension of the arrays that grow with the catalog
  (EASE's weight columns, an autoencoder's [I, H] and [H, I] layers and output
  bias, their optimizer state): `item_rows` and `item_cols` are the specs of an
  array whose leading or trailing axis is the item axis.

With ``model`` = 1 every spec that names ``model`` is a replica, so one code path
serves both layouts.  `recjax.ops` is the lowest layer that places arrays on a
mesh, so the names live here and the layers above (`recjax.train`) import them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"
# The axis names a mesh of the zoo may have (`check_mesh`).
MESH_AXES = ((DATA_AXIS,), (DATA_AXIS, MODEL_AXIS))


def n_devices(mesh: Mesh | None) -> int:
  """Devices of `mesh`; 1 without one."""
  return 1 if mesh is None else mesh.devices.size


def data_shards(mesh: Mesh | None) -> int:
  """Size of the mesh's ``data`` axis (1 without a mesh)."""
  return 1 if mesh is None else int(mesh.shape[DATA_AXIS])


def model_shards(mesh: Mesh | None) -> int:
  """Size of the mesh's ``model`` axis (1 without a mesh or without that axis)."""
  return 1 if mesh is None else int(dict(mesh.shape).get(MODEL_AXIS, 1))


def check_mesh(mesh: Mesh | None) -> None:
  """ValueError unless `mesh` is None or has the axes (data,) or (data, model)."""
  if mesh is not None and tuple(mesh.axis_names) not in MESH_AXES:
    raise ValueError(f"expected a mesh with axes {DATA_AXIS!r} or ({DATA_AXIS!r}, "
                     f"{MODEL_AXIS!r}), got {mesh.axis_names}")


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def row_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (row) axis split over `DATA_AXIS`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def item_rows(mesh: Mesh | None = None) -> P:
  """Spec of an array whose leading axis is the item axis ([I], [I, H]): split over ``model``.

  On a mesh without a ``model`` axis (or none), the array is replicated.
  """
  return P(MODEL_AXIS) if _has_model(mesh) else P()


def item_cols(mesh: Mesh | None = None) -> P:
  """Spec of a matrix whose trailing axis is the item axis ([H, I]): columns split over ``model``."""
  return P(None, MODEL_AXIS) if _has_model(mesh) else P()


def item_specs(tree, rows=(), cols=()):
  """A spec tree for `tree`: `item_rows` at the key paths in `rows`, `item_cols` at those in
  `cols`, replicated elsewhere.

  A path is a tuple of dict keys, e.g. ``("decoder", "params", "output", "kernel")``;
  a listed path that `tree` lacks is an error (a renamed layer must not silently
  fall back to replication).
  """
  wanted = {tuple(p): item_rows() for p in rows} | {tuple(p): item_cols() for p in cols}
  found = set()
  def spec(path, _):
    key = tuple(getattr(k, "key", k) for k in path)
    if key in wanted:
      found.add(key)
      return wanted[key]
    return P()
  specs = jax.tree_util.tree_map_with_path(spec, tree)
  missing = set(wanted) - found
  if missing:
    raise ValueError(f"item_specs: no array at {sorted(missing)}")
  return specs


def _has_model(mesh: Mesh | None) -> bool:
  return mesh is None or MODEL_AXIS in mesh.axis_names


def is_spec(x) -> bool:
  """True for a PartitionSpec (a leaf of a spec tree)."""
  return isinstance(x, P)


def place(tree, specs, mesh: Mesh | None):
  """Every array of `tree` placed on `mesh` by `specs`.

  `specs` is a tree of PartitionSpecs with `tree`'s structure, or a prefix of it
  (one spec for a whole subtree), or None (everything replicated).  Specs naming
  an axis the mesh lacks (``model`` on a 1-D mesh) drop that axis.  Like
  `replicate`, an array already placed keeps its buffer where it can
  (``may_alias``); None leaves pass through, a `jax.ShapeDtypeStruct` leaf (a
  factor the block step fills later, e.g. EASE's weights) gains the sharding,
  so a checkpoint restored into it lands in the same layout; no mesh: jnp arrays.
  """
  if mesh is None or specs is None:
    return replicate(tree, mesh)
  def put_subtree(spec, sub):
    sharding = NamedSharding(mesh, _fit(spec, mesh))
    def put(x):
      _check_divisible(x.shape, sharding)
      if isinstance(x, jax.ShapeDtypeStruct):  # A shape to fill later: it carries its layout.
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
      return put_on(x, sharding)
    return jax.tree.map(put, sub)
  return jax.tree.map(put_subtree, specs, tree, is_leaf=lambda x: x is None or is_spec(x))


def shardings(tree, specs, mesh: Mesh):
  """The NamedSharding of every leaf of `tree` under `specs` (as in `place`)."""
  if specs is None:
    return jax.tree.map(lambda _: replicated(mesh), tree)
  return jax.tree.map(
      lambda spec, sub: jax.tree.map(lambda _: NamedSharding(mesh, _fit(spec, mesh)), sub),
      specs, tree, is_leaf=lambda x: x is None or is_spec(x))


def _check_divisible(shape, sharding: NamedSharding) -> None:
  """ValueError (one line) unless every axis of `shape` divides into its shards."""
  for dim, entry in zip(shape, sharding.spec):
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    parts = 1
    for a in axes:
      parts *= int(sharding.mesh.shape[a])
    if dim % parts:
      raise ValueError(f"an array of shape {tuple(shape)} cannot be split {parts} ways over "
                       f"{'/'.join(axes)}: its size {dim} is not a multiple of {parts}; for the "
                       f"item axis, choose a model_shards that divides the number of items")


def _fit(spec, mesh: Mesh) -> P:
  """`spec` (None: replicated) without the axes `mesh` lacks."""
  if spec is None:
    return P()
  names = set(mesh.axis_names)
  def keep(entry):
    if entry is None:
      return None
    if isinstance(entry, tuple):
      kept = tuple(a for a in entry if a in names)
      return kept or None
    return entry if entry in names else None
  return P(*(keep(e) for e in spec))


def put_on(x, sharding: NamedSharding):
  """`x` placed by `sharding`, keeping its buffer where it can (``may_alias``).

  A process-local array bound for a mesh that spans several processes (a
  multi-process run) goes through the host: aliasing a buffer of one process's
  device into a global array makes an array orbax cannot save.
  """
  if (isinstance(x, jax.Array) and x.is_fully_addressable
      and not sharding.is_fully_addressable):
    x = np.asarray(x)
  return jax.device_put(x, sharding, may_alias=True)


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
    return put_on(x, replicated(mesh))
  return jax.tree.map(put, tree)


def shard_rows(x, mesh: Mesh | None):
  """`x` with its leading axis split over the mesh (no mesh: a jnp array)."""
  if mesh is None:
    return jnp.asarray(x)
  return jax.device_put(x, row_sharded(mesh))


def process_block(n_rows: int) -> tuple[int, int]:
  """Rows ``(lo, hi)`` of an even split of `n_rows` over the processes that is this process's
  (all of them on one process): the users whose sums this process adds up (EASE's Gram)."""
  p, n = jax.process_index(), jax.process_count()
  return n_rows * p // n, n_rows * (p + 1) // n


def sum_over_processes(x: np.ndarray) -> np.ndarray:
  """The sum over the processes of their host arrays `x` (same shape and dtype everywhere), on
  every process; `x` itself on one process.

  One device per process holds its process's `x`; a jitted sum over them is XLA's
  all-reduce (gloo on CPU), so no process holds more than its `x` and the result.
  """
  n = jax.process_count()
  if n == 1:
    return x
  devices = np.array([jax.local_devices(process_index=p)[0] for p in range(n)])
  mesh = Mesh(devices, ("processes",))
  stacked = jax.make_array_from_process_local_data(
      NamedSharding(mesh, P("processes")), np.asarray(x)[None], (n,) + np.shape(x))
  total = jax.jit(lambda a: a.sum(0), out_shardings=NamedSharding(mesh, P()))(stacked)
  return np.asarray(total)
