"""Similar items: the items nearest each query item by the cosine of ``item_vectors``.

`unit_item_vectors` scales the model's item vectors to unit length once (one
jitted function per model, checked against the memory it needs);
`similar_items` then ranks every allowed item against a batch of query items
on device, the query item itself excluded.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recjax.ops import memory
from recjax.ops import ranking as ranking_ops
from recjax.serve.answers import (QueryNotSupported, Recommendations, answer_ids, candidates,
                                  id_key, item_index, py_value)
from recjax.train import sharding as shd
from recjax.train.artifact import TrainedModel

# (item_vectors fn, k) -> jitted (params, factors, query columns, allowed) -> top k.
_SIMILAR: dict[tuple, Any] = {}


def _normalized(vectors):
  norms = jnp.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors / jnp.maximum(norms, 1e-12)


def _similar_step(item_vectors_fn, k: int):
  key = (item_vectors_fn, k)
  step = _SIMILAR.get(key)
  if step is None:

    def step_fn(unit, query, allowed):
      sims = unit[query] @ unit.T  # Cosine: rows are unit vectors.
      exclude = (jnp.arange(unit.shape[0])[None, :] == query[:, None]) | ~allowed[None, :]
      return ranking_ops.top_k_excluding(sims, exclude, k)

    step = _SIMILAR[key] = jax.jit(step_fn)
  return step


# item_vectors fn -> jitted (params, factors) -> unit-length item vectors.
_UNIT_VECTORS: dict[Any, Any] = {}


def unit_item_vectors(tm: TrainedModel) -> jax.Array:
  """The model's item vectors scaled to unit length, [n_items, d] (replicated)."""
  if tm.model.item_vectors is None:
    raise QueryNotSupported(f"{tm.model.name} has no item representation, so it cannot answer "
                            f"similar-item queries")
  if tm.info.get("orientation", "users") != "users":
    raise QueryNotSupported(
        f"{tm.model.name} was trained with items as rows (protocol {tm.info.get('protocol')}): "
        f"its decoder has one vector per user, not per item, so it cannot answer similar-item "
        f"queries")
  fn = _UNIT_VECTORS.get(tm.model.item_vectors)
  if fn is None:  # One jitted function per model's item_vectors: no retrace per query.
    item_vectors = tm.model.item_vectors
    fn = _UNIT_VECTORS[item_vectors] = jax.jit(
        lambda p, f: _normalized(item_vectors(p, f).astype(jnp.float32)))
  shape = jax.eval_shape(fn, tm.params, tm.factors).shape
  # The vectors and their unit copy (EASE/SLIM: two more dense items x items arrays).
  memory.check_fits(2 * 4 * float(np.prod(shape)),
                    f"similar items of {tm.model.name} ({shape[0]:,} x {shape[1]:,} item vectors)",
                    "more memory, or a model with low-dimensional item vectors (e.g. wmf)")
  return fn(tm.params, tm.factors)


def similar_items(tm: TrainedModel, items: Sequence, k: int = 10, *,
                  allow: Iterable | None = None, deny: Iterable | None = None,
                  batch_size: int = 256, unit: jax.Array | None = None) -> Recommendations:
  """The k items most similar to each raw item id, by cosine of ``item_vectors``.

  Args:
    unit: `unit_item_vectors(tm)`, when already computed (several calls).
  """
  index = item_index(tm)
  missing = [py_value(i) for i in items if id_key(i) not in index]
  if missing:
    raise ValueError(f"{len(missing)} item id(s) are not items of this model: {missing[:10]}")
  unit = unit_item_vectors(tm) if unit is None else unit
  allowed, notes = candidates(tm, allow, deny)
  if not allowed.any():
    raise ValueError("no candidate item is left after the allow/deny lists")
  k_eff = min(k, tm.n_items)
  step = _similar_step(tm.model.item_vectors, k_eff)
  batch_sh = shd.batch_sharding(tm.mesh)
  batch_size = shd.round_up_to_devices(max(1, batch_size), tm.mesh)
  allowed_d = jax.device_put(allowed, shd.replicated(tm.mesh))
  cols_all = np.asarray([index[id_key(i)] for i in items], np.int32)
  out_items, out_scores = [], []
  for start in range(0, len(cols_all), batch_size):
    part = cols_all[start:start + batch_size]
    query = np.zeros(batch_size, np.int32)
    query[:len(part)] = part
    values, cols = jax.device_get(step(unit, jax.device_put(query, batch_sh), allowed_d))
    i, s = answer_ids(tm, values[:len(part)], cols[:len(part)])
    out_items += i
    out_scores += s
  return Recommendations(keys=list(items), items=out_items, scores=out_scores,
                         fallback=np.zeros(len(items), bool), unknown={}, notes=tuple(notes))
