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

from recjax.models.base import Model, check_config
from recjax.ops import als, als_core


@dataclasses.dataclass(frozen=True)
class Config(als_core.ALSConfig, als_core.ConfidenceConfig):
  """WMF's weights; the solver fields come from `als_core.ALSConfig`, the confidence ones from
  `als_core.ConfidenceConfig`."""

  dim: int = 100  # K, the latent dimension of U and V.
  a: float = 10.0  # Confidence on observed clicks.
  b: float = 1.0  # Confidence on unobserved entries.
  reg: float = 0.01  # λ on both U and V.

  def __post_init__(self):
    check_config(self, "wmf", **als_core.merge_rules(
        als_core.ALS_RULES, als_core.CONFIDENCE_RULES,
        {"at_least": {"dim": 1, "b": 0.0, "reg": 0.0}, "above": {"a": 0.0}}))


def make(config: Config) -> Model:
  als.check_confidence(config.confidence, config.alpha, config.epsilon, who="wmf")
  if config.confidence == "constant" and config.a < config.b:
    raise ValueError(f"wmf: a (clicks) must be >= b (non-clicks), got a={config.a}, b={config.b}")

  def init(key, train: sp.csr_matrix):
    return {}, als_core.init_factors(key, train, config)

  def prepare(train: sp.csr_matrix, mesh=None):
    # The buckets carry the stored values; only "linear"/"log" confidence reads them.
    return als_core.prepare(train, config, mesh)

  def block_step(params, factors, buckets, key):
    del params, key
    u, v = als_core.sweep(factors["U"], factors["V"], buckets, config, reg_u=config.reg,
                          reg_v=config.reg)
    return {"U": u, "V": v}

  score, score_padded, serving_factors = als_core.scorers(config, reg=config.reg)
  return Model(name="wmf", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, score_padded=score_padded, serving_factors=serving_factors,
               train_defaults={"epochs": 10}, item_vectors=als_core.factor_v,
               item_vectors_doc="WMF item factors V")
