"""EASE (Steck 2019): the closed-form item-item autoencoder.

B = argmin ||X - X B||² + λ||B||²  s.t. diag(B) = 0
  = I - P · diagMat(1 / diag(P)),  P = (XᵀX + λI)⁻¹,
so B_ij = -P_ij / P_jj off the diagonal and 0 on it.

Two solvers for the same formula:

* `ease_weights` -- jitted JAX (Cholesky, then a triangular solve against the
  identity).  Use it on accelerators and for catalogs that fit a few copies of
  an items x items matrix in memory.
* `ease_weights_host` -- LAPACK ``potrf``/``potri`` from scipy in place (blocks
  through the Schur complement above 16k items), so the peak is about 2.3
  items x items float32 matrices (15 GB at 41k items instead of ~27 GB for the
  JAX path on CPU, where XLA cannot factor in place).

The Gram matrix is built from the sparse matrix on the host
(`sparse_gram`), in column blocks: a dense Gram product over a 0.4%-dense
matrix wastes >99% of its FLOPs (see NOTES-jax-cpu.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg.lapack as lapack
from scipy.linalg.blas import get_blas_funcs
import scipy.sparse as sp


def sparse_gram(matrix: sp.csr_matrix, block: int = 2048, dtype=np.float32) -> np.ndarray:
  """Dense XᵀX of a sparse users x items matrix, computed on the host in blocks.

  Args:
    matrix: csr [n_users, n_items].
    block: number of item columns per block (bounds the temporary memory).
    dtype: dtype of the result.

  Returns:
    [n_items, n_items] symmetric dense array (C order).
  """
  x = sp.csr_matrix(matrix, dtype=np.float64)
  xt = x.T.tocsr()
  xc = x.tocsc()
  n = x.shape[1]
  gram = np.empty((n, n), dtype=dtype)
  for start in range(0, n, block):
    stop = min(n, start + block)
    cols = xc[:, start:stop]
    gram[:, start:stop] = (xt @ cols).toarray()
  return gram


# Bytes per stored entry of the three float64 copies `sparse_gram` makes (csr, its
# transpose, csc: 8-byte value + 4-byte index each).
_SPARSE_COPY_BYTES = 3 * 12
# Dense items x items float32 matrices alive at the peak (measured on CPU, see
# WORKSPACE "Memory checks"): the host solver holds the Gram (inverted in place)
# plus about one more for the block inverse's temporaries above LAPACK_MAX_ROWS or
# for the copy `device_put` hands to jax, and a run adds ~0.15 for what follows the
# solve (evaluation batches, the checkpoint's host copy of a slice); the jitted
# solver holds the host Gram, its device copy and XLA's Cholesky and inverse buffers.
HOST_SOLVE_MATRICES = 2.15
DEVICE_SOLVE_MATRICES = 3.5
_SOLVE_MATRICES = {"host": HOST_SOLVE_MATRICES, "device": DEVICE_SOLVE_MATRICES, "accelerator": 1.0}


def sparse_gram_peak_bytes(n_items: int, nnz: int, block: int = 2048) -> float:
  """Peak host bytes of `sparse_gram`: the float32 Gram, one block's sparse product and
  its float64 densification ([n, block], 8 + 12 bytes an entry at worst), the copies."""
  return 4.0 * n_items ** 2 + 20.0 * n_items * min(block, n_items) + _SPARSE_COPY_BYTES * nnz


def ease_peak_bytes(n_items: int, nnz: int, solver: str) -> float:
  """Estimated peak host bytes of EASE's Gram + solve, before anything is allocated.

  Args:
    n_items: catalog size I.
    nnz: stored entries of the training matrix.
    solver: "host" (`ease_weights_host`), "device" (`ease_weights` on a CPU
      backend: the device is host memory) or "accelerator" (`ease_weights` on a
      GPU/TPU: only the Gram is on the host).

  Returns:
    The larger of the Gram build's peak and the solve's, in bytes.
  """
  return max(sparse_gram_peak_bytes(n_items, nnz), _SOLVE_MATRICES[solver] * 4.0 * n_items ** 2)


def check_memory(train: sp.csr_matrix, solver, model: str = "ease") -> None:
  """Raises `recjax.ops.memory.InsufficientMemory` (one line) when EASE cannot fit.

  Args:
    train: csr [users, items].
    solver: a name for `ease_peak_bytes`, or `n_items -> name` (the "auto" choice
      depends on the catalog, and the message sizes the catalog that would fit).
  """
  from recjax.ops import memory  # Local: memory is host-only and imports nothing of ours.
  solver_for = solver if callable(solver) else (lambda m: solver)
  nnz, n = int(train.nnz), train.shape[1]
  memory.check_catalog_fits(
      model, train, lambda m: ease_peak_bytes(m, nnz, solver_for(m)),
      f"{_SOLVE_MATRICES[solver_for(n)]:g} dense {n:,} x {n:,} float32 matrices at the solve's "
      f"peak")


@jax.jit
def ease_weights(gram: jax.Array, l2: float) -> jax.Array:
  """EASE's item-item weights from a Gram matrix (jitted, any device).

  Args:
    gram: [I, I] XᵀX.
    l2: λ, the L2 penalty added to the diagonal.

  Returns:
    [I, I] weights B with zero diagonal; scores are X @ B.
  """
  n = gram.shape[0]
  eye = jnp.eye(n, dtype=gram.dtype)
  chol = jnp.linalg.cholesky(gram + l2 * eye)
  precision = jax.scipy.linalg.cho_solve((chol, True), eye)
  diag = jnp.diagonal(precision)
  weights = -precision / diag[None, :]
  return jnp.where(eye > 0, 0.0, weights)


def ease_weights_host(gram: np.ndarray, l2: float, overwrite: bool = False) -> np.ndarray:
  """Same result as `ease_weights`, computed in place with LAPACK/BLAS on the host.

  Args:
    gram: [I, I] float32 or float64 XᵀX.  Overwritten when `overwrite`.
    l2: λ.
    overwrite: reuse `gram`'s memory for the result.

  Returns:
    [I, I] weights B with zero diagonal, same dtype as `gram`.

  Raises:
    np.linalg.LinAlgError: when XᵀX + λI is not positive definite (λ too small
      for the precision used).
  """
  a = gram if overwrite else gram.copy()
  n = a.shape[0]
  a[np.diag_indices(n)] += l2
  spd_inverse_host(a)
  diag = np.diagonal(a).copy()
  a /= -diag[None, :]
  a[np.diag_indices(n)] = 0.0
  return a


# OpenBLAS's potrf (through scipy) crashes on float32 matrices of ~33k rows and
# more (seen at 33,000; fine at 24,000), so larger inverses are split in blocks.
LAPACK_MAX_ROWS = 16_384


def spd_inverse_host(a: np.ndarray, max_rows: int = LAPACK_MAX_ROWS) -> np.ndarray:
  """Inverts a symmetric positive-definite C-ordered matrix in place.

  Up to `max_rows` rows: LAPACK potrf + potri on the buffer itself.  Above it:
  the 2 x 2 block inverse through the Schur complement S = A22 - A12ᵀ A11⁻¹ A12
  (both diagonal blocks inverted recursively), so every LAPACK call stays
  below the size where OpenBLAS fails and the rest is GEMM.  Peak extra memory
  is about 1.3x the input for the block path, none for the direct one.

  Returns:
    `a`, now holding its inverse (both triangles).
  """
  n = a.shape[0]
  if n <= max_rows:
    _lapack_inverse(a)
    return a
  h = n // 2
  a11 = np.ascontiguousarray(a[:h, :h])
  a12 = np.ascontiguousarray(a[:h, h:])
  spd_inverse_host(a11, max_rows)  # a11 <- A11⁻¹
  x = a11 @ a12  # A11⁻¹ A12
  s = np.ascontiguousarray(a[h:, h:])
  _gemm_update(s, x, a12)  # s <- A22 - A12ᵀ x: the Schur complement, SPD when A is.
  del a12
  spd_inverse_host(s, max_rows)  # s <- S⁻¹
  p12 = x @ s
  p12 *= -1.0  # P12 = -A11⁻¹ A12 S⁻¹
  _gemm_update(a11, p12.T, x.T)  # P11 = A11⁻¹ + A11⁻¹ A12 S⁻¹ A12ᵀ A11⁻¹ = A11⁻¹ - P12 xᵀ
  del x
  a[:h, :h] = a11
  a[:h, h:] = p12
  a[h:, :h] = p12.T
  a[h:, h:] = s
  return a


def _gemm_update(c: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
  """c -= leftᵀ @ right, in place through BLAS gemm (no temporary the size of c).

  `c` is C-contiguous, so BLAS sees its Fortran-ordered transpose and the
  update is computed as cᵀ -= rightᵀ left.  Operands are passed as they lie in
  memory with a transpose flag, so nothing is copied.
  """
  gemm, = get_blas_funcs(("gemm",), (c,))
  a, trans_a = _blas_operand(right.T)
  b, trans_b = _blas_operand(left)
  out = gemm(-1.0, a, b, beta=1.0, c=c.T, trans_a=trans_a, trans_b=trans_b, overwrite_c=True)
  if not np.shares_memory(out, c):
    raise RuntimeError("BLAS gemm did not update in place")


def _blas_operand(m: np.ndarray) -> tuple[np.ndarray, int]:
  """(array, transpose flag) such that BLAS reads `m` without a copy."""
  if m.flags.f_contiguous:
    return m, 0
  if m.flags.c_contiguous:
    return m.T, 1
  return np.asfortranarray(m), 0


def _lapack_inverse(a: np.ndarray) -> None:
  """In-place potrf + potri on a C-ordered SPD matrix; fills both triangles."""
  n = a.shape[0]
  # A symmetric C-ordered matrix is its own transpose, so its transpose is a
  # Fortran-ordered view that LAPACK can work on in place.
  af = a.T
  potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (af,))
  chol, info = potrf(af, lower=False, overwrite_a=True, clean=False)
  if info != 0:
    raise np.linalg.LinAlgError(
        f"matrix of {n} rows is not positive definite (potrf info={info}); increase l2")
  inv, info = potri(chol, lower=False, overwrite_c=True)
  if info != 0:
    raise np.linalg.LinAlgError(f"inverse failed (potri info={info})")
  if not np.shares_memory(inv, a):
    a[...] = inv.T
  # The valid triangle of the C-ordered buffer is now the lower one.
  _symmetrize_from_lower(a)


def _symmetrize_from_lower(p: np.ndarray, block: int = 1024) -> None:
  """Copies the lower triangle of `p` onto its upper triangle, in place, tile by tile."""
  n = p.shape[0]
  starts = range(0, n, block)
  for bi in starts:
    ri = slice(bi, min(n, bi + block))
    tile = p[ri, ri]
    p[ri, ri] = np.tril(tile) + np.tril(tile, -1).T
    for bj in starts:
      if bj > bi:
        rj = slice(bj, min(n, bj + block))
        p[ri, rj] = p[rj, ri].T


def padded_rows_matmul(cols: jax.Array, vals: jax.Array, mask: jax.Array,
                       weights: jax.Array) -> jax.Array:
  """x @ W for rows x given as padded item lists: Σ_l vals_l W[cols_l, :] (pure, jittable).

  Reads L rows of W per input row instead of all of them (a user with 20 items
  touches 20 rows of a 20k x 20k EASE matrix, not 20k); a `fori_loop` over the
  slots keeps the temporary at [B, n], never [B, L, n].

  Args:
    cols: int32 [B, L]; vals: float [B, L]; mask: bool [B, L] (False on padding).
    weights: [n, m].

  Returns:
    [B, m].
  """
  cols = jnp.asarray(cols)
  coef = jnp.where(mask, vals, 0.0).astype(weights.dtype)

  def body(l, acc):
    return acc + coef[:, l][:, None] * weights[cols[:, l]]

  init = jnp.zeros((cols.shape[0], weights.shape[1]), weights.dtype)
  return jax.lax.fori_loop(0, cols.shape[1], body, init)
