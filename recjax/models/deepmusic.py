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
  b, λ_u, λ_v as configured) and fixes U and V; later block steps do nothing;
* every epoch makes one optax pass over the items with at least one training
  click (`batches`: shuffled item batches of padded word lists, each padded
  to the smallest of a few fixed widths 32, 64, ... that holds its longest
  document, so a handful of shapes compile; items nobody clicked have no WMF
  factor to learn from), minimizing
  mean_j ||f(x_j) − v_j||² (+ `weight_decay` on the weights, AdamW).

Scoring (`score_items`): "regressed" (default, as van den Oord et al. and the
CVAE paper evaluate DeepMusic) ranks every item by u_iᵀ f(x_j), the regressed
factors of all items; "cold" keeps WMF's v_j for items with training clicks
and uses f(x_j) only for the others.  A user's u_i is WMF's: one exact
implicit solve against WMF's V from the user's fold-in clicks (for the
training users of a weak-generalization split, the U update of WMF itself).
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

from recjax.data.batching import default_bucket_edges, longest_row
from recjax.models.base import Model, als_serving, check_config
from recjax.nn.content import ContentMLP
from recjax.nn.sparse import PaddedRows
from recjax.ops import als

COO_CHUNK = 65536


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 50  # K (CVAE paper: 50).
  a: float = 1.0  # WMF confidence on clicks (CVAE paper: 1).
  b: float = 0.01  # WMF confidence elsewhere (0.01).
  reg_u: float = 0.1  # WMF λ_u.
  reg_v: float = 0.1  # WMF λ_v.
  wmf_sweeps: int = 10  # ALS sweeps of the first block step.
  hidden: tuple[int, ...] = (200,)  # Hidden layer widths of the content MLP.
  activation: str = "relu"  # "relu", "sigmoid" or "tanh".
  content_scale: str = "word_max"  # "word_max" (each word / its max over items, CVAE §3.1), "row_max", "binary", "counts".
  learning_rate: float = 1e-3  # AdamW step size.
  weight_decay: float = 1e-4  # AdamW decoupled weight decay.
  score_items: str = "regressed"  # "regressed" (every item through the MLP) or "cold" (only unclicked items).
  solver: str = "cholesky"  # "cholesky" or "cg" for the WMF half sweeps.
  cg_steps: int = 3  # CG steps when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial WMF factors.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths of the click matrix.
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted ALS solve.
  fold_in_chunk: int = 512  # Items per step when folding in users at scoring time.

  def __post_init__(self):
    check_config(self, "deepmusic", at_least={"factors": 1, "b": 0.0, "reg_u": 0.0, "reg_v": 0.0,
                                             "wmf_sweeps": 1, "weight_decay": 0.0, "cg_steps": 1,
                                             "max_bytes_per_call": 1, "fold_in_chunk": 1},
                 above={"a": 0.0, "learning_rate": 0.0, "init_scale": 0.0, "bucket_growth": 1.0},
                 choices={"activation": ("relu", "sigmoid", "tanh"),
                          "content_scale": ("word_max", "row_max", "binary", "counts"),
                          "score_items": ("regressed", "cold"), "solver": als.SOLVERS})


def scale_content(content: sp.spmatrix, how: str) -> sp.csr_matrix:
  """The network's input rows (float32 csr): counts scaled as `how` says."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  x.eliminate_zeros()
  if how == "word_max":
    col_max = np.asarray(x.max(axis=0).todense()).ravel() if x.nnz else np.zeros(x.shape[1])
    x.data /= np.maximum(col_max[x.indices], 1e-30).astype(np.float32)
  elif how == "row_max":
    lengths = np.diff(x.indptr)
    row_max = np.asarray(x.max(axis=1).todense()).ravel()
    x.data /= np.repeat(np.maximum(row_max, 1e-30), lengths).astype(np.float32)
  elif how == "binary":
    x.data[:] = 1.0
  elif how != "counts":
    raise ValueError(f"deepmusic: content_scale must be 'word_max', 'row_max', 'binary' or "
                     f"'counts', got {how!r}")
  return x


def padded_content(x: sp.csr_matrix, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Each row as `length` (word id, value) slots, value 0 on padding: int32/float32 [n, length]."""
  lengths = np.diff(x.indptr)
  r = np.repeat(np.arange(x.shape[0]), lengths)
  pos = np.arange(x.nnz) - np.repeat(x.indptr[:-1], lengths)
  ids = np.zeros((x.shape[0], length), np.int32)
  vals = np.zeros((x.shape[0], length), np.float32)
  ids[r, pos] = x.indices
  vals[r, pos] = x.data
  return ids, vals


def content_coo(x: sp.csr_matrix, chunk: int = COO_CHUNK) -> dict:
  """COO triples of x, padded with zero entries to a multiple of `chunk`."""
  m = sp.coo_matrix(x)
  pad = -m.nnz % chunk
  z = np.zeros(pad, np.int32)
  return {"doc": jnp.asarray(np.concatenate([m.row.astype(np.int32), z])),
          "word": jnp.asarray(np.concatenate([m.col.astype(np.int32), z])),
          "value": jnp.asarray(np.concatenate([m.data.astype(np.float32), z.astype(np.float32)]))}


def regression_loss(module: ContentMLP, params, items, values, index, mask, v):
  """mean over real batch rows of ||f(x_j) − v_j||²; also returns the per-row errors."""
  pred = module.apply(params, PaddedRows(items, values))
  target = jnp.take(v, jnp.maximum(index, 0), axis=0)
  err = jnp.sum((pred - target) ** 2, axis=-1)
  m = mask.astype(err.dtype)
  return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0), err


def make(config: Config) -> Model:
  if config.solver not in als.SOLVERS:
    raise ValueError(f"deepmusic: solver must be one of {als.SOLVERS}, got {config.solver!r}")
  if config.score_items not in ("regressed", "cold"):
    raise ValueError(f"deepmusic: score_items must be 'regressed' or 'cold', got "
                     f"{config.score_items!r}")
  scale_content(sp.csr_matrix((1, 1)), config.content_scale)  # Validates the name early.

  def module(n_words: int) -> ContentMLP:
    return ContentMLP(n_in=n_words, hidden=tuple(config.hidden), features=config.factors,
                      activation=config.activation)

  def init(key, train: sp.csr_matrix, item_content: sp.csr_matrix | None = None):
    if item_content is None:
      raise ValueError("deepmusic: init needs item_content (the runner passes it)")
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"deepmusic: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    kf, kn = jax.random.split(key)
    factors = als.init_factors(kf, train.shape, config.factors, config.init_scale)
    x = scale_content(item_content, config.content_scale)
    factors["content"] = content_coo(x)
    clicked = np.asarray(sp.csr_matrix(train).getnnz(axis=0) > 0)
    factors["clicked"] = jnp.asarray(clicked)
    factors["wmf_done"] = jnp.zeros((), jnp.int32)
    dummy = PaddedRows(jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1), jnp.float32))
    params = module(x.shape[1]).init(kn, dummy)
    return params, factors

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix):
    """ALS buckets, and the clicked items' padded content rows for the regression batches."""
    x = scale_content(item_content, config.content_scale)
    longest = max(longest_row(x), 1)
    ids, vals = padded_content(x, longest)
    clicked = np.flatnonzero(sp.csr_matrix(train).getnnz(axis=0) > 0).astype(np.int32)
    return {**als.bucketed_sides(train, config.bucket_growth), "ids": ids, "vals": vals,
            "lengths": np.diff(x.indptr), "length_edges": np.asarray(
                default_bucket_edges(longest, min_len=min(32, longest), growth=2.0)),
            "clicked": clicked, "n_words": x.shape[1]}

  def block_step(params, factors, aux, key):
    del params, key
    if int(factors["wmf_done"]):
      return factors
    kw = dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call)
    u, v = factors["U"], factors["V"]
    for _ in range(config.wmf_sweeps):
      u = als.half_sweep(u, v, aux["users"], reg=config.reg_u, **kw)
      v = als.half_sweep(v, u, aux["items"], reg=config.reg_v, **kw)
    return {**factors, "U": u, "V": v, "wmf_done": jnp.ones((), jnp.int32)}

  def batches(aux, batch_size, epoch, seed):
    items = aux["clicked"]
    order = np.random.default_rng([seed, epoch]).permutation(len(items))
    n = -(-len(items) // batch_size)

    def gen():
      for start in range(0, n * batch_size, batch_size):
        sel = items[order[start:start + batch_size]]
        pad = batch_size - len(sel)
        index = np.concatenate([sel, np.full(pad, -1, np.int32)])
        safe = np.maximum(index, 0)
        mask = index >= 0
        edges = aux["length_edges"]  # A few fixed widths: one compile each.
        width = int(edges[np.searchsorted(edges, aux["lengths"][sel].max(initial=1))])
        yield {"items": aux["ids"][safe, :width], "values": aux["vals"][safe, :width] * mask[:, None],
               "index": index, "mask": mask}

    return n, gen()

  def loss(params, factors, batch, key):
    del key
    n_words = params["params"]["input_kernel"].shape[0]
    value, _ = regression_loss(module(n_words), params, batch["items"], batch["values"],
                               batch["index"], batch["mask"], factors["V"])
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

  def score(params, factors, inputs):
    u = als.fold_in_dense(factors["V"], inputs, a=config.a, b=config.b, reg=config.reg_u,
                          item_chunk=config.fold_in_chunk)
    return u @ item_vectors(params, factors).T

  score_padded, serving_factors = als_serving(a=config.a, b=config.b, reg=config.reg_u,
                                              item_vectors=item_vectors)

  optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
  return Model(name="deepmusic", config=config, init=init, prepare=prepare, block_step=block_step,
               loss=loss, optimizer=optimizer, score=score, score_padded=score_padded,
               serving_factors=serving_factors, batches=batches,
               train_defaults={"epochs": 50}, side_keys=("item_content",),
               item_vectors=item_vectors, item_vectors_doc=(
                   "DeepMusic regressed item factors f(x_j)" if config.score_items == "regressed"
                   else "DeepMusic item factors: WMF v_j if clicked, else regressed f(x_j)"))
