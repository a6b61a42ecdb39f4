"""Popularity: every user gets the same ranking, by how many training users chose each item."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model


@dataclasses.dataclass(frozen=True)
class Config:
  """Popularity has nothing to tune; counts are of distinct training users per item."""


def make(config: Config) -> Model:
  def init(key, train: sp.csr_matrix):
    del key
    return {}, {"counts": jnp.zeros((train.shape[1],), jnp.float32)}

  def prepare(train: sp.csr_matrix):
    binary = train.copy()
    binary.data = np.ones_like(binary.data)
    return jnp.asarray(np.asarray(binary.sum(axis=0)).ravel().astype(np.float32))

  def block_step(params, factors, counts, key):
    del params, factors, key
    return {"counts": counts}

  def score(params, factors, inputs):
    del params
    return jnp.broadcast_to(factors["counts"][None, :], inputs.shape)

  return Model(name="popularity", config=config, init=init, prepare=prepare,
               block_step=block_step, score=score, train_defaults={"epochs": 1})
