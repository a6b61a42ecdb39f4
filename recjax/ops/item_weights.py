"""The model protocol's functions for a model whose state is one item-item matrix W.

EASE's B and SLIM's W are [I, I] weights over ``factors = {"weights": W}`` (no
params): a user's scores are ``x @ W`` from their fold-in row x, dense or as a
padded item list, and item j's vector is column j of W (x @ W predicts item j
from it).  The models plug these in; only their solvers differ.  `partition`
splits W's columns (the items scored) over the mesh's ``model`` axis: x @ W
then needs no communication, each device scoring its own items.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recjax.ops import ease as ease_ops
from recjax.ops import mesh as mesh_lib


def init(key, train):
  """No params; the weights' shape, filled by the model's block step."""
  del key
  n = train.shape[1]
  return {}, {"weights": jax.ShapeDtypeStruct((n, n), jnp.float32)}


def score(params, factors, inputs):
  """[B, I] fold-in rows -> [B, I] scores x @ W."""
  del params
  return inputs @ factors["weights"]


def score_padded(params, factors, items, values, mask):
  """The same scores from padded item lists (O(items per user) rows of W read)."""
  del params
  return ease_ops.padded_rows_matmul(items, values, mask, factors["weights"])


def item_vectors(params, factors):
  """Row j = column j of W."""
  del params
  return factors["weights"].T


def partition(params, factors):
  """W [I, I] split by columns over ``model`` (no params)."""
  del params
  return None, {"weights": mesh_lib.item_cols()}
