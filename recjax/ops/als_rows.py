"""Implicit and weighted-λ ALS, row by row: the pure, jittable solves of a block of rows.

The maths and the formulation choices (cache blocks, the Woodbury form, the
deadlock guard) are described in `recjax.ops.als`, the module callers import.
This module holds the per-row algebra that a training half sweep
(`recjax.ops.als_sweep`), a fold-in (`recjax.ops.als_fold_in`) and the tests
all run:

* confidence: `check_confidence`, `confidence_of`, and weighted sums that take
  either the scalar a or per-entry C_ij;
* the deadlock guard `cholesky_solve`: one system per LAPACK call on CPU;
* `solve_bucket`, the one implicit solve of a bucket's rows: exact [K, K]
  systems, the [L, L] Woodbury form for rows shorter than K, or conjugate
  gradient, in cache-sized blocks;
* `weighted_lambda_bucket` (Zhou et al. 2008) and `masked_grams`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SOLVERS = ("cholesky", "cg")
CONFIDENCES = ("constant", "linear", "log")


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


def per_entry(c) -> bool:
  """Whether a confidence argument is per entry ([R, L]) rather than the scalar a."""
  return jnp.ndim(c) > 0


def _weighted_sum(c, ys: jax.Array) -> jax.Array:
  """Σ_l c_l y_l [R, K] of gathered rows ys [R, L, K] (zero on padding)."""
  if not per_entry(c):
    return c * jnp.sum(ys, axis=1)
  return jnp.einsum("rl,rlk->rk", c.astype(ys.dtype), ys)


def _weighted_gram(w, ys: jax.Array) -> jax.Array:
  """Σ_l w_l y_l y_lᵀ [R, K, K] of gathered rows ys [R, L, K]."""
  if not per_entry(w):
    return w * jnp.einsum("rlk,rlm->rkm", ys, ys)
  return jnp.einsum("rlk,rlm->rkm", ys * w.astype(ys.dtype)[..., None], ys)


def _weighted_combination(w, ys: jax.Array, coef: jax.Array) -> jax.Array:
  """Σ_l w_l coef_l y_l [R, K]: ys [R, L, K], coef [R, L]."""
  if not per_entry(w):
    return w * jnp.einsum("rlk,rl->rk", ys, coef)
  return jnp.einsum("rlk,rl->rk", ys, w.astype(ys.dtype) * coef)


def _woodbury_scales(w):
  """(E, F) with W = E F: the capacitance system I + F G E is SPD (see `_woodbury_parts`).

  A scalar weight stays whole on the E side (F = None, the identity), as the
  solver always computed it; per-entry weights split as E = F = √w.
  """
  if not per_entry(w):
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


def cholesky_solve(A: jax.Array, rhs: jax.Array) -> jax.Array:
  """Solves the SPD systems A[r] x[r] = rhs[r] ([..., K, K], [..., K]) by Cholesky.

  On CPU each system is factored by its own LAPACK call (`_cholesky_solve_each`),
  so no batched LAPACK kernel, and hence no wait on jaxlib's thread pool, exists
  in any compiled program (the deadlock guard in `recjax.ops.als`); on GPU/TPU the
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


def _woodbury_parts(Y, Yt, cols, mask, prior, *, a, b):
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


# Rows of padded length L <= WOODBURY_RATIO·K take the Woodbury path (see `use_woodbury`).
WOODBURY_RATIO = 1.0


def use_woodbury(length: int, k: int) -> bool:
  """Whether rows of padded length L solve their [L, L] capacitance system instead of [K, K]."""
  return length < k and length <= WOODBURY_RATIO * k


@jax.jit
def shared_inverse(Y, gram, reg):
  """(M⁻¹, Y M⁻¹) with M = gram + λI, through one Cholesky: the Woodbury form's shared part."""
  k = gram.shape[0]
  m = gram + reg * jnp.eye(k, dtype=gram.dtype)
  minv = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(m), True), jnp.eye(k, dtype=gram.dtype))
  minv = 0.5 * (minv + minv.T)
  return minv, Y @ minv


def _cg_rows(Y, gram, cols, mask, prior, x0, *, a, b, reg, steps):
  """`steps` matrix-free CG iterations on the rows' implicit systems, from x0."""
  ys = _gathered(Y, cols, mask)
  rhs = _weighted_sum(a, ys)
  if prior is not None:
    rhs = rhs + reg * prior

  def matvec(x):
    along = jnp.einsum("rlk,rk->rl", ys, x)
    return x @ gram + _weighted_combination(a - b, ys, along) + reg * x

  return _conjugate_gradient(matvec, rhs, x0, steps)


def solve_bucket(Y: jax.Array, gram: jax.Array, cols: jax.Array, mask: jax.Array, *,
                 a, b: float, reg: float, prior: jax.Array | None = None,
                 x0: jax.Array | None = None, solver: str = "cholesky", cg_steps: int = 3,
                 inverse: tuple[jax.Array, jax.Array] | None = None,
                 block_rows: int | None = None) -> jax.Array:
  """Weighted implicit ALS for the R rows of one bucket (pure, jittable).

  The one implicit solve: a training half sweep runs it on each chunk of rows
  (per device), the fold-ins (`fold_in_padded`) on a batch of users, and the
  tests against dense solutions.

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
    inverse: `shared_inverse(Y, gram, reg)`, the pair (M⁻¹, Y M⁻¹): with it,
      the exact solver solves rows shorter than K (`use_woodbury`) through
      their [L, L] capacitance systems (`_woodbury_parts`); without it, always
      through the [K, K] systems.
    block_rows: rows solved at a time, one block after another (`_in_blocks`,
      to keep a block's gathered factors in cache; must divide R); None: all.

  Returns:
    [R, K] new factors.
  """
  if solver not in SOLVERS:
    raise ValueError(f"unknown solver {solver!r}; valid: {SOLVERS}")
  block_rows = cols.shape[0] if block_rows is None else block_rows
  blocked_a = a if per_entry(a) else None  # Per-entry confidences are cut with their rows.
  conf = lambda w: a if w is None else w  # A block's confidences: its slice, or the scalar.
  if solver == "cg":
    start = jnp.zeros((cols.shape[0], Y.shape[1]), Y.dtype) if x0 is None else x0
    return _in_blocks(
        lambda c, m, p, x, w: _cg_rows(Y, gram, c, m, p, x, a=conf(w), b=b, reg=reg,
                                       steps=cg_steps),
        block_rows, cols, mask, prior, start, blocked_a)
  if inverse is not None and use_woodbury(cols.shape[1], Y.shape[1]):
    minv, yt = inverse
    prior_u = None if prior is None else reg * (prior @ minv)
    s, t, u, p = _in_blocks(
        lambda c, m, q, w: _woodbury_parts(Y, yt, c, m, q, a=conf(w), b=b),
        block_rows, cols, mask, prior_u, blocked_a)
    e, _ = _woodbury_scales(a - b)
    return u - _weighted_combination(e, p, cholesky_solve(s, t))
  A, rhs = _in_blocks(
      lambda c, m, p, w: _implicit_systems(Y, gram, c, m, p, a=conf(w), b=b, reg=reg),
      block_rows, cols, mask, prior, blocked_a)
  return cholesky_solve(A, rhs)


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
  return cholesky_solve(A, rhs)


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

