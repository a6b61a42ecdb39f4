"""The hybrids' content networks: DeepMusic's regressor, and what CDL, CVAE and CRAE share.

`ContentMLP` regresses a latent vector from an item's bag of words.  Its first
layer reads sparse rows in either of two forms with the same kernel: padded
(word id, value) lists (`recjax.nn.sparse.PaddedRows`, for training batches)
or the COO triples of a whole catalog (`ContentMLP.from_coo`, for scoring
every item at once without a [items, words] or [items, L, hidden] temporary:
the nonzeros are summed into the hidden layer in chunks).

The hybrids that put a network's code as the prior mean on the item factors
(CDL's SDAE code, CVAE's inference mean, CRAE's pooled title code) share:
`prior_mean_parts` (their block step, scoring and item vectors: the ALS core
of `recjax.ops.als_core` around the model's own encoder), `encode_all` (the
code of every item, batch by batch, for the block step),
`pretraining_stage` (greedy layerwise stages, then the whole network without
and with the prior term), `weight_decay` (λ_w over some or all layers, in the
units of a per-item minibatch loss), `masked_mean` (a batch's mean over its
real rows), `item_sum` (a per-item term summed over the catalog in float64,
for the MAP objectives) and `with_param` (one parameter replaced, e.g. an
output bias started at `recjax.data.content.marginal_output_bias`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.nn.sparse import PaddedRows
from recjax.ops import als_core

ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}


class ContentMLP(nn.Module):
  """Bag of words -> hidden layers -> a linear output of `features` units.

  Attributes:
    n_in: vocabulary size (input width).
    hidden: widths of the hidden layers (at least one).
    features: output width (the latent dimension K).
    activation: "relu", "sigmoid" or "tanh" after each hidden layer.
  """

  n_in: int
  hidden: Sequence[int]
  features: int
  activation: str = "relu"

  def setup(self):
    if not self.hidden:
      raise ValueError("ContentMLP needs at least one hidden layer")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"ContentMLP: activation must be one of {sorted(ACTIVATIONS)}, "
                       f"got {self.activation!r}")
    self.input_kernel = self.param("input_kernel", nn.initializers.xavier_uniform(),
                                   (self.n_in, self.hidden[0]), jnp.float32)
    self.input_bias = self.param("input_bias", nn.initializers.zeros_init(), (self.hidden[0],),
                                 jnp.float32)
    self.layers = [nn.Dense(w) for w in self.hidden[1:]] + [nn.Dense(self.features)]

  def _rest(self, pre: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    h = act(pre + self.input_bias[None, :])
    for layer in self.layers[:-1]:
      h = act(layer(h))
    return self.layers[-1](h)

  def __call__(self, rows: PaddedRows | jax.Array) -> jax.Array:
    """Outputs [B, features] for padded rows (values 0 on padding) or dense rows [B, n_in]."""
    if isinstance(rows, PaddedRows):
      gathered = jnp.take(self.input_kernel, rows.items, axis=0, mode="clip")  # [B, L, H]
      pre = jnp.einsum("bl,blh->bh", rows.values, gathered)
    else:
      if rows.shape[-1] != self.n_in:
        raise ValueError(f"ContentMLP: rows have {rows.shape[-1]} columns, expected {self.n_in}")
      pre = rows @ self.input_kernel
    return self._rest(pre)

  def from_coo(self, doc: jax.Array, word: jax.Array, value: jax.Array, n_docs: int,
               chunk: int = 65536) -> jax.Array:
    """Outputs [n_docs, features] for every document of a catalog given as COO triples.

    Args:
      doc, word: int [nnz] document and word of each nonzero; nnz must be a
        multiple of `chunk` (pad with value 0).
      value: [nnz] the nonzeros.
      n_docs: number of documents (static).
      chunk: nonzeros summed into the hidden layer per scan step (static).
    """
    n = doc.shape[0]
    if n % chunk:
      raise ValueError(f"ContentMLP.from_coo: {n} nonzeros is not a multiple of chunk={chunk}")
    parts = (doc.reshape(-1, chunk), word.reshape(-1, chunk), value.reshape(-1, chunk))
    kernel = self.input_kernel  # Read outside the scan (Linen sets up lazily).

    def add(total, part):
      d, w, v = part
      rows = v[:, None] * jnp.take(kernel, w, axis=0)
      return total + jax.ops.segment_sum(rows, d, num_segments=n_docs), None

    pre, _ = jax.lax.scan(add, jnp.zeros((n_docs, self.hidden[0]), jnp.float32), parts)
    return self._rest(pre)


def content_rows(batch: dict) -> PaddedRows:
  """The padded word lists of a `recjax.data.batching.ContentRows` batch."""
  return PaddedRows(batch["words"], batch["values"])


def encode_all(fn: Callable[[Any, dict], jax.Array], params, batches: Iterable[dict]) -> jax.Array:
  """``fn(params, batch)`` [B, K] of every batch, padding rows (``mask`` False) dropped: [n, K].

  `batches` visits every item once in item order (e.g.
  ``batching.content_batches(content, batch_size)``, one shape for the whole
  catalog, so a jitted `fn` compiles once).
  """
  out = [np.asarray(fn(params, b))[b["mask"]] for b in batches]
  return jnp.asarray(np.concatenate(out))


def item_sum(terms: Callable[..., Sequence[jax.Array]], params, v: jax.Array,
             batches: Iterable[dict], key: jax.Array, parts: int) -> float:
  """Σ over the real rows of every batch of the first `parts` per-item terms, in float64.

  ``terms(params, batch, v_rows, key_b)`` returns a model's per-item terms
  ([B] arrays, e.g. its jitted ``item_terms``) given the batch's rows of `v`
  (the item factors, gathered by ``batch["index"]``); batch b draws its noise
  from ``fold_in(key, b)``, so a fixed key gives a deterministic value.
  """
  v = jnp.asarray(v)
  total = 0.0
  for b, batch in enumerate(batches):
    out = terms(params, batch, v[jnp.maximum(batch["index"], 0)], jax.random.fold_in(key, b))
    per_item = sum(np.asarray(t, np.float64) for t in out[:parts])
    total += float(np.sum(per_item[batch["mask"]]))
  return total


def pretraining_stage(epoch: int, n_stages: int, layerwise_epochs: int,
                      pretrain_epochs: int) -> tuple[int, float]:
  """(stage, prior weight) of runner epoch `epoch` (1-based) under greedy pretraining.

  Stages 0 .. n_stages - 1 are the layerwise stages (``layerwise_epochs``
  epochs each, none when it is 0); stage n_stages is the whole network:
  ``pretrain_epochs`` epochs with prior weight 0 (the network alone), then
  prior weight 1 (the joint MAP objective) for the rest of the run.
  """
  layerwise = n_stages * layerwise_epochs if layerwise_epochs > 0 else 0
  if epoch <= layerwise:
    return (epoch - 1) // layerwise_epochs, 0.0
  return n_stages, 0.0 if epoch <= layerwise + pretrain_epochs else 1.0


def weight_decay(params, reg_w: float, n_items: int, names: Sequence[str] | None = None):
  """λ_w/(2N) ||W, b||² of the top-level layers `names` of ``params["params"]`` (all if None).

  A minibatch loss that averages per-item terms over its items is J / N for
  N = `n_items`; this is λ_w/2 ||W, b||² in the same units.
  """
  p = params["params"] if names is None else {n: params["params"][n] for n in names}
  return 0.5 * reg_w / n_items * optax.tree_utils.tree_norm(p, squared=True)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """The mean of `values` [B] over the rows where `mask` [B] is True (0 when none is)."""
  m = mask.astype(jnp.float32)
  return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)


def with_param(params, path: Sequence[str], value) -> Any:
  """`params` with ``params["params"][path[0]][path[1]]...`` replaced by `value` (float32)."""

  def put(tree, keys):
    if not keys:
      return jnp.asarray(value, jnp.float32)
    return {**tree, keys[0]: put(tree[keys[0]], keys[1:])}

  return {**params, "params": put(params["params"], tuple(path))}


def prior_mean_parts(config, encode: Callable[[Any, Any], jax.Array], key: str) -> dict:
  """The `Model` fields of a hybrid whose network gives the item factors' prior mean.

  ``block_step`` computes the prior mean m = ``encode(params, aux)`` [n_items,
  K] of the current network and runs one ALS sweep with it
  (`als_core.prior_step`, m kept as ``factors[key]``); ``item_vectors`` are
  v_j for items with a training click and m_j for the others
  (`als_core.prior_item_vectors`; V itself when ``config.score_unclicked`` is
  "factor"); ``score``, ``score_padded`` and ``serving_factors`` fold users in
  against V (`als_core.scorers`; against the clicked items' V when
  ``config.user_gram`` is "clicked").  The model
  adds its network's init, prepare, loss and batches.

  Args:
    config: the model's config (an `als_core.PriorALSConfig`).
    encode: ``(params, aux) -> [n_items, K]``, the prior mean (host driver).
    key: the name of the prior mean in the factors (initialised by
      ``als_core.init_factors(..., prior=key)``).
  """

  def block_step(params, factors, aux, rng):
    del rng
    return als_core.prior_step(factors, aux, config, encode(params, aux), key=key)

  # The authors'-code options (CVAE's Config; other hybrids keep the paper's defaults).
  if getattr(config, "score_unclicked", "prior") == "factor":
    item_vectors = als_core.factor_v
  else:
    item_vectors = als_core.prior_item_vectors(key)
  score, score_padded, serving_factors = als_core.scorers(
      config, item_vectors, clicked_gram=getattr(config, "user_gram", "all") == "clicked")
  return {"block_step": block_step, "item_vectors": item_vectors, "score": score,
          "score_padded": score_padded, "serving_factors": serving_factors}
