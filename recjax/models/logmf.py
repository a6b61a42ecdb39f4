"""Log-count MF: the matrix-factorization baseline of the collaborative-RNN paper (Ko et al., Eq. 8–10).

The (user, item) counts c become m = log(c + 1); M ≈ U Vᵀ is fitted on the
observed entries only with Zhou et al.'s weighted-λ regularization
λ(Σ_u d_u ||u_u||² + Σ_i d_i ||v_i||²), d = number of observed entries, by
alternating exact solves (`recjax.ops.als.weighted_lambda_half_sweep`).  The
next-item distribution is the softmax of z_u = V u_u (Eq. 9–10), the same for
every step of a user's sequence.

The matrix values must be counts for the log to mean anything: under the
strong-generalization pipeline clicks are binarized, so every m is log 2 and
the model reduces to weighted-λ MF of the click pattern.
Users never seen in training are folded in by the same weighted-λ solve
against the fixed V.

Under the sequence protocol (`recjax.eval.sequence`; data protocol
"sequence-tail-novalid", whose training matrix holds the event counts of each
user's training sequence) ``score`` takes the protocol's batches and gives
log softmax(V u_u)[x_{t+1}] from the user's trained row u_u (Ko et al.'s MF
baseline); given dense rows it scores them for ranking as any factor model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.ops import als


@dataclasses.dataclass(frozen=True)
class Config:
  dim: int = 64  # D, the latent dimension.
  reg: float = 0.05  # λ of Eq. 8 (scaled by each row's number of observed entries).
  init_scale: float = 0.1  # Standard deviation of the random initial factors.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths (finer: less padding, more compiles).
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted solve.

  def __post_init__(self):
    check_config(self, "mf-logcount", at_least={"dim": 1, "reg": 0.0, "max_bytes_per_call": 1},
                 above={"init_scale": 0.0, "bucket_growth": 1.0})


def log_counts(matrix: sp.csr_matrix) -> sp.csr_matrix:
  """m = log(c + 1) on the stored entries (duplicates summed first)."""
  m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
  m.sum_duplicates()
  m.data = np.log1p(m.data)
  return m


@jax.jit
def _sequence_log_probs(u, v, users, targets):
  """[B, T] log softmax(V u_user)[target] (Eq. 10: the same distribution at every step)."""
  logp = jax.nn.log_softmax(u[users] @ v.T, axis=-1)
  return jnp.take_along_axis(logp, targets, axis=1)


def make(config: Config) -> Model:
  def init(key, train: sp.csr_matrix):
    return {}, als.init_factors(key, train.shape, config.dim, config.init_scale)

  def prepare(train: sp.csr_matrix, mesh=None):
    return {**als.bucketed_sides(log_counts(train), config.bucket_growth), "mesh": mesh}

  def block_step(params, factors, buckets, key):
    del params, key
    kw = dict(reg=config.reg, max_bytes_per_call=config.max_bytes_per_call, mesh=buckets["mesh"])
    u = als.weighted_lambda_half_sweep(factors["U"], factors["V"], buckets["users"], **kw)
    v = als.weighted_lambda_half_sweep(factors["V"], u, buckets["items"], **kw)
    return {"U": u, "V": v}

  def score(params, factors, inputs):
    """z = V u (Eq. 9); its log-softmax is the next-item log-probability (Eq. 10).

    `inputs`: dense fold-in rows [B, I] (ranking: returns z), or a sequence
    protocol batch (returns log P of each next item under the user's trained row).
    """
    del params
    if isinstance(inputs, dict):
      return _sequence_log_probs(factors["U"], factors["V"], inputs["users"], inputs["targets"])
    v = factors["V"]
    counts = jnp.log1p(jnp.maximum(inputs, 0.0))
    return als.weighted_lambda_fold_in_dense(v, counts, reg=config.reg) @ v.T

  def score_padded(params, factors, items, values, mask):
    del params
    v = factors["V"]
    counts = jnp.log1p(jnp.maximum(values, 0.0))
    return als.weighted_lambda_fold_in_padded(v, items, counts, mask, reg=config.reg) @ v.T

  def item_vectors(params, factors):
    """The item factors V that score multiplies with."""
    del params
    return factors["V"]

  return Model(name="mf-logcount", config=config, init=init, prepare=prepare,
               block_step=block_step, score=score, score_padded=score_padded,
               train_defaults={"epochs": 10},
               item_vectors=item_vectors, item_vectors_doc="log-count MF item factors V")
