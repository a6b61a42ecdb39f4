"""SLIM (Ning & Karypis, ICDM 2011): sparse non-negative item-item weights.

One block step solves for W on device from the training users' Gram matrix
(see `recjax.ops.slim` for the objective and the solvers); users never seen
in training are scored as ``x @ W`` from their fold-in row, as in EASE.
"""

from __future__ import annotations

import dataclasses

import jax
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.ops import ease as ease_ops
from recjax.ops import item_weights
from recjax.ops import slim as slim_ops


@dataclasses.dataclass(frozen=True)
class Config:
  l1: float = 1.0  # λ: weight of ||W||_1 (SLIM's -lambda; Mult-VAE grid {0.1, 0.5, 1, 5}).
  l2: float = 1.0  # β: weight of ½||W||²_F (SLIM's -beta; Mult-VAE grid {0.1, 0.5, 1, 5}).
  n_iters: int = 200  # Solver iterations (fixed; each one [I, I] x [I, chunk] product per block).
  method: str = "admm"  # "admm" or "fista" (monotone FISTA), see recjax.ops.slim.
  rho: float | None = None  # ADMM penalty; None: 5 x mean item count + l2.
  column_chunk: int | None = None  # Item columns solved per block (bounds memory); None: all.

  def __post_init__(self):
    check_config(self, "slim", at_least={"l1": 0.0, "l2": 0.0, "n_iters": 1, "column_chunk": 1},
                 above={"rho": 0.0}, choices={"method": ("admm", "fista")})


def make(config: Config) -> Model:
  def prepare(train: sp.csr_matrix):
    # Before the Gram exists: a catalog too large stops here with one line.
    slim_ops.check_memory(train, config.method, config.column_chunk,
                          accelerator=jax.default_backend() != "cpu")
    return {"gram": ease_ops.sparse_gram(train)}

  def block_step(params, factors, aux: dict, key):
    """Solves for W once; later epochs, if any are asked for, keep it."""
    del params, key
    gram = aux.pop("gram", None)
    if gram is None:
      return factors
    weights = slim_ops.slim_weights(
        jax.device_put(gram), config.l1, config.l2, config.n_iters, method=config.method,
        rho=config.rho, chunk=config.column_chunk)
    return {"weights": weights}

  return Model(name="slim", config=config, init=item_weights.init, prepare=prepare,
               block_step=block_step, score=item_weights.score,
               score_padded=item_weights.score_padded, train_defaults={"epochs": 1},
               item_vectors=item_weights.item_vectors, partition=item_weights.partition,
               item_vectors_doc="SLIM weight columns W[:, j]")
