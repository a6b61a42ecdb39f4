"""The model protocol the runner speaks.

A model is a bundle of pure functions over explicit state (see DESIGN.md):

* ``init(key, train) -> (params, factors)``: ``params`` is the pytree optax
  trains (may be empty ``{}``); ``factors`` holds closed-form state (EASE's
  item-item weights, ALS's U/V, popularity counts) that never passes through
  optax.  A model with ``batches`` is called ``init(key, train, **side)``
  (its ``side_keys``): its network is sized by the side information.
* ``prepare(train, **side) -> aux``: host-side, once per run (whenever it is
  set): whatever the block step or ``batches`` needs from the training matrix
  (a Gram matrix, bucketed rows, scaled item content).
  ``side`` carries the side information the model names in ``side_keys``
  (e.g. ``item_content``: items x words, rows aligned with the split's item
  columns).  Optional.
* ``block_step(params, factors, aux, key) -> factors``: one closed-form update
  per epoch.  It is called by the runner *outside* ``jit``: a closed-form step
  may need host staging (EASE's in-place LAPACK inverse on CPU), so the model
  composes it from jitted kernels in ``recjax.ops``.  Optional.
* ``loss(params, factors, batch, key) -> (loss, aux_metrics)``: differentiable
  in ``params``; ``batch`` is a dict with ``rows`` [B, I] float32, ``mask`` [B]
  bool and ``index`` [B] int32 (training row ids, -1 for padding), plus
  ``step`` (optax updates so far).  The runner jits the optax step around it.
  Optional.
* ``batches(aux, batch_size, epoch, seed) -> (n_batches, iterator)``: for
  models whose network trains on something other than the training user rows
  (hybrids train theirs on item content).  The iterator yields ``n_batches``
  dicts of host arrays, each with ``mask`` [batch_size] bool plus whatever the
  loss reads (e.g. ``content`` [B, W], ``index`` [B] int32 item ids); every
  array's leading axis is the batch (it is split over devices), and the
  runner adds ``step``.  When set, the runner iterates these instead of the
  user rows.  Optional; needs ``loss``.
* ``score(params, factors, inputs) -> scores``: pure and jittable; ``inputs``
  are dense fold-in rows [B, I]; returns [B, I] scores (higher is better).
  Users that training never saw are folded in here.
* ``score_padded(params, factors, items, values, mask) -> scores``: optional,
  pure and jittable: the same [B, I] scores as ``score`` on the dense rows that
  the padded item lists spell (``items`` int32 [B, L], ``values`` [B, L],
  ``mask`` bool [B, L], False on padding).  Serving uses it so that folding a
  user in costs O(their items), not O(catalog) (ALS fold-in, EASE's x @ B).
* ``serving_factors(params, factors) -> factors``: optional: the factors plus
  arrays derived from them once when a model is loaded for serving (e.g. the
  Gram b·VᵀV every fold-in needs); ``score``/``score_padded`` must give the
  same scores with and without them.
* ``item_vectors(params, factors) -> [I, d]``: pure and jittable; one vector per
  item column, the model's own item representation (EASE's weight columns,
  ALS item factors, an autoencoder's decoder embeddings).  Similar items are
  ranked by the cosine of these vectors; ``item_vectors_doc`` says in a few
  words what they are.  Optional: a model without one (popularity) cannot
  answer similar-item queries.

A model with only ``block_step`` trains in closed form (EASE, popularity);
one with only ``loss`` trains by gradient (Mult-VAE); hybrids have both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax
import scipy.sparse as sp

from recjax.ops import als

Params = Any
Factors = Any


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as the runner sees it; see the module docstring for each field."""

  name: str
  config: Any
  init: Callable[..., tuple[Params, Factors]]
  score: Callable[[Params, Factors, Any], Any]
  prepare: Callable[[sp.csr_matrix], Any] | None = None
  block_step: Callable[[Params, Factors, Any, Any], Factors] | None = None
  loss: Callable[..., tuple[Any, dict]] | None = None
  optimizer: optax.GradientTransformation | None = None
  train_defaults: dict = dataclasses.field(default_factory=dict)
  side_keys: tuple[str, ...] = ()  # Side information `prepare` needs, e.g. ("item_content",).
  batches: Callable[[Any, int, int, int], tuple[int, Any]] | None = None  # Own training batches.
  score_padded: Callable[..., Any] | None = None  # score from padded item lists (serving).
  serving_factors: Callable[[Params, Factors], Factors] | None = None  # Derived once at load.
  item_vectors: Callable[[Params, Factors], Any] | None = None  # [n_items, d] for similar items.
  item_vectors_doc: str = ""  # What item_vectors are, e.g. "WMF item factors V".

  def __post_init__(self):
    if self.block_step is None and self.loss is None:
      raise ValueError(f"model {self.name!r} has neither a block step nor a loss")
    if self.loss is not None and self.optimizer is None:
      raise ValueError(f"model {self.name!r} has a loss but no optimizer")
    if self.batches is not None and self.loss is None:
      raise ValueError(f"model {self.name!r} has training batches but no loss")


def als_serving(*, a: float, b: float, reg: float,
                item_vectors: Callable[[Params, Factors], Any], **confidence):
  """``(score_padded, serving_factors)`` of a model that folds users in by implicit ALS.

  For the factor models (WMF, CMF, CTR, SVDFeature) and the hybrids (CDL,
  CVAE, CRAE, DeepMusic): a user is solved against ``factors["V"]`` with
  confidences a (or ``confidence``'s per-entry form), b, λ = `reg`, then scored
  against ``item_vectors(params, factors)`` -- the same scores as the model's
  dense ``score``.  ``serving_factors`` adds ``als.fold_in_constants`` under
  ``factors["serving"]``, computed once when the model is loaded.
  """

  def score_padded(params, factors, items, values, mask):
    u = als.fold_in_padded(factors["V"], items, values, mask, a=a, b=b, reg=reg,
                           constants=factors.get("serving"), **confidence)
    return u @ item_vectors(params, factors).T

  def serving_factors(params, factors):
    del params
    return {**factors, "serving": als.fold_in_constants(factors["V"], b, reg)}

  return score_padded, serving_factors
