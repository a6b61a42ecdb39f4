"""CMF: collective matrix factorization (Singh & Gordon 2008), the CRAE paper's baseline.

The click matrix R (users x items) and an item-content matrix X (items x
words) are factorized together with shared item factors V:

  Σ_ij C_ij (p_ij − u_iᵀv_j)² + μ Σ_jw (x_jw − z_wᵀv_j)²
    + λ_u ||U||² + λ_v ||V||² + λ_z ||Z||²,

with Hu et al.'s confidence on R (a on clicks, b elsewhere; or, as in WMF,
from the stored counts r: "linear" b + α r, "log" b + α log(1 + r/ε)) and
squared loss of uniform weight μ on every entry of X (Singh & Gordon's
Gaussian case).  A
block step is one sweep of closed-form updates, each exact for its block:

* U ← implicit half sweep against V (as WMF);
* Z ← μ Xᵀ V (μ VᵀV + λ_z I)⁻¹, all words at once (X enters only through XᵀV);
* V ← implicit half sweep against U with the extra Gram term μ ZᵀZ and the
  extra right-hand side μ Zᵀ x_j (passed as the prior mean μ Zᵀx_j / λ_v).

So items with no clicks get factors from their content alone.  Content rows
are scaled to a maximum of 1 (`content_scale="max"`, as CDL scales its bag of
words), or used as binary presence or raw counts.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model, als_serving, check_config
from recjax.ops import als


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 50  # K (the CRAE paper's setting).
  a: float = 1.0  # Confidence on clicks (CRAE: α = 1).
  b: float = 0.01  # Confidence elsewhere (CRAE: β = 0.01).
  reg_u: float = 0.1  # λ_u.
  reg_v: float = 10.0  # λ_v.
  reg_z: float = 10.0  # λ_z on the word factors.
  content_weight: float = 1.0  # μ, the weight of the content matrix's squared loss.
  content_scale: str = "max"  # "max" (each row / its max), "binary" or "counts".
  solver: str = "cholesky"  # "cholesky" or "cg" for the U and V half sweeps.
  cg_steps: int = 3  # CG steps when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial factors.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths (finer: less padding, more compiles).
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted solve.
  confidence: str = "constant"  # On R: "constant" (a on stored entries), "linear" (b + α r) or "log" (b + α log(1 + r/ε)).
  alpha: float = 40.0  # α of "linear"/"log" confidence (> 0; Hu et al.'s 40); unused by "constant".
  epsilon: float = 1.0  # ε of "log" confidence (> 0); unused otherwise.

  def __post_init__(self):
    check_config(self, "cmf", at_least={"factors": 1, "b": 0.0, "reg_u": 0.0, "reg_v": 0.0,
                                       "reg_z": 0.0, "content_weight": 0.0, "cg_steps": 1,
                                       "max_bytes_per_call": 1},
                 above={"a": 0.0, "init_scale": 0.0, "bucket_growth": 1.0},  # α, ε: make() (per confidence).
                 choices={"solver": als.SOLVERS, "confidence": als.CONFIDENCES,
                          "content_scale": ("max", "binary", "counts")})


def scale_content(content: sp.csr_matrix, how: str) -> sp.csr_matrix:
  """Rows of the item-content matrix as the model sees them (float32 csr)."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  if how == "binary":
    x.data[:] = 1.0
  elif how == "max":
    row_max = np.maximum.reduceat(x.data, x.indptr[:-1]) if x.nnz else np.zeros(0)
    lengths = np.diff(x.indptr)
    scale = np.ones(x.shape[0], np.float32)
    nonempty = lengths > 0
    scale[nonempty] = row_max[nonempty] if len(row_max) == len(lengths) else 1.0
    x.data /= np.repeat(scale, lengths)
  elif how != "counts":
    raise ValueError(f"cmf: content_scale must be 'max', 'binary' or 'counts', got {how!r}")
  return x


def make(config: Config) -> Model:
  als.check_confidence(config.confidence, config.alpha, config.epsilon, who="cmf")
  conf = dict(confidence=config.confidence, alpha=config.alpha, epsilon=config.epsilon)

  def init(key, train: sp.csr_matrix):
    return {}, als.init_factors(key, train.shape, config.factors, config.init_scale)

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cmf: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    x = scale_content(item_content, config.content_scale)
    return {**als.bucketed_sides(train, config.bucket_growth), "content": x, "content_t": x.T.tocsr()}

  def block_step(params, factors, aux, key):
    del params, key
    kw = dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call, **conf)
    mu = config.content_weight
    u = als.half_sweep(factors["U"], factors["V"], aux["users"], reg=config.reg_u, **kw)
    v_host = np.asarray(factors["V"], np.float64)
    z = word_factors(aux["content_t"], v_host, mu, config.reg_z)
    content_rhs = mu * (aux["content"] @ z)  # [items, K] = μ X Z
    v = als.half_sweep(factors["V"], u, aux["items"], reg=config.reg_v,
                       prior=jnp.asarray(content_rhs / config.reg_v, jnp.float32),
                       extra_gram=jnp.asarray(mu * (z.T @ z), jnp.float32), **kw)
    return {"U": u, "V": v}

  def score(params, factors, inputs):
    del params
    v = factors["V"]
    return als.fold_in_dense(v, inputs, a=config.a, b=config.b, reg=config.reg_u, **conf) @ v.T

  score_padded, serving_factors = als_serving(a=config.a, b=config.b, reg=config.reg_u,
                                              item_vectors=lambda params, factors: factors["V"],
                                              **conf)

  def item_vectors(params, factors):
    del params
    return factors["V"]

  return Model(name="cmf", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, score_padded=score_padded, serving_factors=serving_factors,
               train_defaults={"epochs": 10}, side_keys=("item_content",),
               item_vectors=item_vectors,
               item_vectors_doc="CMF item factors V (shared by clicks and content)")


def word_factors(content_t: sp.csr_matrix, v: np.ndarray, mu: float, reg_z: float) -> np.ndarray:
  """Z = μ Xᵀ V (μ VᵀV + λ_z I)⁻¹: the exact word-factor update (float64, host)."""
  k = v.shape[1]
  system = mu * (v.T @ v) + reg_z * np.eye(k)
  rhs = mu * (content_t @ v)  # [words, K]
  return np.linalg.solve(system, rhs.T).T

