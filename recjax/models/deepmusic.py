"""DeepMusic (van den Oord, Dieleman & Schrauwen 2013), as the CVAE/CRAE papers' baseline.

The loosely coupled variant: latent factors are first fitted to the clicks by
WMF, then a network regresses each item's factor vector from its content with
squared loss ("the objective is a linear regression and the latent factor
vectors obtained by applying WMF to the training rating data are used as
groundtruth", CVAE paper §3.3).  For text the network is an MLP on the bag of
words (`recjax.nn.content.ContentMLP`; the CVAE paper used two convolutional
layers on its content, which for a bag of words has no spatial axis).

Schedule over the runner's epochs:

* the first block step runs `wmf_sweeps` implicit-ALS sweeps (U then V, a,
  b, λ_u, λ_v as configured; `recjax.ops.als_core.sweep` without a prior) and
  fixes U and V; later block steps do nothing;
* every epoch makes one optax pass over the items with at least one training
  click (`recjax.data.item_batches.SubsetContentRows`: shuffled item batches of
  padded word lists, each padded to the smallest of a few fixed widths 32,
  64, ... that holds its longest document, so a handful of shapes compile;
  items nobody clicked have no WMF factor to learn from), minimizing
  mean_j ||f(x_j) − v_j||² (+ `weight_decay` on the weights, AdamW).

Scoring (`score_items`): "regressed" (default, as van den Oord et al. and the
CVAE paper evaluate DeepMusic) ranks every item by u_iᵀ f(x_j), the regressed
factors of all items; "cold" keeps WMF's v_j for items with training clicks
and uses f(x_j) only for the others.  A user's u_i is WMF's: one exact
implicit solve against WMF's V from the user's fold-in clicks (for the
training users of a weak-generalization split, the U update of WMF itself;
`recjax.ops.als_core.scorers`).
f(x_j) is computed for the whole catalog inside `score` from the content's
COO triples kept in the factors (a few MB), so the scores always belong to
the parameters being evaluated.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import item_batches
from recjax.data import content as content_lib
from recjax.models.base import Model, check_config
from recjax.nn.content import ContentMLP, content_rows
from recjax.nn.sparse import PaddedRows
from recjax.ops import als_core

COO_CHUNK = 65536


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig):
  """DeepMusic's fields; WMF's a, b, λ_u and the solver fields: `als_core.PriorALSConfig`."""

  dim: int = 50  # K (CVAE paper: 50).
  reg_v: float = 0.1  # WMF λ_v (no prior mean: WMF's plain ridge on V).
  wmf_sweeps: int = 10  # ALS sweeps of the first block step.
  hidden: tuple[int, ...] = (200,)  # Hidden layer widths of the content MLP.
  activation: str = "relu"  # "relu", "sigmoid" or "tanh".
  content_scale: str = "word_max"  # "word_max" (each word / its max over items, CVAE §3.1), "row_max", "binary" or "none" (recjax.data.content.scale).
  learning_rate: float = 1e-3  # AdamW step size.
  weight_decay: float = 1e-4  # AdamW decoupled weight decay.
  score_items: str = "regressed"  # "regressed" (every item through the MLP) or "cold" (only unclicked items).

  def __post_init__(self):
    check_config(self, "deepmusic", **als_core.merge_rules(als_core.PRIOR_ALS_RULES, {
        "at_least": {"dim": 1, "wmf_sweeps": 1, "weight_decay": 0.0},
        "above": {"learning_rate": 0.0},
        "choices": {"activation": ("relu", "sigmoid", "tanh"),
                    "content_scale": content_lib.SCALES,
                    "score_items": ("regressed", "cold")}}))


def content_coo(x: sp.csr_matrix, chunk: int = COO_CHUNK) -> dict:
  """COO triples of x, padded with zero entries to a multiple of `chunk`."""
  m = sp.coo_matrix(x)
  pad = -m.nnz % chunk
  z = np.zeros(pad, np.int32)
  return {"doc": jnp.asarray(np.concatenate([m.row.astype(np.int32), z])),
          "word": jnp.asarray(np.concatenate([m.col.astype(np.int32), z])),
          "value": jnp.asarray(np.concatenate([m.data.astype(np.float32), z.astype(np.float32)]))}


def regression_loss(module: ContentMLP, params, rows: PaddedRows, index, mask, v):
  """mean over real batch rows of ||f(x_j) − v_j||²; also returns the per-row errors."""
  pred = module.apply(params, rows)
  target = jnp.take(v, jnp.maximum(index, 0), axis=0)
  err = jnp.sum((pred - target) ** 2, axis=-1)
  m = mask.astype(err.dtype)
  return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0), err


def make(config: Config) -> Model:

  def module(n_words: int) -> ContentMLP:
    return ContentMLP(n_in=n_words, hidden=tuple(config.hidden), features=config.dim,
                      activation=config.activation)

  def init(key, train: sp.csr_matrix, item_content: sp.csr_matrix | None = None):
    if item_content is None:
      raise ValueError("deepmusic: init needs item_content (the runner passes it)")
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"deepmusic: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    kf, kn = jax.random.split(key)
    factors = als_core.init_factors(kf, train, config)
    x = content_lib.scale(item_content, config.content_scale)
    factors["content"] = content_coo(x)
    factors["clicked"] = als_core.rated_items(train)
    factors["wmf_done"] = jnp.zeros((), jnp.int32)
    dummy = PaddedRows(jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1), jnp.float32))
    params = module(x.shape[1]).init(kn, dummy)
    return params, factors

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix, mesh=None):
    """ALS buckets, the scaled content and the clicked items (the regression's rows)."""
    clicked = np.flatnonzero(sp.csr_matrix(train).getnnz(axis=0) > 0).astype(np.int32)
    return {**als_core.prepare(train, config, mesh),
            "content": content_lib.scale(item_content, config.content_scale), "clicked": clicked}

  def block_step(params, factors, aux, key):
    del params, key
    if int(factors["wmf_done"]):
      return factors
    u, v = factors["U"], factors["V"]
    for _ in range(config.wmf_sweeps):
      u, v = als_core.sweep(u, v, aux, config)
    return {**factors, "U": u, "V": v, "wmf_done": jnp.ones((), jnp.int32)}

  def loss(params, factors, batch, key, phase):
    del key, phase
    n_words = params["params"]["input_kernel"].shape[0]
    value, _ = regression_loss(module(n_words), params, content_rows(batch), batch["index"],
                               batch["mask"], factors["V"])
    return value, {"sq_error": value}

  def item_vectors(params, factors):
    """The item vectors score ranks by: f(x_j) for all items, or only unclicked ones ("cold")."""
    v_wmf = factors["V"]
    n_words = params["params"]["input_kernel"].shape[0]
    c = factors["content"]
    v_reg = module(n_words).apply(params, c["doc"], c["word"], c["value"], v_wmf.shape[0],
                                  COO_CHUNK, method=ContentMLP.from_coo)
    if config.score_items == "cold":
      v_reg = jnp.where(factors["clicked"][:, None], v_wmf, v_reg)
    return v_reg

  score, score_padded, serving_factors = als_core.scorers(config, item_vectors)
  optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
  return Model(name="deepmusic", config=config, init=init, prepare=prepare, block_step=block_step,
               loss=loss, optimizer=optimizer, score=score, score_padded=score_padded,
               serving_factors=serving_factors,
               batch_source=item_batches.SubsetContentRows("content", "clicked"),
               train_defaults={"epochs": 50}, side_keys=("item_content",),
               item_vectors=item_vectors, item_vectors_doc=(
                   "DeepMusic regressed item factors f(x_j)" if config.score_items == "regressed"
                   else "DeepMusic item factors: WMF v_j if clicked, else regressed f(x_j)"))
