"""WMF (Hu, Koren & Volinsky 2008), as the Mult-VAE paper's baseline.

Weighted matrix factorization of the click matrix with confidence ``a`` on
clicks and ``b`` on everything else (the paper: b = 1, a tuned over
{2, 5, 10, 30, 50, 100}; K ∈ {100, 200}), trained by alternating least
squares: one block step is a sweep over U (users) then V (items) with the
closed-form solvers of `recjax.ops.als`.  U and V never pass through optax.

Confidence from counts (Hu et al. §4): with ``confidence="constant"`` every
stored entry has confidence a whatever its value (clicks); with "linear"
c_ij = b + α r_ij (Eq. 1, b = 1) and with "log" c_ij = b + α log(1 + r_ij/ε)
(Eq. 6), where r_ij are the stored values of the training and fold-in rows
(play/click counts, e.g. ``DataConfig.implicit_values="counts"``).  The
preference stays 1 on every stored entry.

Strong generalization: users that training never saw are folded in at
scoring time by one exact solve per user against the fixed V:
u = (b VᵀV + Σ_{j∈x} (c_j − b) v_j v_jᵀ + λI)⁻¹ Σ_{j∈x} c_j v_j, with c_j the
confidence of the user's input value x_j > 0 (a under "constant").
"""

from __future__ import annotations

import dataclasses

import scipy.sparse as sp

from recjax.models.base import Model, als_serving, check_config
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
  confidence: str = "constant"  # "constant" (a on stored entries), "linear" (b + α r) or "log" (b + α log(1 + r/ε)).
  alpha: float = 40.0  # α of "linear"/"log" confidence (> 0; Hu et al.'s 40); unused by "constant".
  epsilon: float = 1.0  # ε of "log" confidence (> 0); unused otherwise.

  def __post_init__(self):
    check_config(self, "wmf", at_least={"factors": 1, "b": 0.0, "reg": 0.0, "cg_steps": 1,
                                       "max_bytes_per_call": 1, "fold_in_chunk": 1},
                 above={"a": 0.0, "init_scale": 0.0, "bucket_growth": 1.0},  # α, ε: make() (per confidence).
                 choices={"solver": als.SOLVERS, "confidence": als.CONFIDENCES})


def make(config: Config) -> Model:
  als.check_confidence(config.confidence, config.alpha, config.epsilon, who="wmf")
  if config.confidence == "constant" and config.a < config.b:
    raise ValueError(f"wmf: a (clicks) must be >= b (non-clicks), got a={config.a}, b={config.b}")
  conf = dict(confidence=config.confidence, alpha=config.alpha, epsilon=config.epsilon)

  def init(key, train: sp.csr_matrix):
    return {}, als.init_factors(key, train.shape, config.factors, config.init_scale)

  def prepare(train: sp.csr_matrix):
    # The buckets carry the stored values; only "linear"/"log" confidence reads them.
    return als.bucketed_sides(train, config.bucket_growth)

  def block_step(params, factors, buckets, key):
    del params, key
    kw = dict(a=config.a, b=config.b, reg=config.reg, solver=config.solver,
              cg_steps=config.cg_steps, max_bytes_per_call=config.max_bytes_per_call, **conf)
    u = als.half_sweep(factors["U"], factors["V"], buckets["users"], **kw)
    v = als.half_sweep(factors["V"], u, buckets["items"], **kw)
    return {"U": u, "V": v}

  def score(params, factors, inputs):
    del params
    v = factors["V"]
    u = als.fold_in_dense(v, inputs, a=config.a, b=config.b, reg=config.reg,
                          item_chunk=config.fold_in_chunk, **conf)
    return u @ v.T

  score_padded, serving_factors = als_serving(a=config.a, b=config.b, reg=config.reg,
                                              item_vectors=lambda params, factors: factors["V"],
                                              **conf)

  def item_vectors(params, factors):
    del params
    return factors["V"]

  return Model(name="wmf", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, score_padded=score_padded, serving_factors=serving_factors,
               train_defaults={"epochs": 10}, item_vectors=item_vectors,
               item_vectors_doc="WMF item factors V")

