"""Implicit-ALS factors for rows training never saw, and the exact implicit objective.

Folding a user in is one exact solve against the fixed item factors (the U
update of a half sweep for that user alone): from a sparse matrix of new rows
(`fold_in`, through `half_sweep`), from dense rows (`fold_in_dense`, how the
factor models score), or from padded item lists (`fold_in_padded`, serving,
with the shared part `fold_in_constants` computed once).  `implicit_objective`
evaluates, on the host in float64, the loss each half sweep minimizes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh

from recjax.data.batching import bucketed_rows
from recjax.ops.als_rows import (cholesky_solve, confidence_of, implicit_gram, masked_grams,
                                 per_entry, shared_inverse, solve_bucket,
                                 weighted_lambda_bucket)
from recjax.ops.als_sweep import half_sweep


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
  if per_entry(conf):  # Per-entry weights enter the sums ...
    weighted = masked_grams(jnp.where(observed, conf - b, 0.0), Y, item_chunk)
    rhs = jnp.where(observed, conf, 0.0) @ Y
  else:  # ... a scalar multiplies them once.
    weighted = (conf - b) * masked_grams(c, Y, item_chunk)
    rhs = conf * (c @ Y)
  system = (b * (Y.T @ Y))[None] + weighted + reg * jnp.eye(k, dtype=Y.dtype)[None]
  return cholesky_solve(system, rhs)


def fold_in_constants(Y: jax.Array, b: float, reg: float) -> dict:
  """What every fold-in against fixed Y shares, computed once (e.g. when a model is served).

  Returns:
    {"gram": b YᵀY [K, K], "minv": M⁻¹, "y_minv": Y M⁻¹ [n, K]} with M = b YᵀY + λI:
    the [K, K] systems' shared part and the Woodbury form's (`solve_bucket`'s
    ``inverse``).
  """
  gram = implicit_gram(Y, b)
  minv, y_minv = shared_inverse(Y, gram, reg)
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
  if constants is None:
    return solve_bucket(Y, implicit_gram(Y, b), cols, mask, a=conf, b=b, reg=reg)
  return solve_bucket(Y, constants["gram"], cols, mask, a=conf, b=b, reg=reg,
                      inverse=(constants["minv"], constants["y_minv"]))


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
  return cholesky_solve(system, jnp.where(values > 0, values, 0.0).astype(Y.dtype) @ Y)


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
