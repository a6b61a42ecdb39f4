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
`lax.map` (`als_rows._in_blocks`, `cache_bytes`, default 1 MiB of gathered factors):
each block gathers its factor rows once, and the CG matvecs (two passes over
them per step) or the Gram einsum then read them from cache.  Gathering all
of a call's rows first and sweeping them from memory 2·(steps + 1) times ran
at the machine's ~10 GB/s; blocking made a K = 64 CG iteration on the
ML-20M-sized matrix 2.4x faster.  The exact solver builds a row's [K, K]
system only when its padded length L ≥ K; shorter rows (most users) solve
their [L, L] capacitance system instead, by the Woodbury identity against
the shared M⁻¹ = (b YᵀY + λI)⁻¹ (see `als_rows._woodbury_parts`): O(L K² + L³) per row
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
here goes through `cholesky_solve`, which on CPU factors one system per LAPACK
call under `lax.map` (`als_rows._cholesky_solve_each`): no compiled program contains a
batched LAPACK call (`tests/test_als_devices.py` checks the compiled HLO of
every entry point, and runs every ALS model on 1, 2, 4 and 8 CPU devices under
a timeout).  The cost (gowalla, 2 cores): the same time per iteration at
K = 64, 18% more at K = 200, and ~0.065 s more compilation per chunk shape
(WORKSPACE.md, "Multi-device ALS").  On GPU/TPU the systems are factored in one
batched call (`platform_dependent`).

Sharding: on a mesh (`recjax.ops.mesh`; the models get the run's from
`prepare`), the rows of each chunk are split over the devices of its "data"
axis (the chunk is padded to a multiple of their count; a "model" axis holds
replicas), Y and the Gram are replicated, and the Gram is computed from a
row-sharded Y with `jax.shard_map` + `psum` over "data".  The chunks'
solutions stay on their devices until the end of the half sweep, when one
call writes them all into X (one all-gather, not one per chunk).  The same
code runs on several processes (`jax.distributed`): the mesh is global.

Layout.  This module is the interface: every name a caller uses is imported
from it (``from recjax.ops import als; als.half_sweep(...)``).  The code lives
in three modules by responsibility:

* `recjax.ops.als_rows`: the pure, jittable per-row algebra: confidence,
  `cholesky_solve` (the guard), `solve_bucket`, the one implicit solve that
  training, fold-in and the tests all run (exact [K, K], Woodbury [L, L] or
  CG, in cache blocks), and the weighted-λ solve;
* `recjax.ops.als_sweep`: the host drivers `half_sweep` and
  `weighted_lambda_half_sweep`, their jitted chunk programs, chunk sizing and
  mesh placement, `init_factors` and `bucketed_sides`;
* `recjax.ops.als_fold_in`: folding new rows in (sparse, dense, padded item
  lists) and the exact `implicit_objective`.

The model-level core built on them (the ALS config fields, the sweep with a
prior mean, fold-in scoring) is `recjax.ops.als_core`.
"""

from __future__ import annotations

from recjax.ops.als_fold_in import (fold_in, fold_in_constants, fold_in_dense, fold_in_padded,
                                    implicit_objective, weighted_lambda_fold_in_dense,
                                    weighted_lambda_fold_in_padded)
from recjax.ops.als_rows import (CONFIDENCES, SOLVERS, SYSTEMS_PER_STEP, WOODBURY_RATIO,
                                 check_confidence, cholesky_solve, confidence_of, implicit_gram,
                                 masked_grams, shared_inverse, solve_bucket, use_woodbury,
                                 weighted_lambda_bucket)
from recjax.ops.als_sweep import (CACHE_BYTES, TRACE_COUNTS, bucketed_sides, chunk_rows,
                                  half_sweep, init_factors, weighted_lambda_half_sweep)

__all__ = [
    "CACHE_BYTES", "CONFIDENCES", "SOLVERS", "SYSTEMS_PER_STEP", "TRACE_COUNTS",
    "WOODBURY_RATIO", "bucketed_sides", "check_confidence", "cholesky_solve", "chunk_rows",
    "confidence_of", "fold_in", "fold_in_constants", "fold_in_dense", "fold_in_padded",
    "half_sweep", "implicit_gram", "implicit_objective", "init_factors", "masked_grams",
    "shared_inverse", "solve_bucket", "use_woodbury", "weighted_lambda_bucket",
    "weighted_lambda_fold_in_dense", "weighted_lambda_fold_in_padded",
    "weighted_lambda_half_sweep",
]
