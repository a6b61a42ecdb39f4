"""CDL: collaborative deep learning (Wang, Wang & Yeung, KDD 2015), MAP estimates, λ_s → ∞.

A stacked denoising autoencoder (`recjax.nn.sdae.SDAE`, "two-layer":
W → 200 → K → 200 → W, sigmoids) reads each item's corrupted bag of words
X_0,j (masking noise: every entry zeroed with probability 0.3) and
reconstructs the clean one X_c,j; its middle layer X_{L/2,j} is the prior
mean of the item factors.  Training minimizes the negative of the paper's
joint log-likelihood (Eq. 2 with λ_s → ∞):

  J = Σ_ij C_ij/2 (R_ij − u_iᵀv_j)² + λ_u/2 Σ_i ||u_i||²
      + λ_v/2 Σ_j ||v_j − X_{L/2,j}||² + λ_n/2 Σ_j ||X_{L,j} − X_c,j||²
      + λ_w/2 Σ_l (||W_l||² + ||b_l||²),

with C_ij = a on clicks and b elsewhere and the CVAE paper's settings a = 1,
b = 0.01, K = 50, λ_u = 1, λ_v = 10, λ_n = 1000, λ_w = 1e-4.

Block coordinate descent, one runner epoch at a time:

* ``block_step`` (closed form): θ_j = X_{L/2,j} of the *clean* content
  (no noise, no dropout) for every item, then one implicit-ALS sweep
  u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i,
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v θ_j).
* ``loss`` (Adam over minibatches of items): the network's terms of J per
  item, (1/|B|) Σ_j [λ_n/2 ||X_{L,j} − X_c,j||² + λ_v/2 ||v_j − X_{L/2,j}||²]
  + λ_w/(2N) ||W, b||², with the corrupted input and dropout (0.1) inside the
  network, as the paper trains it.

Pretraining ("the weights of the network are first pretrained in a plain
SDAE manner", CVAE paper §3.3) takes the first runner epochs (`schedule`):
optionally greedy layerwise (``layerwise_epochs`` per encoder layer: the
layer and its mirror decoder layer as a denoising autoencoder of the layer's
input, lower layers fixed), then ``pretrain_epochs`` epochs of the whole SDAE
with ``prior_weight = 0`` (reconstruction + weight decay alone).  In a
layerwise stage the weight decay covers only the layer pair that stage trains
(`layer_parameters`; a training-procedure choice, issue 5: through Adam a
decay-only gradient moved the "fixed" layers by ~lr per step and erased them,
leaving a saturated code, one vector for every item).  The block
step runs in them too.  The loss picks a batch's stage with `lax.switch`.

Prediction (CDL Eq. 8): R*_ij = u_iᵀ v_j for items with a training click;
an item with none ("out-of-matrix") has no offset ε_j and is scored from its
content alone, u_iᵀ θ_j.  Users are folded in by one exact implicit-ALS solve
against V (`recjax.ops.als.fold_in_dense`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import batching
from recjax.data import content as content_lib
from recjax.models.base import Model, als_serving, check_config
from recjax.nn import sdae as sdae_nn
from recjax.nn import sparse
from recjax.ops import als

CONTENT_SCALES = ("word_max", "binary", "none")


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 50  # K: dimension of u_i, v_j and of the SDAE's middle layer.
  hidden: tuple[int, ...] = (200,)  # Encoder layers before the K-wide code (decoder mirrors them).
  a: float = 1.0  # Confidence C_ij on clicks.
  b: float = 0.01  # Confidence C_ij elsewhere.
  reg_u: float = 1.0  # λ_u.
  reg_v: float = 10.0  # λ_v.
  reg_n: float = 1000.0  # λ_n, the weight of the reconstruction error.
  reg_w: float = 1e-4  # λ_w on all weights and biases, in the paper's units (summed over items).
  noise: float = 0.3  # Masking noise level on the network's input.
  dropout: float = 0.1  # Dropout on the non-code hidden layers in training.
  content_scale: str = "word_max"  # "word_max" (each word / its max count), "binary" or "none".
  layerwise_epochs: int = 0  # Epochs per greedy layerwise pretraining stage (one per encoder layer); 0: none.
  pretrain_epochs: int = 10  # Then epochs that train the whole SDAE alone (no λ_v term).
  learning_rate: float = 1e-3  # Adam.
  solver: str = "cholesky"  # ALS solver: "cholesky" (exact) or "cg".
  cg_steps: int = 3  # CG steps per half sweep when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial U and V.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths in the ALS buckets.
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted ALS solve.
  encode_batch: int = 1024  # Items per jitted call when the block step encodes every item.
  fold_in_chunk: int = 512  # Items per step when folding in users.

  def __post_init__(self):
    check_config(self, "cdl", at_least={"factors": 1, "b": 0.0, "reg_u": 0.0, "reg_v": 0.0,
                                       "reg_n": 0.0, "reg_w": 0.0, "layerwise_epochs": 0,
                                       "pretrain_epochs": 0, "cg_steps": 1, "max_bytes_per_call": 1,
                                       "encode_batch": 1, "fold_in_chunk": 1},
                 above={"a": 0.0, "learning_rate": 0.0, "init_scale": 0.0, "bucket_growth": 1.0},
                 fractions=("noise", "dropout"),
                 choices={"content_scale": CONTENT_SCALES, "solver": als.SOLVERS})


def scale_content(content: sp.spmatrix, how: str) -> sp.csr_matrix:
  """The content rows as the network reads them (float32 csr)."""
  if how == "word_max":
    return content_lib.scale_by_word_max(content)
  if how == "binary":
    return content_lib.binarize(content)
  if how == "none":
    return sp.csr_matrix(content, dtype=np.float32)
  raise ValueError(f"content_scale must be one of {CONTENT_SCALES}, got {how!r}")


def network(config: Config, params) -> sdae_nn.SDAE:
  """The SDAE that `params` parameterize."""
  return sdae_nn.SDAE.for_params(params, (*config.hidden, config.factors), config.dropout)


def encode_clean(config: Config, params, x: sparse.Rows) -> jax.Array:
  """θ = X_{L/2} [B, K] of uncorrupted content, without dropout."""
  return network(config, params).apply(params, x, True, method=sdae_nn.SDAE.encode)


def item_terms(config: Config, params, x: sparse.Rows, v: jax.Array, key: jax.Array):
  """The per-item network terms of J on corrupted input, each [B].

  Returns:
    (λ_n/2 ||X_L − X_c||², λ_v/2 ||v − X_{L/2}||²) with X_0 = masking_noise(X_c)
    and dropout drawn from `key`.
  """
  k_noise, k_drop = jax.random.split(key)
  corrupted = sdae_nn.masking_noise(k_noise, x, config.noise)
  recon, code = network(config, params).apply(params, corrupted, False, rngs={"dropout": k_drop})
  reconstruction = 0.5 * config.reg_n * sdae_nn.squared_error(recon, x)
  prior = 0.5 * config.reg_v * jnp.sum(jnp.square(v - code), axis=-1)
  return reconstruction, prior


def item_vectors(factors) -> jax.Array:
  """v_j for items with a training click, θ_j (content alone) for the others."""
  return jnp.where(factors["rated"][:, None], factors["V"], factors["mu"])


def make(config: Config) -> Model:
  if config.content_scale not in CONTENT_SCALES:
    raise ValueError(f"cdl: content_scale must be one of {CONTENT_SCALES}, "
                     f"got {config.content_scale!r}")
  if config.solver not in als.SOLVERS:
    raise ValueError(f"cdl: solver must be one of {als.SOLVERS}, got {config.solver!r}")
  if config.pretrain_epochs < 0 or config.layerwise_epochs < 0:
    raise ValueError(f"cdl: pretrain_epochs and layerwise_epochs must be >= 0, got "
                     f"{config.pretrain_epochs} and {config.layerwise_epochs}")
  k = config.factors
  encode_jit = jax.jit(lambda params, x: encode_clean(config, params, x))

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix):
    n_words = item_content.shape[1]
    k_net, k_fac = jax.random.split(key)
    module = sdae_nn.SDAE(n_inputs=n_words, hidden=(*config.hidden, k), dropout=config.dropout)
    params = module.init(k_net, jnp.zeros((1, n_words)), True)
    # The output bias starts at the bias-only optimum (logit of each word's mean; see
    # recjax.models.cvae.marginal_output_bias for why).
    mean = np.clip(np.asarray(scale_content(item_content, config.content_scale).mean(axis=0),
                              np.float64).ravel(), 1e-6, 1 - 1e-6)
    last = f"dec_{len(config.hidden)}"
    inner = dict(params["params"])
    inner[last] = {**inner[last], "bias": jnp.asarray(np.log(mean) - np.log1p(-mean), jnp.float32)}
    params = {**params, "params": inner}
    factors = als.init_factors(k_fac, train.shape, k, config.init_scale)
    factors["mu"] = jnp.zeros((train.shape[1], k), jnp.float32)  # θ_j used by the last block step.
    factors["rated"] = jnp.asarray(np.diff(sp.csc_matrix(train).indptr) > 0)
    return params, factors

  def prepare(train: sp.csr_matrix, item_content: sp.spmatrix):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cdl: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    return {**als.bucketed_sides(train, config.bucket_growth),
            "content": scale_content(item_content, config.content_scale),
            "train": sp.csr_matrix(train)}

  def batches(aux, batch_size, epoch, seed):
    x = aux["content"]
    order = batching.shuffled_order(x.shape[0], seed, epoch)
    stage, weight = schedule(config, epoch)
    return batching.n_batches(x.shape[0], batch_size), content_batches(
        x, batch_size, order, weight, stage)

  n_layers = len(config.hidden) + 1

  def loss(params, factors, batch, key):
    m = batch["mask"].astype(jnp.float32)
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    rows = sparse.PaddedRows(batch["words"], batch["values"])
    net = network(config, params)

    n_items = factors["V"].shape[0]

    def decay(names=None):  # λ_w/(2N) ||·||² of the named layers (all if None).
      p = params["params"] if names is None else {n: params["params"][n] for n in names}
      return 0.5 * config.reg_w / n_items * optax.tree_utils.tree_norm(p, squared=True)

    def layer_dae(l):  # Stage l: encoder layer l + its mirror as a DAE; lower layers fixed.
      def branch():
        h = rows if l == 0 else jax.lax.stop_gradient(
            net.apply(params, rows, l, method=sdae_nn.SDAE.features))
        noisy = sdae_nn.masking_noise(key, h, config.noise)
        recon = net.apply(params, noisy, l, method=sdae_nn.SDAE.layer_reconstruction)
        return (0.5 * config.reg_n * sdae_nn.squared_error(recon, h),
                jnp.zeros(m.shape, jnp.float32), decay(layer_parameters(n_layers, l)))
      return branch

    branches = [layer_dae(l) for l in range(n_layers)]
    branches.append(lambda: (*item_terms(config, params, rows, v, key), decay()))
    reconstruction, prior, weights = jax.lax.switch(
        batch["stage"][0], [lambda _, f=f: f() for f in branches], None)
    count = jnp.maximum(jnp.sum(m), 1.0)
    mean = lambda t: jnp.sum(t * m) / count
    total = mean(reconstruction + batch["prior_weight"] * prior) + weights
    return total, {"reconstruction": mean(reconstruction), "prior": mean(prior),
                   "stage": mean(batch["stage"].astype(jnp.float32))}

  def block_step(params, factors, aux, key):
    del key
    theta = encode_items(encode_jit, params, aux["content"], config.encode_batch)
    kw = dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call)
    u = als.half_sweep(factors["U"], factors["V"], aux["users"], reg=config.reg_u, **kw)
    v = als.half_sweep(factors["V"], u, aux["items"], reg=config.reg_v, prior=theta, **kw)
    return {"U": u, "V": v, "mu": theta, "rated": factors["rated"]}

  def score(params, factors, inputs):
    del params
    u = als.fold_in_dense(factors["V"], inputs, a=config.a, b=config.b, reg=config.reg_u,
                          item_chunk=config.fold_in_chunk)
    return u @ item_vectors(factors).T

  def model_item_vectors(params, factors):
    """The item vectors score multiplies with (`item_vectors` above)."""
    del params
    return item_vectors(factors)

  score_padded, serving_factors = als_serving(a=config.a, b=config.b, reg=config.reg_u,
                                              item_vectors=model_item_vectors)

  return Model(name="cdl", config=config, init=init, score=score, score_padded=score_padded,
               serving_factors=serving_factors, prepare=prepare,
               block_step=block_step, loss=loss, optimizer=optax.adam(config.learning_rate),
               train_defaults={"epochs": 200}, side_keys=("item_content",), batches=batches,
               item_vectors=model_item_vectors,
               item_vectors_doc="CDL item factors: v_j if clicked in training, else the SDAE code θ_j")


def layer_parameters(n_layers: int, l: int) -> tuple[str, ...]:
  """The layers stage l of the greedy pretraining trains (and decays): enc_l and its mirror."""
  return (f"enc_{l}", f"dec_{n_layers - 1 - l}")


def schedule(config: Config, epoch: int) -> tuple[int, float]:
  """(stage, prior weight) of runner epoch `epoch` (1-based).

  Stage l < len(hidden) + 1 is encoder layer l's denoising autoencoder
  (`layerwise_epochs` epochs each); then stage len(hidden) + 1, the whole SDAE:
  `pretrain_epochs` epochs without the λ_v term, then the MAP training.
  """
  n_layers = len(config.hidden) + 1
  layerwise = n_layers * config.layerwise_epochs if config.layerwise_epochs > 0 else 0
  if epoch <= layerwise:
    return (epoch - 1) // config.layerwise_epochs, 0.0
  return n_layers, 0.0 if epoch <= layerwise + config.pretrain_epochs else 1.0


def content_batches(content: sp.csr_matrix, batch_size: int, order=None,
                    prior_weight: float = 1.0, stage: int | None = None):
  """The content rows as the loss reads them: padded word lists of one shape for the whole run.

  Yields dicts with "words" int32 [B, L] and "values" float32 [B, L] (L the
  longest row of `content`, padding value 0), "index" int32 [B] item ids (-1
  on padding rows), "mask" bool [B], "prior_weight" float32 [B] and "stage"
  int32 [B] (see `schedule`; None: the whole SDAE, a large index that
  `lax.switch` clamps to the last branch).
  """
  for rb in batching.padded_row_batches(content, batch_size, order=order):
    n = len(rb.mask)
    yield {"words": rb.items, "values": rb.values, "index": rb.index.astype(np.int32),
           "mask": rb.mask, "prior_weight": np.full(n, prior_weight, np.float32),
           "stage": np.full(n, 10_000 if stage is None else stage, np.int32)}


def encode_items(encode_fn, params, content: sp.csr_matrix, batch_size: int) -> jax.Array:
  """encode_fn(params, padded rows) for every content row, batch by batch: [n_items, K]."""
  out = [np.asarray(encode_fn(params, sparse.PaddedRows(b["words"], b["values"])))[b["mask"]]
         for b in content_batches(content, batch_size)]
  return jnp.asarray(np.concatenate(out))


@functools.lru_cache(maxsize=8)
def _objective_fns(config: Config):
  """Jitted (encode_clean, item_terms) for `map_objective`, compiled once per config."""
  return (jax.jit(lambda p, r: encode_clean(config, p, r)),
          jax.jit(lambda p, r, v, kk: item_terms(config, p, r, v, kk)))


def map_objective(config: Config, params, factors, aux, key) -> dict:
  """J at (params, U, V) with its parts (float64 sums); `key` fixes the noise and dropout draws.

  Returns:
    {"total", "ratings", "network", "weights"}: the exact rating part (halved
    `implicit_objective` with prior mean θ of the clean content), the
    corrupted-input network terms, and λ_w/2 ||W, b||².
  """
  x = aux["content"]
  encode_fn, terms = _objective_fns(config)
  theta = np.asarray(encode_items(encode_fn, params, x, config.encode_batch), np.float64)
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=theta)
  v_all = jnp.asarray(factors["V"])
  network_terms = 0.0
  for b, batch in enumerate(content_batches(x, config.encode_batch)):
    rows = sparse.PaddedRows(batch["words"], batch["values"])
    rec, _ = terms(params, rows, v_all[np.maximum(batch["index"], 0)], jax.random.fold_in(key, b))
    network_terms += float(np.sum(np.asarray(rec, np.float64)[batch["mask"]]))
  weights = 0.5 * config.reg_w * float(optax.tree_utils.tree_norm(params, squared=True))
  return {"total": ratings + network_terms + weights, "ratings": ratings,
          "network": network_terms, "weights": weights}
