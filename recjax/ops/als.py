"""Alternating least squares: one row-wise solver family for the factors U and V.

Weighted implicit ALS (Hu, Koren & Volinsky 2008).  For one row i (a user when
solving U against fixed item factors Y = V, an item when solving V against
Y = U), with confidence C_ij = a on observed entries and b elsewhere,
preference p_ij = 1 on observed entries and 0 elsewhere, L2 penalty λ and an
optional prior mean m_i (CDL/CVAE/CRAE: λ_v z_j pulls an item toward its
content code):

  x_i = argmin Σ_j C_ij (p_ij - xᵀy_j)² + λ ||x - m_i||²
      = (b YᵀY + (a - b) Σ_{j∈obs(i)} y_j y_jᵀ + λ I)⁻¹ (a Σ_{j∈obs(i)} y_j + λ m_i),

so that, with the Gram b YᵀY computed once per half sweep, a row costs
O(n_i K² + K³) (Cholesky) or O(steps · (n_i K + K²)) (conjugate gradient).
"Observed" means stored in the sparse matrix (p_ij = 1 there, whatever the
value).

Confidence from the stored values (`confidence`, Hu et al. §4): with
``confidence="constant"`` the values are ignored and C_ij = a; with "linear"
C_ij = b + α r_ij (Eq. 1 with b = 1: 1 + α r) and with "log"
C_ij = b + α log(1 + r_ij / ε) (Eq. 6), where r_ij > 0 are the stored values
(play or click counts).  Then a row's system is

  x_i = (b YᵀY + Σ_{j∈obs(i)} (C_ij − b) y_j y_jᵀ + λ I)⁻¹ (Σ_{j∈obs(i)} C_ij y_j + λ m_i).

Every solver takes the confidence on observed entries as one argument that is
either the scalar a or an array of per-entry C_ij (`_weighted_sum`,
`_weighted_gram`, `_weighted_combination`, `_woodbury_scales`): a scalar
multiplies the unweighted sums once, exactly as before per-entry confidence
existed (so "constant" is bit for bit the old solver), an array enters the sums.

`weighted_lambda_bucket` is the explicit weighted-λ-regularized variant of
Zhou et al. 2008 (collaborative RNN paper, Eq. 8): squared error on observed
entries only and the penalty λ n_i ||x_i||², so

  x_i = (Σ_{j∈obs(i)} y_j y_jᵀ + λ n_i I)⁻¹ Σ_{j∈obs(i)} r_ij y_j.

Rows come in length buckets (`recjax.data.batching.bucketed_rows`): every
bucket is one fixed [R, L] shape, so the jitted solve compiles once per
(bucket length, chunk size) and never sees a ragged shape.  Rows whose id is -1
are padding: they are solved (harmlessly, as empty rows) and never written.

How a call is computed (the formulation, measured on the 2-core CPU).  A
call's rows are solved in cache-sized blocks, one block at a time under
`lax.map` (`_in_blocks`, `cache_bytes`, default 1 MiB of gathered factors):
each block gathers its factor rows once, and the CG matvecs (two passes over
them per step) or the Gram einsum then read them from cache.  Gathering all
of a call's rows first and sweeping them from memory 2·(steps + 1) times ran
at the machine's ~10 GB/s; blocking made a K = 64 CG iteration on the
ML-20M-sized matrix 2.4x faster.  The exact solver builds a row's [K, K]
system only when its padded length L ≥ K; shorter rows (most users) solve
their [L, L] capacitance system instead, by the Woodbury identity against
the shared M⁻¹ = (b YᵀY + λI)⁻¹ (see `_woodbury_parts`): O(L K² + L³) per row
instead of O(L K² + K³), which matters because jaxlib's batched LAPACK
Cholesky runs at only ~4–6 GFLOP/s on small matrices.

Empty rows (no observed entries) get the solution of the system with no
observed terms: (b YᵀY + λI)⁻¹ λ m_i, i.e. 0 without a prior (and close to m_i
when b YᵀY is small next to λ).  In the weighted-λ variant an empty row has no
penalty and no data; it is set to 0.

Deadlock guard.  jaxlib's batched LAPACK kernels (Cholesky, triangular
solves) split a batch into chunks, schedule the chunks on the thread pool that
runs the compiled program itself, and block that thread until the chunks are
done (`ParallelBatchMap` + `BlockingCounter::Wait`).  When every thread of the
pool (two on a 2-core machine) is blocked so, no thread is left to run the
chunks and the process hangs at 0% CPU.  Two batched factorizations in flight
at once are enough: two independent ones in one program, or one per device
when several CPU devices run the same program (WMF on 4 CPU devices hung in
its first block step this way, with the CG solver too, through the fold-in of
evaluation).  jaxlib runs a call whose batch is a single matrix inline, on the
calling thread, without the pool.  So, by construction, every factorization
here goes through `_cholesky_solve`, which on CPU factors one system per LAPACK
call under `lax.map` (`_cholesky_solve_each`): no compiled program contains a
batched LAPACK call (`tests/test_als_devices.py` checks the compiled HLO of
every entry point, and runs every ALS model on 1, 2, 4 and 8 CPU devices under
a timeout).  The cost (gowalla, 2 cores): the same time per iteration at
K = 64, 18% more at K = 200, and ~0.065 s more compilation per chunk shape
(WORKSPACE.md, "Multi-device ALS").  On GPU/TPU the systems are factored in one
batched call (`platform_dependent`).

Sharding: with a 1-D mesh (axis "data"), the rows of each chunk are split over
the devices (the chunk is padded to a multiple of the device count), Y and the
Gram are replicated, and the Gram is computed from a row-sharded Y with
`jax.shard_map` + `psum` over "data".
"""

from __future__ import annotations

import collections
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from recjax.data.batching import Bucket, bucketed_rows, default_bucket_edges

DATA_AXIS = "data"
SOLVERS = ("cholesky", "cg")
CONFIDENCES = ("constant", "linear", "log")
# Gathered factor bytes per block of rows solved at once (see `_in_blocks`).
CACHE_BYTES = 1 << 20

# Number of times each jitted chunk function was traced (read by tests to bound recompiles).
TRACE_COUNTS: collections.Counter = collections.Counter()


# ----------------------------------------------------------------------------- pure pieces


def init_factors(key: jax.Array, shape: tuple[int, int], k: int, scale: float) -> dict:
  """Random U [n_rows, K] and V [n_cols, K], N(0, scale²), for a factor model of `shape`."""
  ku, kv = jax.random.split(key)
  return {"U": scale * jax.random.normal(ku, (shape[0], k), jnp.float32),
          "V": scale * jax.random.normal(kv, (shape[1], k), jnp.float32)}


def bucketed_sides(matrix: sp.spmatrix, growth: float = 1.25) -> dict:
  """Length buckets of the rows ("users") and of the columns ("items") of a matrix.

  Padded lengths grow geometrically by `growth`.  Finer buckets compile more
  shapes (once) but pad less and solve faster: on a 40k x 8k, 2M-click matrix
  at K = 64, growth 2 / 1.5 / 1.25 gave 0.44 / 0.22 / 0.11 padded slots per
  entry and 1.41 / 0.87 / 0.65 s per CG sweep (2.78 / 1.98 / 1.84 s exact).
  """
  m = sp.csr_matrix(matrix)
  out = {}
  for side, part in (("users", m), ("items", m.T.tocsr())):
    longest = int(np.diff(part.indptr).max()) if part.shape[0] else 0
    out[side] = bucketed_rows(part, default_bucket_edges(max(longest, 1), growth=growth))
  return out


def check_confidence(confidence: str, alpha: float, epsilon: float, who: str = "als") -> None:
  """ValueError unless `confidence` is one of CONFIDENCES and α, ε are finite and > 0."""
  if confidence not in CONFIDENCES:
    raise ValueError(f"{who}: confidence must be one of {CONFIDENCES}, got {confidence!r}")
  if confidence == "constant":
    return
  for name, value in (("alpha", alpha), ("epsilon", epsilon)):
    if not (np.isfinite(value) and value > 0):
      raise ValueError(f"{who}: {name} must be finite and > 0 (confidence={confidence!r}), "
                       f"got {value!r}")


def confidence_of(values, *, a: float, b: float, confidence: str = "constant",
                  alpha: float = 40.0, epsilon: float = 1.0):
  """C_ij of observed entries from their stored values r_ij > 0 (Hu et al. Eqs. 1 and 6).

  Args:
    values: numpy or jax array of stored values r_ij (play/click counts).
    a: the constant confidence ("constant").
    b: confidence of unobserved entries (the offset of "linear" and "log").
    confidence: "constant" (a, the values ignored), "linear" (b + α r) or
      "log" (b + α log(1 + r / ε)).
    alpha, epsilon: α and ε of "linear"/"log".

  Returns:
    The scalar a for "constant", else an array shaped like `values`.
  """
  check_confidence(confidence, alpha, epsilon)
  if confidence == "constant":
    return a
  xp = np if isinstance(values, np.ndarray) else jnp
  if confidence == "linear":
    return b + alpha * values
  return b + alpha * xp.log1p(values / epsilon)


def _per_entry(c) -> bool:
  """Whether a confidence argument is per entry ([R, L]) rather than the scalar a."""
  return jnp.ndim(c) > 0


def _weighted_sum(c, ys: jax.Array) -> jax.Array:
  """Σ_l c_l y_l [R, K] of gathered rows ys [R, L, K] (zero on padding)."""
  if not _per_entry(c):
    return c * jnp.sum(ys, axis=1)
  return jnp.einsum("rl,rlk->rk", c.astype(ys.dtype), ys)


def _weighted_gram(w, ys: jax.Array) -> jax.Array:
  """Σ_l w_l y_l y_lᵀ [R, K, K] of gathered rows ys [R, L, K]."""
  if not _per_entry(w):
    return w * jnp.einsum("rlk,rlm->rkm", ys, ys)
  return jnp.einsum("rlk,rlm->rkm", ys * w.astype(ys.dtype)[..., None], ys)


def _weighted_combination(w, ys: jax.Array, coef: jax.Array) -> jax.Array:
  """Σ_l w_l coef_l y_l [R, K]: ys [R, L, K], coef [R, L]."""
  if not _per_entry(w):
    return w * jnp.einsum("rlk,rl->rk", ys, coef)
  return jnp.einsum("rlk,rl->rk", ys, w.astype(ys.dtype) * coef)


def _woodbury_scales(w):
  """(E, F) with W = E F: the capacitance system I + F G E is SPD (see `_woodbury_parts`).

  A scalar weight stays whole on the E side (F = None, the identity), as the
  solver always computed it; per-entry weights split as E = F = √w.
  """
  if not _per_entry(w):
    return w, None
  root = jnp.sqrt(jnp.maximum(w, 0.0))
  return root, root


def implicit_gram(Y: jax.Array, b: float) -> jax.Array:
  """The unobserved-confidence part of every row's system.

  Args:
    Y: [n, K] fixed factors.
    b: confidence of unobserved entries.

  Returns:
    [K, K] b·YᵀY.
  """
  return b * (Y.T @ Y)


def _gathered(Y: jax.Array, cols: jax.Array, mask: jax.Array) -> jax.Array:
  """[R, L, K] factor rows of each row's entries, zero on padding slots."""
  return jnp.where(mask[..., None], Y[cols], 0.0)


def _cholesky_solve_batched(A: jax.Array, rhs: jax.Array) -> jax.Array:
  chol = jnp.linalg.cholesky(A)
  return jax.scipy.linalg.cho_solve((chol, True), rhs[..., None])[..., 0]


# Independent single-system LAPACK calls per `lax.map` step of `_cholesky_solve_each`: XLA
# may run them side by side on its threads (2-core CPU, K = 64..200: 1.5-2.5x faster than 1).
SYSTEMS_PER_STEP = 4


def _cholesky_solve_each(A: jax.Array, rhs: jax.Array) -> jax.Array:
  """One system per LAPACK call, under `lax.map`: jaxlib never sees a batch (see the guard)."""
  k = A.shape[-1]
  A, b = A.reshape(-1, k, k), rhs.reshape(-1, k)
  n = A.shape[0]
  per = min(SYSTEMS_PER_STEP, n)
  pad = -n % per
  if pad:  # Identity systems fill the last step.
    A = jnp.concatenate([A, jnp.broadcast_to(jnp.eye(k, dtype=A.dtype), (pad, k, k))])
    b = jnp.concatenate([b, jnp.zeros((pad, k), b.dtype)])

  def step(ab):
    a, r = ab
    return jnp.stack([_cholesky_solve_batched(a[i], r[i]) for i in range(per)])

  out = jax.lax.map(step, (A.reshape(-1, per, k, k), b.reshape(-1, per, k)))
  return out.reshape(-1, k)[:n].reshape(rhs.shape)


def _cholesky_solve(A: jax.Array, rhs: jax.Array) -> jax.Array:
  """Solves the SPD systems A[r] x[r] = rhs[r] ([..., K, K], [..., K]) by Cholesky.

  On CPU each system is factored by its own LAPACK call (`_cholesky_solve_each`),
  so no batched LAPACK kernel, and hence no wait on jaxlib's thread pool, exists
  in any compiled program (the deadlock guard, module docstring); on GPU/TPU the
  systems are factored in one batched call.
  """
  if A.ndim == 2:  # One system: jaxlib runs it inline, never on its pool.
    return _cholesky_solve_batched(A, rhs)
  return jax.lax.platform_dependent(A, rhs, cpu=_cholesky_solve_each,
                                    default=_cholesky_solve_batched)


def _conjugate_gradient(matvec, rhs: jax.Array, x0: jax.Array, steps: int) -> jax.Array:
  """`steps` CG iterations per row, batched over rows; rows that converged stay put."""
  r = rhs - matvec(x0)
  rs = jnp.sum(r * r, axis=-1)
  tiny = jnp.finfo(rhs.dtype).tiny

  def body(_, carry):
    x, r, p, rs = carry
    ap = matvec(p)
    pap = jnp.sum(p * ap, axis=-1)
    alpha = jnp.where(pap > tiny, rs / jnp.where(pap > tiny, pap, 1.0), 0.0)
    x = x + alpha[:, None] * p
    r = r - alpha[:, None] * ap
    rs_new = jnp.sum(r * r, axis=-1)
    beta = jnp.where(rs > tiny, rs_new / jnp.where(rs > tiny, rs, 1.0), 0.0)
    p = r + beta[:, None] * p
    return x, r, p, rs_new

  x, *_ = jax.lax.fori_loop(0, steps, body, (x0, r, r, rs))
  return x


def solve_bucket(Y: jax.Array, gram: jax.Array, cols: jax.Array, mask: jax.Array, *,
                 a: float, b: float, reg: float, prior: jax.Array | None = None,
                 x0: jax.Array | None = None, solver: str = "cholesky",
                 cg_steps: int = 3) -> jax.Array:
  """Weighted implicit ALS for the R rows of one bucket (pure, jittable).

  Args:
    Y: [n, K] fixed factors of the other side.
    gram: [K, K] `implicit_gram(Y, b)`.
    cols: int [R, L] column ids of each row's observed entries.
    mask: bool [R, L], False on padding slots.
    a: confidence of observed entries: a scalar, or [R, L] per entry
      (`confidence_of` of the stored values; padding slots are ignored).
    b: confidence of unobserved entries.
    reg: λ, the L2 penalty (toward `prior` when given).
    prior: [R, K] prior mean of each row, or None for 0.
    x0: [R, K] CG starting point (e.g. the current factors); zeros when None;
      ignored by "cholesky".
    solver: "cholesky" (exact) or "cg" (matrix-free conjugate gradient).
    cg_steps: CG iterations (static).

  Returns:
    [R, K] new factors.
  """
  if solver not in SOLVERS:
    raise ValueError(f"unknown solver {solver!r}; valid: {SOLVERS}")
  if solver == "cholesky":
    return _cholesky_solve(*_implicit_systems(Y, gram, cols, mask, prior, a=a, b=b, reg=reg))
  ys = _gathered(Y, cols, mask)
  rhs = _weighted_sum(a, ys)
  if prior is not None:
    rhs = rhs + reg * prior

  def matvec(x):
    along = jnp.einsum("rlk,rk->rl", ys, x)
    return x @ gram + _weighted_combination(a - b, ys, along) + reg * x

  start = jnp.zeros_like(rhs) if x0 is None else x0
  return _conjugate_gradient(matvec, rhs, start, cg_steps)


def weighted_lambda_bucket(Y: jax.Array, cols: jax.Array, vals: jax.Array, mask: jax.Array, *,
                           reg: float) -> jax.Array:
  """Weighted-λ-regularized least squares (Zhou et al. 2008) for one bucket (pure, jittable).

  Args:
    Y: [n, K] fixed factors of the other side.
    cols: int [R, L] column ids of each row's observed entries.
    vals: [R, L] observed values r_ij.
    mask: bool [R, L], False on padding slots.
    reg: λ; row i is penalized by λ n_i ||x_i||².

  Returns:
    [R, K] new factors (0 for rows with no entries).
  """
  ys = _gathered(Y, cols, mask)
  n = jnp.sum(mask, axis=1).astype(Y.dtype)
  diag = jnp.where(n > 0, reg * n, 1.0)
  eye = jnp.eye(Y.shape[1], dtype=Y.dtype)
  A = jnp.einsum("rlk,rlm->rkm", ys, ys) + diag[:, None, None] * eye[None]
  rhs = jnp.einsum("rlk,rl->rk", ys, jnp.where(mask, vals, 0.0).astype(Y.dtype))
  return _cholesky_solve(A, rhs)


# ----------------------------------------------------------------------------- jitted chunks


def _drop_index(rows: jax.Array, n: int) -> jax.Array:
  """Row ids with padding (-1) sent out of bounds, so a 'drop' scatter skips them."""
  return jnp.where(rows >= 0, rows, n)


def _in_blocks(fn, block_rows: int, *arrays):
  """fn over the leading axis in blocks of `block_rows` rows, one block at a time (lax.map).

  A block's gathered factor rows [block_rows, L, K] are sized to stay in the
  CPU cache, so the conjugate-gradient matvecs (two passes over them per step)
  and the Gram einsum read them from cache rather than from memory: gathering
  all rows of a chunk first and sweeping them 2·(steps + 1) times was bound by
  memory bandwidth (~10 GB/s here).  None entries pass through as None.
  """
  n_rows = next(a for a in arrays if a is not None).shape[0]
  if block_rows >= n_rows:
    return fn(*arrays)
  n = n_rows // block_rows
  split = lambda t: None if t is None else t.reshape((n, block_rows) + t.shape[1:])
  out = jax.lax.map(lambda args: fn(*args), tuple(split(a) for a in arrays))
  return jax.tree.map(lambda t: t.reshape((n_rows,) + t.shape[2:]), out)


def _implicit_systems(Y, gram, cols, mask, prior, *, a, b, reg):
  """(A, rhs) of the exact implicit solve for a block of rows (`a` scalar or [R, L])."""
  ys = _gathered(Y, cols, mask)
  rhs = _weighted_sum(a, ys)
  if prior is not None:
    rhs = rhs + reg * prior
  eye = jnp.eye(Y.shape[1], dtype=Y.dtype)
  A = gram[None] + _weighted_gram(a - b, ys) + reg * eye[None]
  return A, rhs


def _woodbury_parts(Y, Yt, cols, mask, prior, *, a, b, reg):
  """The pieces of the exact solve through the [L, L] capacitance system (for L < K).

  With M = b YᵀY + λI (shared by all rows), the row's observed factors Yₛ
  [L, K] and W = diag(C_ij − b) (the scalar a − b for constant confidence),
  the system is A = M + Yₛᵀ W Yₛ.  Write W = E F with diagonal E, F
  (`_woodbury_scales`: E = a − b, F = I for a scalar; E = F = √W per entry, so
  that S is symmetric); by the Woodbury identity
    A⁻¹ rhs = u - Ỹₛᵀ E S⁻¹ F Yₛ u,   u = M⁻¹ rhs,
    S = I_L + F Ỹₛ Yₛᵀ E,              Ỹ = Y M⁻¹ (precomputed once),
  where Ỹₛ are the rows of Ỹ gathered like Yₛ, and u = Σ C_ij ỹ_j + λ M⁻¹ m_i.
  A row costs O(L² K + L³) instead of O(L K² + K³): the K² work happens once,
  in Ỹ.  Padding slots gather zero rows: their rows of S are the identity and
  they contribute nothing.

  Args:
    Y: [n, K] fixed factors.
    Yt: [n, K] Y M⁻¹.
    cols, mask: [R, L] the rows' entries.
    prior: [R, K] λ-weighted prior means already multiplied by M⁻¹
      (λ M⁻¹ m_i), or None.
    a: confidence of observed entries, scalar or [R, L].

  Returns:
    (S [R, L, L], t [R, L], u [R, K], Ỹₛ [R, L, K]); the solution is
    u − `_weighted_combination`(E, Ỹₛ, S⁻¹ t).
  """
  del reg  # Folded into `prior` by the caller.
  ys = _gathered(Y, cols, mask)
  yts = _gathered(Yt, cols, mask)
  u = _weighted_sum(a, yts)
  if prior is not None:
    u = u + prior
  e, f = _woodbury_scales(a - b)
  eye = jnp.eye(cols.shape[1], dtype=Y.dtype)
  g = jnp.einsum("rlk,rmk->rlm", yts, ys)
  if f is None:
    s = eye[None] + e * g
  else:
    s = eye[None] + f[:, :, None] * g * e[:, None, :]
  t = jnp.einsum("rlk,rk->rl", ys, u)
  if f is not None:
    t = f * t
  return s, t, u, yts


def _solve_local(Y, gram, prior, x0, cols, mask, a, b, reg, *, solver, cg_steps, block_rows):
  """One device's rows: CG block by block, or the exact systems block by block + ONE Cholesky.

  For the exact solver, `gram` is the pair (M⁻¹, Y M⁻¹) with M = b YᵀY + λI
  when the rows are shorter than K (the Woodbury form, `_woodbury_parts`),
  else b YᵀY.  `a` is the scalar confidence or the rows' [R, L] per-entry
  confidences (then cut into blocks with the rows).
  """
  per_entry = a if _per_entry(a) else None
  conf = lambda w: a if w is None else w  # A block's confidences: its slice, or the scalar.
  if solver == "cg":
    return _in_blocks(
        lambda c, m, p, x, w: solve_bucket(Y, gram, c, m, a=conf(w), b=b, reg=reg, prior=p,
                                           x0=x, solver="cg", cg_steps=cg_steps),
        block_rows, cols, mask, prior, x0, per_entry)
  if _use_woodbury(cols.shape[1], Y.shape[1]):
    minv, yt = gram
    prior_u = None if prior is None else reg * (prior @ minv)
    s, t, u, p = _in_blocks(
        lambda c, m, q, w: _woodbury_parts(Y, yt, c, m, q, a=conf(w), b=b, reg=reg),
        block_rows, cols, mask, prior_u, per_entry)
    z = _cholesky_solve(s, t)
    e, _ = _woodbury_scales(a - b)
    return u - _weighted_combination(e, p, z)
  A, rhs = _in_blocks(
      lambda c, m, p, w: _implicit_systems(Y, gram, c, m, p, a=conf(w), b=b, reg=reg),
      block_rows, cols, mask, prior, per_entry)
  return _cholesky_solve(A, rhs)


# Rows of padded length L <= WOODBURY_RATIO·K take the Woodbury path (see `_use_woodbury`).
WOODBURY_RATIO = 1.0


def _use_woodbury(length: int, k: int) -> bool:
  """Whether rows of padded length L solve their [L, L] capacitance system instead of [K, K]."""
  return length < k and length <= WOODBURY_RATIO * k


@jax.jit
def _shared_inverse(Y, gram, reg):
  """(M⁻¹, Y M⁻¹) with M = gram + λI, through one Cholesky: the Woodbury form's shared part."""
  k = gram.shape[0]
  m = gram + reg * jnp.eye(k, dtype=gram.dtype)
  minv = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(m), True), jnp.eye(k, dtype=gram.dtype))
  minv = 0.5 * (minv + minv.T)
  return minv, Y @ minv


@functools.partial(jax.jit, static_argnames=("solver", "cg_steps", "block_rows", "mesh"),
                   donate_argnums=(0,))
def _implicit_chunk(X, Y, gram, prior, rows, cols, mask, a, b, reg, *, solver, cg_steps,
                    block_rows, mesh=None):
  TRACE_COUNTS["implicit_chunk"] += 1
  safe = jnp.maximum(rows, 0)
  prior_rows = None if prior is None else prior[safe]
  solve = functools.partial(_solve_local, solver=solver, cg_steps=cg_steps,
                            block_rows=block_rows)
  if prior is None:  # shard_map specs need one entry per array argument.
    inner = solve
    solve = lambda Y, gram, x0, cols, mask, a, b, reg: inner(Y, gram, None, x0, cols, mask, a, b,
                                                              reg)
    args = (Y, gram, X[safe], cols, mask, a, b, reg)
  else:
    args = (Y, gram, prior_rows, X[safe], cols, mask, a, b, reg)
  if mesh is not None and mesh.devices.size > 1:
    # Each device solves its own rows (blocked locally); Y and the Gram are replicated,
    # per-entry confidences are split with their rows.
    row = P(DATA_AXIS)
    specs = ((P(), P()) + (row,) * (len(args) - 5) + (row if _per_entry(a) else P(), P(), P()))
    solve = jax.shard_map(solve, mesh=mesh, in_specs=specs, out_specs=row)
  sol = solve(*args)
  return X.at[_drop_index(rows, X.shape[0])].set(sol.astype(X.dtype), mode="drop")


@functools.partial(jax.jit, donate_argnums=(0,))
def _weighted_lambda_chunk(X, Y, rows, cols, vals, mask, reg):
  TRACE_COUNTS["weighted_lambda_chunk"] += 1
  sol = weighted_lambda_bucket(Y, cols, vals, mask, reg=reg)
  return X.at[_drop_index(rows, X.shape[0])].set(sol.astype(X.dtype), mode="drop")


_gram_jit = jax.jit(implicit_gram)


def _n_devices(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.devices.size


def _replicate(x, mesh: Mesh | None):
  if x is None:
    return None
  if mesh is None:
    return jnp.asarray(x)
  return jax.device_put(x, NamedSharding(mesh, P()))


def _shard_rows(x, mesh: Mesh | None):
  if mesh is None:
    return jnp.asarray(x)
  return jax.device_put(x, NamedSharding(mesh, P(DATA_AXIS)))


@functools.lru_cache(maxsize=None)
def _sharded_gram_fn(mesh: Mesh):
  body = lambda part, b: jax.lax.psum(implicit_gram(part, b), DATA_AXIS)
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(DATA_AXIS), P()), out_specs=P()))


def _gram(Y, b: float, mesh: Mesh | None) -> jax.Array:
  """b·YᵀY; on a mesh, from row shards of Y (zero-padded) reduced with psum over "data"."""
  n_dev = _n_devices(mesh)
  if n_dev == 1:
    return _gram_jit(_replicate(Y, mesh), b)
  y = np.asarray(Y)
  pad = -len(y) % n_dev
  if pad:
    y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
  return _sharded_gram_fn(mesh)(_shard_rows(y, mesh), _replicate(np.asarray(b, y.dtype), mesh))


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


def _check_mesh(mesh: Mesh | None):
  if mesh is not None and tuple(mesh.axis_names) != (DATA_AXIS,):
    raise ValueError(f"expected a 1-D mesh with axis {DATA_AXIS!r}, got {mesh.axis_names}")


# ----------------------------------------------------------------------------- host drivers


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
  (at most one batched Cholesky in flight; see the module docstring).  Rows of
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
    mesh: optional 1-D mesh (axis "data") to split each chunk's rows over.
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
  _check_mesh(mesh)
  n_dev = _n_devices(mesh)
  y = _replicate(Y, mesh)
  gram = _gram(Y, b, mesh)
  if extra_gram is not None:
    gram = gram + jnp.asarray(extra_gram, gram.dtype)
  gram = jax.block_until_ready(_replicate(gram, mesh))
  prior = _replicate(prior, mesh)
  x = _replicate(jnp.array(X, copy=True), mesh)
  k = x.shape[1]
  minv = None
  if solver == "cholesky" and any(_use_woodbury(bk.length, k) for bk in buckets):
    minv = jax.block_until_ready(
        tuple(_replicate(t, mesh) for t in _shared_inverse(y, gram, float(reg))))
  for bucket in buckets:
    per_call = _rows_per_call(bucket, k, rows_per_call, max_bytes_per_call)
    size, block = _block_layout(bucket, k, per_call, n_dev, cache_bytes)
    shared = minv if solver == "cholesky" and _use_woodbury(bucket.length, k) else gram
    for rows, cols, vals, mask in _chunks(bucket, size):
      conf = _chunk_confidence(vals, mask, a=a, b=b, confidence=confidence, alpha=alpha,
                               epsilon=epsilon)
      if confidence != "constant":
        conf = _shard_rows(conf, mesh)
      x = _implicit_chunk(x, y, shared, prior, _shard_rows(rows, mesh), _shard_rows(cols, mesh),
                          _shard_rows(mask, mesh), conf, float(b), float(reg), solver=solver,
                          cg_steps=cg_steps, block_rows=block,
                          mesh=mesh if n_dev > 1 else None)
      x = jax.block_until_ready(x)
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
    mesh: optional 1-D mesh (axis "data").
    max_bytes_per_call: as in `half_sweep`.

  Returns:
    [n_rows, K] new factors; listed rows with no entries become 0.
  """
  _check_mesh(mesh)
  n_dev = _n_devices(mesh)
  y = _replicate(Y, mesh)
  x = _replicate(jnp.array(X, copy=True), mesh)
  k = x.shape[1]
  for bucket in buckets:
    per_call = _rows_per_call(bucket, k, rows_per_call, max_bytes_per_call)
    size, _ = _block_layout(bucket, k, per_call, n_dev, None)
    for rows, cols, vals, mask in _chunks(bucket, size):
      x = _weighted_lambda_chunk(x, y, _shard_rows(rows, mesh), _shard_rows(cols, mesh),
                                 _shard_rows(vals, mesh), _shard_rows(mask, mesh), float(reg))
      x = jax.block_until_ready(x)
  return x


def fold_in(Y, matrix_rows_csr: sp.spmatrix, *, a: float, b: float, reg: float,
            solver: str = "cholesky", cg_steps: int | None = None,
            rows_per_call: int | None = None, mesh: Mesh | None = None,
            confidence: str = "constant", alpha: float = 40.0,
            epsilon: float = 1.0) -> jax.Array:
  """Factors for rows that training never saw: one implicit solve against fixed Y.

  Args:
    Y: [n_cols, K] trained factors of the other side.
    matrix_rows_csr: csr [n_new, n_cols] interactions of the new rows (their
      values are the counts r for "linear"/"log" confidence).
    a: confidence of observed entries ("constant").
    b: confidence of unobserved entries.
    reg: λ.
    solver: "cholesky" or "cg" (from 0).
    cg_steps: CG iterations; default K (exact in exact arithmetic).
    rows_per_call: rows per jitted call; default a whole bucket.
    mesh: optional 1-D mesh (axis "data").
    confidence, alpha, epsilon: as in `half_sweep`.

  Returns:
    [n_new, K] factors (0 for rows without interactions).
  """
  k = np.shape(Y)[1]
  x = jnp.zeros((matrix_rows_csr.shape[0], k), jnp.asarray(Y).dtype)
  if matrix_rows_csr.shape[0] == 0:
    return x
  return half_sweep(x, Y, bucketed_rows(matrix_rows_csr), a=a, b=b, reg=reg, solver=solver,
                    cg_steps=k if cg_steps is None else cg_steps,
                    rows_per_call=rows_per_call, mesh=mesh, confidence=confidence,
                    alpha=alpha, epsilon=epsilon)


def fold_in_dense(Y: jax.Array, inputs: jax.Array, *, a: float, b: float, reg: float,
                  item_chunk: int = 512, confidence: str = "constant", alpha: float = 40.0,
                  epsilon: float = 1.0) -> jax.Array:
  """Implicit-ALS factors for dense rows of clicks, one exact solve per row (pure, jittable).

  x_r = (b YᵀY + Yᵀ diag(c_r − b) Y + λI)⁻¹ Yᵀ c_r with c_rj the confidence of
  entry j where inputs_rj > 0 (a, or `confidence_of` the input value) and 0
  elsewhere: how WMF/CMF score users that training never saw.  Yᵀ diag(·) Y is
  summed over item chunks, so the temporary is [B, item_chunk, K], not
  [B, n, K] (8 GB for 500 users x 41k items x K = 100).  One batched Cholesky.

  Args:
    Y: [n, K] fixed factors (items).
    inputs: [B, n] rows; entries > 0 are observed, their values the counts r.
    a, b, reg: confidence on clicks ("constant"), elsewhere, and λ.
    item_chunk: items per scan step.
    confidence, alpha, epsilon: as in `half_sweep`.

  Returns:
    [B, K] factors.
  """
  k = Y.shape[1]
  observed = inputs > 0
  c = observed.astype(Y.dtype)
  conf = confidence_of(jnp.where(observed, inputs, 0.0).astype(Y.dtype), a=a, b=b,
                       confidence=confidence, alpha=alpha, epsilon=epsilon)
  if _per_entry(conf):  # Per-entry weights enter the sums ...
    weighted = masked_grams(jnp.where(observed, conf - b, 0.0), Y, item_chunk)
    rhs = jnp.where(observed, conf, 0.0) @ Y
  else:  # ... a scalar multiplies them once.
    weighted = (conf - b) * masked_grams(c, Y, item_chunk)
    rhs = conf * (c @ Y)
  system = (b * (Y.T @ Y))[None] + weighted + reg * jnp.eye(k, dtype=Y.dtype)[None]
  return _cholesky_solve(system, rhs)


def fold_in_constants(Y: jax.Array, b: float, reg: float) -> dict:
  """What every fold-in against fixed Y shares, computed once (e.g. when a model is served).

  Returns:
    {"gram": b YᵀY [K, K], "minv": M⁻¹, "y_minv": Y M⁻¹ [n, K]} with M = b YᵀY + λI:
    the [K, K] systems' shared part and the Woodbury form's (`_woodbury_parts`).
  """
  gram = implicit_gram(Y, b)
  minv, y_minv = _shared_inverse(Y, gram, reg)
  return {"gram": gram, "minv": minv, "y_minv": y_minv}


def fold_in_padded(Y: jax.Array, cols: jax.Array, vals: jax.Array, mask: jax.Array, *,
                   a: float, b: float, reg: float, confidence: str = "constant",
                   alpha: float = 40.0, epsilon: float = 1.0,
                   constants: dict | None = None) -> jax.Array:
  """`fold_in_dense` for rows given as padded item lists (pure, jittable).

  The same exact solve per row, x_r = (b YᵀY + Σ_l (c_l − b) y_l y_lᵀ + λI)⁻¹
  Σ_l c_l y_l, but summed over each row's own items only: O(L K²) per row
  instead of O(n K²), which is what makes serving a large catalog cheap.

  Args:
    Y: [n, K] fixed factors (items).
    cols: int32 [B, L] item ids of each row's observed entries.
    vals: float [B, L] their values (counts; ignored by "constant").
    mask: bool [B, L], False on padding slots.
    a, b, reg, confidence, alpha, epsilon: as in `fold_in_dense`.
    constants: `fold_in_constants(Y, b, reg)` when already computed (a server
      computes them once at load instead of once a batch: n K² flops, most of
      a one-user query).  With them, rows narrower than K (L < K) solve their
      [L, L] Woodbury capacitance system instead of [K, K], as ALS sweeps do.

  Returns:
    [B, K] factors (rows without items solve to 0).
  """
  conf = confidence_of(jnp.where(mask, vals, 0.0).astype(Y.dtype), a=a, b=b,
                       confidence=confidence, alpha=alpha, epsilon=epsilon)
  if constants is not None and _use_woodbury(cols.shape[1], Y.shape[1]):
    s, t, u, p = _woodbury_parts(Y, constants["y_minv"], cols, mask, None, a=conf, b=b, reg=reg)
    e, _ = _woodbury_scales(conf - b)
    return u - _weighted_combination(e, p, _cholesky_solve(s, t))
  gram = implicit_gram(Y, b) if constants is None else constants["gram"]
  return solve_bucket(Y, gram, cols, mask, a=conf, b=b, reg=reg, solver="cholesky")


def weighted_lambda_fold_in_padded(Y: jax.Array, cols: jax.Array, vals: jax.Array,
                                   mask: jax.Array, *, reg: float) -> jax.Array:
  """`weighted_lambda_fold_in_dense` for padded item lists (pure, jittable)."""
  return weighted_lambda_bucket(Y, cols, jnp.where(mask, vals, 0.0).astype(Y.dtype), mask,
                                reg=reg)


def weighted_lambda_fold_in_dense(Y: jax.Array, values: jax.Array, *, reg: float,
                                  item_chunk: int = 512) -> jax.Array:
  """Weighted-λ factors for dense rows (entries > 0 are observed), one exact solve each.

  x_r = (Σ_{j obs} y_j y_jᵀ + λ d_r I)⁻¹ Σ_{j obs} v_rj y_j, d_r = number observed;
  a row with nothing observed gets 0.  Pure and jittable; see `fold_in_dense`.
  """
  k = Y.shape[1]
  observed = (values > 0).astype(Y.dtype)
  d = jnp.sum(observed, axis=1)
  diag = jnp.where(d > 0, reg * d, 1.0)
  system = masked_grams(observed, Y, item_chunk) + diag[:, None, None] * jnp.eye(k, dtype=Y.dtype)[None]
  return _cholesky_solve(system, jnp.where(values > 0, values, 0.0).astype(Y.dtype) @ Y)


def masked_grams(c: jax.Array, Y: jax.Array, item_chunk: int = 512) -> jax.Array:
  """Yᵀ diag(c_r) Y for every row r of c [B, n], summed over item chunks ([B, K, K])."""
  n, k = Y.shape
  n_chunks = -(-n // item_chunk)
  pad = n_chunks * item_chunk - n
  cs = jnp.pad(c, ((0, 0), (0, pad))).reshape(c.shape[0], n_chunks, item_chunk).transpose(1, 0, 2)
  ys = jnp.pad(Y, ((0, pad), (0, 0))).reshape(n_chunks, item_chunk, k)

  def add(total, cy):
    cc, yc = cy
    return total + jnp.einsum("bc,ck,cl->bkl", cc, yc, yc), None

  total, _ = jax.lax.scan(add, jnp.zeros((c.shape[0], k, k), Y.dtype), (cs, ys))
  return total


# ----------------------------------------------------------------------------- objective


def implicit_objective(X, Y, matrix_csr: sp.spmatrix, *, a: float, b: float, reg_x: float,
                       reg_y: float, prior_x=None, prior_y=None, chunk: int = 1 << 20,
                       confidence: str = "constant", alpha: float = 40.0,
                       epsilon: float = 1.0) -> float:
  """The weighted implicit ALS loss, exactly, in float64 on the host, in O((n+m)K² + nnz·K).

  Σ_ij C_ij (p_ij - x_iᵀy_j)² + reg_x Σ_i ||x_i - m_i||² + reg_y Σ_j ||y_j - n_j||²,
  with the sum over all (i, j) written as
  b·tr((XᵀX)(YᵀY)) - 2b Σ_obs s_ij + b·nnz + Σ_obs (C_ij - b)(1 - s_ij)², s = XYᵀ,
  where only the stored entries' scores are computed.  Each `half_sweep`
  minimizes exactly this over one side (X with reg_x, Y with reg_y).

  Args:
    X: [n_rows, K] row factors.
    Y: [n_cols, K] column factors.
    matrix_csr: [n_rows, n_cols]; stored entries are the observed ones, their
      values the counts r of "linear"/"log" confidence.
    a: confidence of observed entries ("constant").
    b: confidence of unobserved entries.
    reg_x: λ of the rows.
    reg_y: λ of the columns.
    prior_x: [n_rows, K] prior mean of the rows, or None.
    prior_y: [n_cols, K] prior mean of the columns, or None.
    chunk: non-zeros scored at a time (bounds host memory).
    confidence, alpha, epsilon: as in `half_sweep`.

  Returns:
    The loss as a Python float.
  """
  x = np.asarray(X, np.float64)
  y = np.asarray(Y, np.float64)
  m = sp.coo_matrix(matrix_csr)
  m.sum_duplicates()
  dense = b * float(np.sum((x.T @ x) * (y.T @ y)))
  sum_s = 0.0
  sum_sq = 0.0
  for start in range(0, m.nnz, chunk):
    r, c = m.row[start:start + chunk], m.col[start:start + chunk]
    s = np.einsum("nk,nk->n", x[r], y[c])
    sum_s += float(s.sum())
    conf = confidence_of(m.data[start:start + chunk].astype(np.float64), a=a, b=b,
                         confidence=confidence, alpha=alpha, epsilon=epsilon)
    if confidence == "constant":
      sum_sq += float(np.sum((1.0 - s) ** 2))
    else:
      sum_sq += float(np.sum((conf - b) * (1.0 - s) ** 2))
  excess = (a - b) if confidence == "constant" else 1.0
  loss = dense - 2.0 * b * sum_s + b * m.nnz + excess * sum_sq
  dx = x if prior_x is None else x - np.asarray(prior_x, np.float64)
  dy = y if prior_y is None else y - np.asarray(prior_y, np.float64)
  return float(loss + reg_x * np.sum(dx * dx) + reg_y * np.sum(dy * dy))
