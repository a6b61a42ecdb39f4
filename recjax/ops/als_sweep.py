"""ALS half sweeps: the host drivers and the jitted chunk programs they call.

`half_sweep` (weighted implicit ALS) and `weighted_lambda_half_sweep` re-solve
every row listed in a matrix's length buckets against fixed factors of the
other side: per bucket, one jitted call per chunk of rows (`_implicit_chunk`,
`_weighted_lambda_chunk`) gathers, solves (`recjax.ops.als_rows`) and
scatters, and the driver blocks on it before the next (at most one batched
factorization in flight).  How chunks are sized (`chunk_rows`,
`_block_layout`), split over a mesh and kept free of batched LAPACK calls is
described in `recjax.ops.als`.
"""

from __future__ import annotations

import collections
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh, PartitionSpec as P

from recjax.data.batching import Bucket, bucketed_rows, default_bucket_edges
from recjax.ops import mesh as mesh_lib
from recjax.ops.mesh import DATA_AXIS, data_shards, replicate, shard_rows
from recjax.ops.als_rows import (SOLVERS, check_confidence, confidence_of, implicit_gram,
                                 per_entry, shared_inverse, solve_bucket, use_woodbury,
                                 weighted_lambda_bucket)

# Gathered factor bytes per block of rows solved at once (see `als_rows._in_blocks`).
CACHE_BYTES = 1 << 20

# Number of times each jitted chunk function was traced (read by tests to bound recompiles).
TRACE_COUNTS: collections.Counter = collections.Counter()


def init_factors(key: jax.Array, shape: tuple[int, int], k: int, scale: float) -> dict:
  """Random U [n_rows, K] and V [n_cols, K], N(0, scale²), for a factor model of `shape`."""
  ku, kv = jax.random.split(key)
  return {"U": scale * jax.random.normal(ku, (shape[0], k), jnp.float32),
          "V": scale * jax.random.normal(kv, (shape[1], k), jnp.float32)}


def fewest_slot_edges(lengths: np.ndarray, candidates: Sequence[int], max_buckets: int) -> list[int]:
  """The at most `max_buckets` of `candidates` that pad rows of these `lengths` least.

  A row of length n is padded to the smallest chosen edge >= n; the largest
  candidate (>= every length) is always kept.  Exact, by dynamic programming
  over the candidates in order: best[b][j] = the fewest padded slots of the
  rows up to candidate j with b buckets, the last ending at j.
  """
  edges = np.asarray(candidates, np.int64)
  which = np.searchsorted(edges, lengths, side="left")
  count = np.bincount(which, minlength=len(edges)).astype(np.float64)
  total = np.bincount(which, weights=lengths, minlength=len(edges))
  n_rows, n_len = np.concatenate([[0], np.cumsum(count)]), np.concatenate([[0], np.cumsum(total)])
  n = len(edges)
  # slots(i, j): rows of candidates i..j (inclusive) padded to edges[j], minus their entries.
  i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  slots = np.where(i <= j, (n_rows[j + 1] - n_rows[i]) * edges[j] - (n_len[j + 1] - n_len[i]),
                   np.inf)
  best, back = slots[0].copy(), [np.zeros(n, np.int64)]
  for _ in range(1, max(1, min(max_buckets, n))):
    # Extend by one bucket i..j after a best layout ending at i - 1.
    cand = np.concatenate([[np.inf], best[:-1]])[:, None] + slots
    arg = np.argmin(cand, axis=0)
    better = cand[arg, np.arange(n)] < best
    back.append(np.where(better, arg, -1))
    best = np.where(better, cand[arg, np.arange(n)], best)
  chosen, j, layer = [], n - 1, len(back) - 1
  while j >= 0:  # Walk back through the layers that improved the layout ending at j.
    while layer > 0 and back[layer][j] < 0:
      layer -= 1
    chosen.append(int(edges[j]))
    j = int(back[layer][j]) - 1 if layer > 0 else -1
    layer -= 1
  return sorted(chosen)


def bucketed_sides(matrix: sp.spmatrix, growth: float = 1.25,
                   max_buckets: int | None = None) -> dict:
  """Length buckets of the rows ("users") and of the columns ("items") of a matrix.

  Padded lengths grow geometrically by `growth`.  Finer buckets compile more
  shapes (once) but pad less and solve faster: on a 40k x 8k, 2M-click matrix
  at K = 64, growth 2 / 1.5 / 1.25 gave 0.44 / 0.22 / 0.11 padded slots per
  entry and 1.41 / 0.87 / 0.65 s per CG sweep (2.78 / 1.98 / 1.84 s exact).
  With `max_buckets`, each side keeps at most that many of those lengths, the
  ones that pad least (`fewest_slot_edges`): every bucket is one more chunk
  shape to compile (~0.4-0.6 s each on this CPU), which dominates a short fit.
  """
  m = sp.csr_matrix(matrix)
  out = {}
  for side, part in (("users", m), ("items", m.T.tocsr())):
    lengths = np.diff(part.indptr)
    edges = default_bucket_edges(max(int(lengths.max()) if part.shape[0] else 0, 1),
                                 growth=growth)
    if max_buckets is not None and len(edges) > max_buckets:
      edges = fewest_slot_edges(lengths, edges, max_buckets)
    out[side] = bucketed_rows(part, edges)
  return out


def _split_rows(x: np.ndarray, mesh: Mesh | None):
  """`shard_rows(x, mesh)`; across processes, built from this process's pieces alone.

  ``jax.device_put`` of a host array onto a multi-process sharding costs ~8 ms
  here (the processes agree on it), against ~0.4 ms for placing the pieces on
  the local devices: the difference is paid for every array of every chunk.
  Every process holds the same `x`, so its pieces are the global array's.
  """
  if mesh is None or jax.process_count() == 1:
    return shard_rows(x, mesh)
  sharding = mesh_lib.row_sharded(mesh)
  pieces = [jax.device_put(x[index], device)
            for device, index in sharding.addressable_devices_indices_map(x.shape).items()]
  return jax.make_array_from_single_device_arrays(x.shape, sharding, pieces)


def _drop_index(rows: jax.Array, n: int) -> jax.Array:
  """Row ids with padding (-1) sent out of bounds, so a 'drop' scatter skips them."""
  return jnp.where(rows >= 0, rows, n)


def _implicit_solution(X, Y, shared, prior, rows, cols, mask, a, b, reg, *, solver, cg_steps,
                       block_rows, mesh=None):
  """The chunk's `rows` re-solved by `solve_bucket` ([R, K]; split over "data" on a mesh).

  `shared` is {"gram": b YᵀY} plus, for rows shorter than K under the exact
  solver, "inverse": `shared_inverse` (the Woodbury form).  On a mesh of more
  than one device each device solves its own rows (blocked locally); Y and
  `shared` are replicated, per-entry confidences are split with their rows.
  """
  safe = jnp.maximum(rows, 0)

  def solve(Y, shared, x0, cols, mask, a, b, reg, prior=None):
    return solve_bucket(Y, shared["gram"], cols, mask, a=a, b=b, reg=reg, prior=prior, x0=x0,
                        solver=solver, cg_steps=cg_steps, inverse=shared.get("inverse"),
                        block_rows=block_rows)

  # shard_map specs need one entry per array argument: the prior comes last, when given.
  args = (Y, shared, X[safe], cols, mask, a, b, reg) + (() if prior is None else (prior[safe],))
  if data_shards(mesh) > 1:
    row = P(DATA_AXIS)
    specs = ((P(), P(), row, row, row, row if per_entry(a) else P(), P(), P())
             + (row,) * (len(args) - 8))
    solve = jax.shard_map(solve, mesh=mesh, in_specs=specs, out_specs=row)
  return solve(*args)


_CHUNK_STATICS = ("solver", "cg_steps", "block_rows", "mesh")


@functools.partial(jax.jit, static_argnames=_CHUNK_STATICS, donate_argnums=(0,))
def _implicit_chunk(X, Y, shared, prior, rows, cols, mask, a, b, reg, **statics):
  """X with the chunk's `rows` re-solved (`_implicit_solution`; padding rows, -1, untouched)."""
  TRACE_COUNTS["implicit_chunk"] += 1
  sol = _implicit_solution(X, Y, shared, prior, rows, cols, mask, a, b, reg, **statics)
  return X.at[_drop_index(rows, X.shape[0])].set(sol.astype(X.dtype), mode="drop")


@functools.partial(jax.jit, static_argnames=_CHUNK_STATICS)
def _implicit_rows(X, Y, shared, prior, rows, cols, mask, a, b, reg, **statics):
  """`_implicit_solution` alone, left split over the devices (`_write_rows` stores it)."""
  TRACE_COUNTS["implicit_chunk"] += 1
  return _implicit_solution(X, Y, shared, prior, rows, cols, mask, a, b, reg, **statics)


@functools.partial(jax.jit, donate_argnums=(0,))
def _write_rows(X, rows: tuple, sols: tuple):
  """X with rows[c] set to sols[c] for every chunk c (padding rows, -1, dropped)."""
  ids = _drop_index(jnp.concatenate(rows), X.shape[0])
  return X.at[ids].set(jnp.concatenate(sols).astype(X.dtype), mode="drop")


@functools.partial(jax.jit, static_argnames=("mesh",), donate_argnums=(0,))
def _weighted_lambda_chunk(X, Y, rows, cols, vals, mask, reg, *, mesh=None):
  """X with the chunk's `rows` re-solved by `weighted_lambda_bucket` (split over "data" on a mesh)."""
  TRACE_COUNTS["weighted_lambda_chunk"] += 1
  solve = lambda Y, cols, vals, mask, reg: weighted_lambda_bucket(Y, cols, vals, mask, reg=reg)
  if data_shards(mesh) > 1:
    row = P(DATA_AXIS)
    solve = jax.shard_map(solve, mesh=mesh, in_specs=(P(), row, row, row, P()), out_specs=row)
  sol = solve(Y, cols, vals, mask, reg)
  return X.at[_drop_index(rows, X.shape[0])].set(sol.astype(X.dtype), mode="drop")


_gram_jit = jax.jit(implicit_gram)


@functools.lru_cache(maxsize=None)
def _sharded_gram_fn(mesh: Mesh):
  body = lambda part, b: jax.lax.psum(implicit_gram(part, b), DATA_AXIS)
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(DATA_AXIS), P()),
                               out_specs=P()))


def _gram(Y, b: float, mesh: Mesh | None) -> jax.Array:
  """b·YᵀY; on a mesh, from row shards of Y (zero-padded) reduced with psum over "data"."""
  n_dev = data_shards(mesh)
  if n_dev == 1:
    return _gram_jit(replicate(Y, mesh), b)
  y = np.asarray(Y)
  pad = -len(y) % n_dev
  if pad:
    y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
  return _sharded_gram_fn(mesh)(shard_rows(y, mesh), replicate(np.asarray(b, y.dtype), mesh))


def chunk_rows(length: int, k: int, max_bytes: int, itemsize: int = 4) -> int:
  """Rows per call so that one call's gathered factors and systems fit in `max_bytes`.

  A call holds R·L·K gathered factor entries and (exact solver) R·K² system
  entries, so R = max_bytes / (itemsize·(L·K + K²)), at least 1.
  """
  return max(1, int(max_bytes) // (itemsize * (length * k + k * k)))


def _block_layout(bucket: Bucket, k: int, rows_per_call: int | None, n_devices: int,
                  cache_bytes: int | None) -> tuple[int, int]:
  """(rows per call, rows per cache block) for one bucket.

  The call size is rows_per_call (default: the bucket's row count), capped at
  the bucket's row count; each device's share is cut into equal blocks whose
  gathered factors ([block, L, K] float32) fit in `cache_bytes` (None: one
  block), and the call size is rounded up to n_devices x blocks x block rows.
  """
  size = bucket.n_rows if rows_per_call is None else min(rows_per_call, bucket.n_rows)
  per_device = -(-size // n_devices)
  cap = per_device if cache_bytes is None else max(1, cache_bytes // (4 * bucket.length * k))
  n_blocks = -(-per_device // cap)
  block = -(-per_device // n_blocks)
  return block * n_blocks * n_devices, block


def _chunks(bucket: Bucket, size: int):
  """Yields (rows, cols, vals, mask) numpy slices of `size` rows; the last is padded with -1 rows."""
  for start in range(0, bucket.n_rows, size):
    stop = min(start + size, bucket.n_rows)
    pad = size - (stop - start)
    rows, cols, vals, mask = (bucket.rows[start:stop], bucket.cols[start:stop],
                              bucket.vals[start:stop], bucket.mask[start:stop])
    if pad:
      rows = np.concatenate([rows, np.full(pad, -1, rows.dtype)])
      cols = np.concatenate([cols, np.zeros((pad, cols.shape[1]), cols.dtype)])
      vals = np.concatenate([vals, np.zeros((pad, vals.shape[1]), vals.dtype)])
      mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])
    yield rows, cols, vals, mask


def _rows_per_call(bucket: Bucket, k: int, rows_per_call: int | None,
                   max_bytes_per_call: int | None) -> int | None:
  if max_bytes_per_call is None:
    return rows_per_call
  budget = chunk_rows(bucket.length, k, max_bytes_per_call)
  return budget if rows_per_call is None else min(rows_per_call, budget)


def _chunk_confidence(vals: np.ndarray, mask: np.ndarray, *, a: float, b: float,
                      confidence: str, alpha: float, epsilon: float):
  """A chunk's confidence argument: float(a), or float32 [R, L] C_ij (b on padding slots)."""
  if confidence == "constant":
    return float(a)
  stored = vals[mask]
  if stored.size and not (np.all(np.isfinite(stored)) and stored.min() > 0):
    raise ValueError(f"confidence={confidence!r} needs stored values > 0 (counts), got a "
                     f"minimum of {stored.min()!r}")
  c = confidence_of(np.where(mask, vals, 0.0).astype(np.float32), a=a, b=b,
                    confidence=confidence, alpha=alpha, epsilon=epsilon)
  return np.where(mask, c, b).astype(np.float32)


def half_sweep(X, Y, buckets: Sequence[Bucket], *, a: float, b: float, reg: float,
               prior=None, solver: str = "cholesky", cg_steps: int = 3,
               rows_per_call: int | None = None, mesh: Mesh | None = None,
               max_bytes_per_call: int | None = None, extra_gram=None,
               cache_bytes: int | None = CACHE_BYTES, confidence: str = "constant",
               alpha: float = 40.0, epsilon: float = 1.0) -> jax.Array:
  """Re-solves every row of X listed in `buckets` against fixed Y (weighted implicit ALS).

  The Gram b·YᵀY is computed once; then one jitted call per chunk of a bucket
  gathers, solves and scatters, and the driver blocks on it before the next
  (at most one batched Cholesky in flight; see the module docstring).  On a
  mesh whose "data" axis has several devices a chunk's solutions stay split
  over them, and one call at the end writes every chunk's rows into X (one
  all-gather per half sweep instead of one per chunk: across processes each is
  a gloo collective).  Rows of
  X not listed in any bucket, and padding rows (-1), keep their values.
  Compiles once per (bucket length, chunk size) shape.

  Args:
    X: [n_rows, K] current factors (used as the CG starting point); not modified.
    Y: [n_cols, K] fixed factors of the other side.
    buckets: `bucketed_rows(matrix)` of the [n_rows, n_cols] interaction matrix
      (their `vals` are read only when `confidence` is not "constant").
    a: confidence of observed entries ("constant" confidence).
    b: confidence of unobserved entries.
    reg: λ.
    prior: [n_rows, K] prior mean per row, or None.
    solver: "cholesky" or "cg".
    cg_steps: CG iterations per row.
    rows_per_call: rows per jitted call (bounds memory: R·L·K gathered factors
      and, for Cholesky, R·K² systems); default a whole bucket per call.
    mesh: optional mesh whose "data" axis each chunk's rows are split over
      (any other axis, e.g. "model", holds replicas).
    max_bytes_per_call: cap on one call's gathered factors and systems; sets
      the rows per call of each bucket by its length (see `chunk_rows`).
    extra_gram: optional [K, K] added to every row's system (e.g. collective
      MF's μ ZᵀZ from a second matrix sharing these factors).
    cache_bytes: size of the row blocks solved one at a time inside a call
      (their gathered factors); None solves a call's rows in one block.
    confidence: "constant" (C = a on every stored entry, the values ignored),
      "linear" (b + α r) or "log" (b + α log(1 + r/ε)) of the stored values
      r > 0 (see `confidence_of`).
    alpha, epsilon: α and ε of "linear"/"log".

  Returns:
    [n_rows, K] new factors (replicated on the mesh when given).
  """
  if solver not in SOLVERS:
    raise ValueError(f"unknown solver {solver!r}; valid: {SOLVERS}")
  check_confidence(confidence, alpha, epsilon)
  mesh_lib.check_mesh(mesh)
  n_dev = data_shards(mesh)
  y = replicate(Y, mesh)
  gram = _gram(Y, b, mesh)
  if extra_gram is not None:
    gram = gram + jnp.asarray(extra_gram, gram.dtype)
  gram = jax.block_until_ready(replicate(gram, mesh))
  prior = replicate(prior, mesh)
  x = replicate(jnp.array(X, copy=True), mesh)
  k = x.shape[1]
  exact = {"gram": gram}  # What every chunk's rows share: b YᵀY (+ the Woodbury inverse).
  if solver == "cholesky" and any(use_woodbury(bk.length, k) for bk in buckets):
    exact["inverse"] = jax.block_until_ready(
        replicate(shared_inverse(y, gram, float(reg)), mesh))
  written = ([], [])  # On a mesh: each chunk's rows and solutions, stored in X at the end.
  for bucket in buckets:
    per_call = _rows_per_call(bucket, k, rows_per_call, max_bytes_per_call)
    size, block = _block_layout(bucket, k, per_call, n_dev, cache_bytes)
    shared = exact if solver == "cholesky" and use_woodbury(bucket.length, k) else {"gram": gram}
    for rows, cols, vals, mask in _chunks(bucket, size):
      conf = _chunk_confidence(vals, mask, a=a, b=b, confidence=confidence, alpha=alpha,
                               epsilon=epsilon)
      if confidence != "constant":
        conf = _split_rows(conf, mesh)
      args = (x, y, shared, prior, _split_rows(rows, mesh), _split_rows(cols, mesh),
              _split_rows(mask, mesh), conf, float(b), float(reg))
      statics = dict(solver=solver, cg_steps=cg_steps, block_rows=block,
                     mesh=mesh if n_dev > 1 else None)
      if n_dev == 1:
        x = jax.block_until_ready(_implicit_chunk(*args, **statics))
      else:  # No collective per chunk: the rows stay on their devices until the end.
        written[0].append(args[4])
        written[1].append(jax.block_until_ready(_implicit_rows(*args, **statics)))
  if written[0]:
    x = jax.block_until_ready(_write_rows(x, tuple(written[0]), tuple(written[1])))
  return x


def weighted_lambda_half_sweep(X, Y, buckets: Sequence[Bucket], *, reg: float,
                               rows_per_call: int | None = None,
                               mesh: Mesh | None = None,
                               max_bytes_per_call: int | None = None) -> jax.Array:
  """`half_sweep` for the weighted-λ-regularized explicit model (Zhou et al. 2008).

  Args:
    X: [n_rows, K] current factors; not modified.
    Y: [n_cols, K] fixed factors of the other side.
    buckets: `bucketed_rows(matrix)`; the stored values are the ratings r_ij.
    reg: λ (row i is penalized by λ n_i ||x_i||²).
    rows_per_call: rows per jitted call; default a whole bucket.
    mesh: optional mesh; rows are split over its "data" axis, as in `half_sweep`.
    max_bytes_per_call: as in `half_sweep`.

  Returns:
    [n_rows, K] new factors; listed rows with no entries become 0.
  """
  mesh_lib.check_mesh(mesh)
  n_dev = data_shards(mesh)
  y = replicate(Y, mesh)
  x = replicate(jnp.array(X, copy=True), mesh)
  k = x.shape[1]
  for bucket in buckets:
    per_call = _rows_per_call(bucket, k, rows_per_call, max_bytes_per_call)
    size, _ = _block_layout(bucket, k, per_call, n_dev, None)
    for rows, cols, vals, mask in _chunks(bucket, size):
      x = _weighted_lambda_chunk(x, y, _split_rows(rows, mesh), _split_rows(cols, mesh),
                                 _split_rows(vals, mesh), _split_rows(mask, mesh), float(reg),
                                 mesh=mesh if n_dev > 1 else None)
      x = jax.block_until_ready(x)
  return x
