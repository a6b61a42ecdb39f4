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

from recjax.models.base import Model, check_config
from recjax.ops import als, als_core


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig, als_core.ConfidenceConfig):
  """CMF's fields; a, b, λ_u, λ_v and the solver fields come from `als_core.PriorALSConfig`
  (the CRAE paper's a = α = 1, b = β = 0.01), the confidence on R from
  `als_core.ConfidenceConfig`."""

  dim: int = 50  # K (the CRAE paper's setting).
  reg_z: float = 10.0  # λ_z on the word factors.
  content_weight: float = 1.0  # μ, the weight of the content matrix's squared loss.
  content_scale: str = "max"  # "max" (each row / its max), "binary" or "counts".

  def __post_init__(self):
    check_config(self, "cmf", **als_core.merge_rules(
        als_core.PRIOR_ALS_RULES, als_core.CONFIDENCE_RULES,
        {"at_least": {"dim": 1, "reg_z": 0.0, "content_weight": 0.0},
         "choices": {"content_scale": ("max", "binary", "counts")}}))


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

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix | None = None):
    del item_content  # Z is solved from V in each block step; nothing is sized by the words.
    return {}, als_core.init_factors(key, train, config)

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix, mesh=None):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cmf: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    x = scale_content(item_content, config.content_scale)
    return {**als_core.prepare(train, config, mesh), "content": x, "content_t": x.T.tocsr()}

  def block_step(params, factors, aux, key):
    del params, key
    mu = config.content_weight
    # Z is solved against the V of the last step (U's half sweep does not change V).
    z = word_factors(aux["content_t"], np.asarray(factors["V"], np.float64), mu, config.reg_z)
    content_rhs = mu * (aux["content"] @ z)  # [items, K] = μ X Z
    u, v = als_core.sweep(factors["U"], factors["V"], aux, config,
                          prior=jnp.asarray(content_rhs / config.reg_v, jnp.float32),
                          extra_gram=jnp.asarray(mu * (z.T @ z), jnp.float32))
    return {"U": u, "V": v}

  score, score_padded, serving_factors = als_core.scorers(config)
  return Model(name="cmf", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, score_padded=score_padded, serving_factors=serving_factors,
               train_defaults={"epochs": 10}, side_keys=("item_content",),
               item_vectors=als_core.factor_v,
               item_vectors_doc="CMF item factors V (shared by clicks and content)")


def word_factors(content_t: sp.csr_matrix, v: np.ndarray, mu: float, reg_z: float) -> np.ndarray:
  """Z = μ Xᵀ V (μ VᵀV + λ_z I)⁻¹: the exact word-factor update (float64, host)."""
  k = v.shape[1]
  system = mu * (v.T @ v) + reg_z * np.eye(k)
  rhs = mu * (content_t @ v)  # [words, K]
  return np.linalg.solve(system, rhs.T).T

