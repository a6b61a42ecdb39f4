"""EASE (Steck, WWW 2019): a shallow item-item autoencoder solved in closed form.

One block step computes B from the training users' Gram matrix (see
`recjax.ops.ease`); users never seen in training are scored as ``x @ B`` from
their fold-in row, so strong generalization needs no extra fold-in step.
"""

from __future__ import annotations

import dataclasses

import jax
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.ops import ease as ease_ops
from recjax.ops import item_weights
from recjax.ops import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class Config:
  l2: float = 500.0  # λ on the diagonal of XᵀX (Steck's ML-20M/Netflix choice: 500/1000).
  solver: str = "auto"  # "device" (jitted Cholesky), "host" (in-place LAPACK), "auto".
  host_above_items: int = 12_000  # "auto" uses the host solver on CPU above this catalog size.

  def __post_init__(self):
    check_config(self, "ease", above={"l2": 0.0}, at_least={"host_above_items": 0},
                 choices={"solver": ("auto", "device", "host")})


def make(config: Config) -> Model:
  def prepare(train: sp.csr_matrix):
    # Before the Gram exists: a catalog too large stops here with one line, not minutes
    # later in a numpy ArrayMemoryError.  Same solver choice as block_step.
    on_cpu = jax.default_backend() == "cpu"

    def solver(n):
      host = config.solver == "host" or (
          config.solver == "auto" and on_cpu and n > config.host_above_items)
      return "host" if host else "device" if on_cpu else "accelerator"

    ease_ops.check_memory(train, solver)
    # Several processes: each adds up the Gram of its own block of users, then the blocks'
    # Grams are summed over the processes (one process: the whole matrix, as before).
    lo, hi = mesh_lib.process_block(train.shape[0])
    return {"gram": mesh_lib.sum_over_processes(ease_ops.sparse_gram(train[lo:hi]))}

  def block_step(params, factors, aux: dict, key):
    """Solves for B once; the solve consumes the Gram matrix (its memory is reused).

    Later epochs, if any are asked for, keep B: EASE has nothing left to fit.
    """
    del params, key
    gram = aux.pop("gram", None)
    if gram is None:
      return factors
    n = gram.shape[0]
    on_cpu = jax.default_backend() == "cpu"
    host = config.solver == "host" or (
        config.solver == "auto" and on_cpu and n > config.host_above_items)
    if host:
      # device_put, not jnp.asarray: the latter makes a transient extra host copy.
      weights = jax.device_put(ease_ops.ease_weights_host(gram, config.l2, overwrite=True))
    else:
      weights = ease_ops.ease_weights(jax.device_put(gram), config.l2)
    del gram
    return {"weights": weights}

  return Model(name="ease", config=config, init=item_weights.init, prepare=prepare,
               block_step=block_step, score=item_weights.score,
               score_padded=item_weights.score_padded, train_defaults={"epochs": 1},
               item_vectors=item_weights.item_vectors, partition=item_weights.partition,
               item_vectors_doc="EASE weight columns B[:, j]")
