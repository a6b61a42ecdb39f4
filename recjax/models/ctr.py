"""CTR: collaborative topic regression (Wang & Blei 2011), the CVAE/CRAE papers' baseline.

Items are documents (bag-of-words counts, e.g. citeulike's mult.dat).  Each
item's factor v_j is pulled toward its topic proportions θ_j, which LDA
estimates from the item's words:

  Σ_ij C_ij (p_ij − u_iᵀv_j)² + λ_u Σ_i ||u_i||² + λ_v Σ_j ||v_j − θ_j||²
    − 2 Σ_j [Σ_n c_jn log(θ_jᵀβ_{·,w_jn}) + ρ Σ_k log θ_jk],

(the paper's MAP objective times −2; C_ij = a on clicks, b elsewhere; K = the
number of topics; ρ the pseudo count of Wang & Blei's code).

`prepare` fits LDA to the item documents once per run (`recjax.ops.lda.fit_lda`:
batch variational EM, `lda_em_iters` iterations, α = `lda_alpha` fixed, β
smoothed by `lda_eta`, seeded by `lda_seed`) and keeps β and θ_LDA = E_q[θ] =
γ / Σγ.  α matters: on citeulike-t P1, ranking by θ_LDA·θ_LDA alone (the
content part of CTR's scores) reaches recall@300 = 0.160 with α = 1 but 0.047
with α = 0.1, whose θ puts 74% of a document on one topic on average; so the
default is Griffiths & Steyvers' α = 50/K (1 for K = 50), which the papers
leave unstated.  A block step is one sweep of the CTR code's coordinate ascent:

* (first step only) θ ← θ_LDA and V ← θ, as the code initializes V;
* U ← implicit half sweep against V (exact, as WMF);
* V ← implicit half sweep against U with prior mean θ: the closed form
  v_j = (UᵀC_jU + λ_v I)⁻¹(UᵀC_j p_j + λ_v θ_j);
* θ ← `theta_steps` of the paper's θ update given V (`lda.theta_map_step`: φ
  from θ and β, then one projected-gradient step with backtracking on the
  simplex, as the code's `optimize_simplex`).  `theta_steps = 0` keeps θ fixed
  at θ_LDA ("CTR-fixed").

β stays at its LDA estimate (the authors' code also re-estimates β from the
refined φ; we keep it fixed so that all state that changes lives in the
checkpointed factors and a resumed run equals an uninterrupted one).  Items
with no training clicks get v_j = (b UᵀU + λ_v I)⁻¹ λ_v θ_j: content alone.
Users are folded in at scoring time by one exact solve against V (for the
training users of a weak-generalization split this is the U update itself).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.ops import als_core, lda


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig):
  """CTR's fields; a, b, λ_u, λ_v and the solver fields come from `als_core.PriorALSConfig`
  (a = 1, b = 0.01, λ_u = 0.1 are the CVAE paper's settings)."""

  dim: int = 50  # K: latent dimension = number of LDA topics (CVAE paper: 50).
  reg_v: float = 1.0  # λ_v, the pull of v_j toward θ_j (CVAE paper: 1).
  theta_steps: int = 1  # θ updates given V per block step (the code: 1); 0 keeps θ = θ_LDA.
  theta_pseudo_count: float = 1.0  # ρ, the code's smoothing of θ's expected topic counts.
  lda_alpha: float | None = None  # LDA's symmetric Dirichlet prior on θ; None = 50/K (Griffiths & Steyvers; 1 for K = 50).
  lda_eta: float = 0.01  # Pseudo count added to each topic's expected word counts (0 = ML).
  lda_em_iters: int = 100  # LDA EM iterations in `prepare`.
  lda_e_steps: int = 10  # Coordinate updates per document per EM iteration (γ warm-started).
  lda_seed: int = 0  # Seeds LDA's initial β.
  lda_chunk_docs: int = 4096  # Documents per jitted LDA call.

  def __post_init__(self):
    check_config(self, "ctr", **als_core.merge_rules(als_core.PRIOR_ALS_RULES, {
        "at_least": {"dim": 1, "theta_steps": 0, "theta_pseudo_count": 0.0, "lda_eta": 0.0,
                     "lda_em_iters": 1, "lda_e_steps": 1, "lda_seed": 0, "lda_chunk_docs": 1},
        "above": {"lda_alpha": 0.0}}))


def make(config: Config) -> Model:

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix | None = None):
    del item_content  # θ comes from LDA in `prepare`; the factors are sized by the clicks.
    factors = als_core.init_factors(key, train, config)
    # θ = 0 marks "not yet set": the first block step takes LDA's θ (prepare's output).
    factors["theta"] = jnp.zeros((train.shape[1], config.dim), jnp.float32)
    return {}, factors

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix, mesh=None):
    """ALS buckets of the clicks and LDA on the item documents (the expensive part)."""
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"ctr: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    docs = sp.csr_matrix(item_content, dtype=np.float32)
    buckets = lda.document_buckets(docs)
    alpha = 50.0 / config.dim if config.lda_alpha is None else config.lda_alpha
    fit = lda.fit_lda(docs, config.dim, jax.random.PRNGKey(config.lda_seed), alpha=alpha,
                      eta=config.lda_eta, em_iters=config.lda_em_iters, e_steps=config.lda_e_steps, chunk_docs=config.lda_chunk_docs,
                      buckets=buckets)
    chunks = [(rows, jnp.asarray(ids), jnp.asarray(counts))
              for rows, ids, counts in lda.doc_chunks(buckets, config.lda_chunk_docs)]
    return {**als_core.prepare(train, config, mesh), "beta": jnp.asarray(fit.beta),
            "theta_lda": jnp.asarray(fit.theta, jnp.float32), "doc_chunks": chunks,
            "lda_bounds": fit.bounds}

  def block_step(params, factors, aux, key):
    del params, key
    theta, v = factors["theta"], factors["V"]
    if float(jnp.sum(theta)) == 0.0:  # First step: the code's start V = θ = θ_LDA.
      theta = aux["theta_lda"]
      v = theta
    u, v = als_core.sweep(factors["U"], v, aux, config, prior=theta)
    for _ in range(config.theta_steps):
      theta = lda.theta_map_sweep(theta, v, aux["beta"], aux["doc_chunks"], reg=config.reg_v,
                                  pseudo_count=config.theta_pseudo_count)
    return {"U": u, "V": v, "theta": theta}

  # V itself, not v† + θ: CTR's items without clicks already solve to the content alone.
  score, score_padded, serving_factors = als_core.scorers(config)
  return Model(name="ctr", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, score_padded=score_padded, serving_factors=serving_factors,
               train_defaults={"epochs": 20}, side_keys=("item_content",),
               item_vectors=als_core.factor_v,
               item_vectors_doc="CTR item factors V (pulled toward topic proportions θ)")
