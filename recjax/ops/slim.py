"""SLIM (Ning & Karypis, ICDM 2011): sparse non-negative item-item weights, solved on device.

The objective, exactly (one elastic-net regression per item column j)::

  F(W) = ½ ||X − X W||²_F + (l2 / 2) ||W||²_F + l1 ||W||_1
  s.t.  W ≥ 0,  diag(W) = 0.

This is the parametrization of the SLIM paper and of its reference C library
(``slim_learn -lambda=l1 -beta=l2``), so the Mult-VAE grid "both regularization
parameters over {0.1, 0.5, 1, 5}" is a grid over ``l1`` and ``l2`` directly.
scikit-learn's ``ElasticNet`` (per column, ``n`` training users) minimizes
``1/(2n) ||y − Xw||² + α ρ ||w||_1 + α (1 − ρ)/2 ||w||²``, i.e. F/n with
``α = (l1 + l2) / n`` and ``l1_ratio ρ = l1 / (l1 + l2)``.

Everything is a function of the Gram matrix G = XᵀX: with W ≥ 0,

  F(W) = ½ tr(WᵀGW) − tr(GW) + ½ tr(G) + (l2/2) ||W||²_F + l1 Σ W,

and the gradient of the smooth part is GW − G + l2 W.  F separates over the
columns of W, so the solvers work on blocks of item columns (``chunk``) and
never loop over items in Python.  Two solvers:

* ``"admm"`` (default; the ADMM of Steck et al., "ADMM SLIM", WSDM 2020, here
  with the exact SLIM objective): one factorization of G + (l2 + ρ)I, then per
  iteration one [I, I] x [I, chunk] product.  Its convergence depends little
  on the conditioning of G, which on real data is extreme (ML-1M:
  λ_max(G) ≈ 1.6e5, λ_min ≈ 0, so κ ≈ 1e5-1e6 with l2 ∈ [0.1, 5]).  Iterates
  are not monotone in F; the returned W (the proximal variable) is always
  exactly feasible.  On ML-1M (l1 = l2 = 1) it is within 2e-4 of the optimal
  F after 200 iterations and 2e-5 after 500.
* ``"fista"``: monotone FISTA (Beck & Teboulle 2009, MFISTA) with step
  1 / (λ_max(G) + l2) and the prox of l1 + non-negativity,
  ``max(V − step·l1, 0)`` with the diagonal forced to 0.  F(W_k) never rises,
  its worst-case rate depends on sqrt(κ); on ML-1M it needs about twice
  ADMM's iterations (1.4e-2 above the optimum after 100, 2e-5 after 1000).
  It is the monotone reference and needs no factorization.

Memory on device, beyond the [I, I] result: G; for ADMM also the precision
matrix P = (G + (l2+ρ)I)⁻¹ and its Cholesky factor while it is formed
(2 more [I, I]); per column block 6 (ADMM) to 8 (FISTA) [I, chunk] arrays.
With the default ``chunk=None`` that is about 8-10 [I, I] float32 arrays in all
(0.5 GB at I = 3.6k, 13 GB at 20k): pass a ``chunk`` for large catalogs.  The
blocks' results are gathered into [I, I] at the end (one more transient).
``chunk`` cannot remove the dense Gram: ADMM's precision P is a dense [I, I]
formed from it, FISTA multiplies by it, and W is dense [I, I] anyway, so the
floor is ~5 [I, I] on a CPU backend (`slim_peak_bytes`, checked before the
Gram is built by the model's `prepare`).

Cost: 2·I²·chunk FLOPs per iteration per block, i.e. 2·I³ per iteration; on
ML-1M (I = 3591) 200 ADMM iterations take ~150 s on 2 shared CPU cores and
~3 s end to end on one H100.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Full float32 products on every backend: by default GPUs multiply float32 in
# TF32 (10-bit mantissa), too coarse for the KKT tolerances the tests check.
_mm = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)


def slim_objective(gram: jax.Array, weights: jax.Array, l1: float, l2: float) -> jax.Array:
  """F(W) from the Gram matrix (equal to the data-space objective, constant included).

  Args:
    gram: [I, I] G = XᵀX.
    weights: [I, I] W (the l1 term is l1·Σ|W|, so it is F for any W).
    l1: weight of ||W||_1.
    l2: weight of ½||W||²_F.

  Returns:
    Scalar ½||X − XW||²_F + (l2/2)||W||²_F + l1||W||_1.
  """
  gw = _mm(gram, weights)
  return (0.5 * jnp.sum(weights * gw) - jnp.sum(gram * weights) + 0.5 * jnp.trace(gram)
          + 0.5 * l2 * jnp.sum(weights * weights) + l1 * jnp.sum(jnp.abs(weights)))


def max_eigenvalue_bound(gram: jax.Array, n_iters: int = 30) -> jax.Array:
  """An upper bound on λ_max of a symmetric matrix, by power iteration on |G|.

  After `n_iters` power steps on |G| from the ones vector, the Collatz-Wielandt
  bound max_i (|G| v)_i / v_i (v > 0) bounds ρ(|G|) ≥ λ_max(G) from above,
  so a step 1 / bound is always safe; for a Gram matrix of non-negative data
  |G| = G and the bound is tight once v has converged.

  Returns:
    Scalar upper bound.
  """
  a = jnp.abs(gram)
  v = jnp.ones((gram.shape[0],), gram.dtype)

  def body(_, v):
    av = _mm(a, v)
    return av / jnp.maximum(jnp.max(av), jnp.finfo(gram.dtype).tiny)

  v = jax.lax.fori_loop(0, n_iters, body, v)
  v = v + 1e-6 * jnp.max(v) + jnp.finfo(gram.dtype).tiny  # strictly positive
  return jnp.max((_mm(a, v)) / v)


def _column_blocks(n: int, chunk: int | None) -> tuple[jax.Array, jax.Array]:
  """Column ids [n_blocks, c] (the last block padded with copies of column n-1) and their mask."""
  c = n if chunk is None else max(1, min(chunk, n))
  n_blocks = -(-n // c)
  ids = jnp.arange(n_blocks * c, dtype=jnp.int32).reshape(n_blocks, c)
  return jnp.minimum(ids, n - 1), ids < n


def _column_objective(gram_w, w, target, target_diag, l1, l2):
  """F restricted to a block of columns, one value per column; `w` feasible (≥ 0)."""
  return (0.5 * jnp.sum(w * gram_w, axis=0) - jnp.sum(target * w, axis=0) + 0.5 * target_diag
          + 0.5 * l2 * jnp.sum(w * w, axis=0) + l1 * jnp.sum(w, axis=0))


def _feasible(w, offdiag):
  return jnp.where(offdiag, jnp.maximum(w, 0.0), 0.0)


def _fista_block(gram, cols, w0, l1, l2, step, n_iters):
  """MFISTA on the columns `cols`; returns (W[:, cols], F per iteration per column)."""
  n = gram.shape[0]
  c = cols.shape[0]
  target = gram[:, cols]
  target_diag = target[cols, jnp.arange(c)]
  offdiag = jnp.arange(n)[:, None] != cols[None, :]
  objective = lambda gw, w: _column_objective(gw, w, target, target_diag, l1, l2)

  x = jnp.zeros_like(target) if w0 is None else _feasible(w0, offdiag)
  gx = _mm(gram, x)
  fx = objective(gx, x)

  def body(carry, _):
    x, gx, fx, y, gy, t = carry
    grad = gy - target + l2 * y
    z = _feasible(y - step * (grad + l1), offdiag)
    gz = _mm(gram, z)
    fz = objective(gz, z)
    better = (fz <= fx)[None, :]
    x_new = jnp.where(better, z, x)
    gx_new = jnp.where(better, gz, gx)
    fx_new = jnp.minimum(fz, fx)
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    a, b = t / t_new, (t - 1.0) / t_new
    y = x_new + a * (z - x_new) + b * (x_new - x)
    gy = gx_new + a * (gz - gx_new) + b * (gx_new - gx)  # G·y from products already made.
    return (x_new, gx_new, fx_new, y, gy, t_new), fx_new

  init = (x, gx, fx, x, gx, jnp.ones((), gram.dtype))
  (x, *_), history = jax.lax.scan(body, init, None, length=n_iters)
  return x, history


def _admm_block(gram, precision, cols, w0, l1, l2, rho, n_iters, track):
  """ADMM on the columns `cols` (split B = C, scaled dual Γ); returns (C, F per iteration)."""
  n = precision.shape[0]
  c = cols.shape[0]
  ar = jnp.arange(c)
  offdiag = jnp.arange(n)[:, None] != cols[None, :]
  p_cols = precision[:, cols]
  p_diag = p_cols[cols, ar]
  # (P G)[:, cols] = (I − (l2 + ρ) P)[:, cols]: G is not needed inside the loop.
  base = jnp.where(offdiag, 0.0, 1.0).astype(precision.dtype) - (l2 + rho) * p_cols
  target = gram[:, cols] if track else None
  target_diag = target[cols, ar] if track else None

  cw = jnp.zeros((n, c), precision.dtype) if w0 is None else _feasible(w0, offdiag)
  gamma = jnp.zeros_like(cw)

  def body(carry, _):
    cw, gamma = carry
    b = base + rho * (_mm(precision, cw - gamma))
    # The diagonal constraint's multiplier, as in EASE: subtract P e_j · b_jj / P_jj.
    b = b - p_cols * (b[cols, ar] / p_diag)[None, :]
    cw = _feasible(b + gamma - l1 / rho, offdiag)
    gamma = gamma + b - cw
    f = (_column_objective(_mm(gram, cw), cw, target, target_diag, l1, l2) if track
         else jnp.zeros((c,), precision.dtype))
    return (cw, gamma), f

  (cw, _), history = jax.lax.scan(body, (cw, gamma), None, length=n_iters)
  return cw, history


# Dense items x items float32 matrices alive at the solve's peak on a CPU backend
# (measured; see WORKSPACE "Memory checks"): the host Gram and its device copy, the
# Cholesky factor and precision (ADMM) or |G| (FISTA), the blocks' results and their
# gathered [I, I] copy; plus the per-block [I, chunk] arrays, ~3.5 (ADMM) or 4 (FISTA)
# [I, I]'s worth when chunk = I.
_SOLVE_MATRICES = {"admm": 5.5, "fista": 5.0}
_BLOCK_MATRICES = {"admm": 3.5, "fista": 4.0}


def slim_peak_bytes(n_items: int, nnz: int, method: str = "admm", chunk: int | None = None,
                    accelerator: bool = False) -> float:
  """Estimated peak host bytes of SLIM's Gram + solve (`slim_weights`), before allocating.

  The Gram must exist: ADMM needs the dense precision P = (G + (l2 + ρ)I)⁻¹ and
  FISTA products with G, and W itself is a dense [I, I]; `chunk` bounds only the
  per-block [I, chunk] arrays.  On an accelerator only the Gram build is on the host.
  """
  from recjax.ops import ease as ease_ops  # Local: ease imports nothing of slim.
  build = ease_ops.sparse_gram_peak_bytes(n_items, nnz)
  if accelerator:
    return build
  c = n_items if chunk is None else max(1, min(int(chunk), n_items))
  dense = 4.0 * n_items ** 2
  solve = _SOLVE_MATRICES[method] * dense + _BLOCK_MATRICES[method] * 4.0 * n_items * c
  return max(build, solve)


def check_memory(train, method: str = "admm", chunk: int | None = None,
                 accelerator: bool = False) -> None:
  """Raises `recjax.ops.memory.InsufficientMemory` (one line) when SLIM cannot fit."""
  from recjax.ops import memory
  nnz, n = int(train.nnz), train.shape[1]
  memory.check_catalog_fits(
      "slim", train, lambda m: slim_peak_bytes(m, nnz, method, chunk, accelerator),
      f"about {slim_peak_bytes(n, nnz, method, chunk, accelerator) / (4.0 * n * n):.1f} dense "
      f"{n:,} x {n:,} float32 matrices: Gram, {'precision, ' if method == 'admm' else ''}weights"
      + ("" if chunk else "; --set column_chunk=... bounds the per-block part"))


@functools.partial(jax.jit, static_argnames=("n_iters", "method", "chunk", "return_history"))
def slim_weights(gram: jax.Array, l1: float, l2: float, n_iters: int, W0: jax.Array | None = None,
                 *, method: str = "admm", rho: float | None = None, chunk: int | None = None,
                 return_history: bool = False):
  """SLIM's item-item weights from a Gram matrix (jitted, any device).

  Args:
    gram: [I, I] G = XᵀX (float32 or float64).
    l1: weight of ||W||_1 (SLIM's λ).
    l2: weight of ½||W||²_F (SLIM's β).
    n_iters: iterations (fixed; static).
    W0: optional [I, I] warm start (projected onto W ≥ 0, diag 0).
    method: "admm" (default) or "fista" (monotone FISTA); see the module docstring.
    rho: ADMM penalty; None uses 5·mean(diag G) + l2 (5x the mean item count;
      on ML-1M, ρ ≈ 1000 = 5.3x reaches F within 2e-4 of its optimum in 200
      iterations; 300 and 3000 need about twice as many, 100 ten times).
    chunk: solve item columns in blocks of this many (memory O(I x chunk) per
      block beyond G, P and W); None solves all columns at once.
    return_history: also return F(W_k) after each iteration (for "admm" this
      costs one more product per iteration).

  Returns:
    [I, I] weights W with W ≥ 0 and diag(W) = 0 exactly; scores are X @ W.
    With `return_history`, (W, [n_iters] objective values).
  """
  if method not in ("admm", "fista"):
    raise ValueError(f"slim: method must be 'admm' or 'fista', got {method!r}")
  n = gram.shape[0]
  blocks, valid = _column_blocks(n, chunk)
  w0_block = (lambda cols: None) if W0 is None else (lambda cols: W0[:, cols])
  if method == "fista":
    step = 1.0 / (max_eigenvalue_bound(gram) + l2)
    solve = lambda cols: _fista_block(gram, cols, w0_block(cols), l1, l2, step, n_iters)
  else:
    rho = 5.0 * jnp.mean(jnp.diagonal(gram)) + l2 if rho is None else rho
    eye = jnp.eye(n, dtype=gram.dtype)
    chol = jnp.linalg.cholesky(gram + (l2 + rho) * eye)
    precision = jax.scipy.linalg.cho_solve((chol, True), eye)
    solve = lambda cols: _admm_block(gram, precision, cols, w0_block(cols), l1, l2, rho, n_iters,
                                     return_history)
  w, history = jax.lax.map(solve, blocks)  # [n_blocks, I, c], [n_blocks, n_iters, c]
  w = jnp.transpose(w, (1, 0, 2)).reshape(n, -1)[:, :n]
  if not return_history:
    return w
  return w, jnp.sum(jnp.where(valid[:, None, :], history, 0.0), axis=(0, 2))
