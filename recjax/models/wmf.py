"""WMF (Hu, Koren & Volinsky 2008), as the Mult-VAE paper's baseline.

Weighted matrix factorization of the click matrix with confidence ``a`` on
clicks and ``b`` on everything else (the paper: b = 1, a tuned over
{2, 5, 10, 30, 50, 100}; K ∈ {100, 200}), trained by alternating least
squares: one block step is a sweep over U (users) then V (items) with the
closed-form solvers of `recjax.ops.als`.  U and V never pass through optax.

Strong generalization: users that training never saw are folded in at
scoring time by one exact solve per user against the fixed V:
u = (b VᵀV + (a − b) Σ_{j∈x} v_j v_jᵀ + λI)⁻¹ a Σ_{j∈x} v_j.
"""

from __future__ import annotations

import dataclasses

import scipy.sparse as sp

from recjax.models.base import Model
from recjax.ops import als


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 100  # K, the latent dimension.
  a: float = 10.0  # Confidence on observed clicks.
  b: float = 1.0  # Confidence on unobserved entries.
  reg: float = 0.01  # λ on both U and V.
  solver: str = "cholesky"  # "cholesky" (exact) or "cg" (warm-started conjugate gradient).
  cg_steps: int = 3  # CG steps per half sweep when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial factors.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths (finer: less padding, more compiles).
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted solve (sets rows per call per bucket).
  fold_in_chunk: int = 512  # Items per step when folding in users (bounds a [batch, chunk, K] temporary).


def make(config: Config) -> Model:
  if config.solver not in ("cholesky", "cg"):
    raise ValueError(f"wmf: solver must be 'cholesky' or 'cg', got {config.solver!r}")
  if config.a < config.b:
    raise ValueError(f"wmf: a (clicks) must be >= b (non-clicks), got a={config.a}, b={config.b}")

  def init(key, train: sp.csr_matrix):
    return {}, als.init_factors(key, train.shape, config.factors, config.init_scale)

  def prepare(train: sp.csr_matrix):
    return als.bucketed_sides(train, config.bucket_growth)  # The implicit solver reads only which entries are stored.

  def block_step(params, factors, buckets, key):
    del params, key
    kw = dict(a=config.a, b=config.b, reg=config.reg, solver=config.solver,
              cg_steps=config.cg_steps, max_bytes_per_call=config.max_bytes_per_call)
    u = als.half_sweep(factors["U"], factors["V"], buckets["users"], **kw)
    v = als.half_sweep(factors["V"], u, buckets["items"], **kw)
    return {"U": u, "V": v}

  def score(params, factors, inputs):
    del params
    v = factors["V"]
    u = als.fold_in_dense(v, inputs, a=config.a, b=config.b, reg=config.reg,
                          item_chunk=config.fold_in_chunk)
    return u @ v.T

  return Model(name="wmf", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, train_defaults={"epochs": 10})

