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
  (no noise, no dropout) for every item, then one implicit-ALS sweep with
  prior mean θ (`recjax.ops.als_core.prior_step`):
  u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i,
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v θ_j).
* ``loss`` (Adam over minibatches of items, `recjax.data.batching.ContentRows`):
  the network's terms of J per item,
  (1/|B|) Σ_j [λ_n/2 ||X_{L,j} − X_c,j||² + λ_v/2 ||v_j − X_{L/2,j}||²]
  + λ_w/(2N) ||W, b||², with the corrupted input and dropout (0.1) inside the
  network, as the paper trains it.

Pretraining ("the weights of the network are first pretrained in a plain
SDAE manner", CVAE paper §3.3) takes the first runner epochs (`phase`):
optionally greedy layerwise (``layerwise_epochs`` per encoder layer: the
layer and its mirror decoder layer as a denoising autoencoder of the layer's
input, lower layers fixed), then ``pretrain_epochs`` epochs of the whole SDAE
with ``prior_weight = 0`` (reconstruction + weight decay alone).  In a
layerwise stage the weight decay covers only the layer pair that stage trains
(`layer_parameters`; a training-procedure choice, issue 5: through Adam a
decay-only gradient moved the "fixed" layers by ~lr per step and erased them,
leaving a saturated code, one vector for every item).  The block step runs in
them too.  The loss reads the epoch's stage from its ``phase`` argument and
picks the stage's objective with `lax.switch` (one compiled step).

Prediction (CDL Eq. 8): R*_ij = u_iᵀ v_j for items with a training click;
an item with none ("out-of-matrix") has no offset ε_j and is scored from its
content alone, u_iᵀ θ_j.  Users are folded in by one exact implicit-ALS solve
against V (`recjax.ops.als_core.scorers`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
import scipy.sparse as sp

from recjax.data import batching
from recjax.data import content as content_lib
from recjax.models.base import Model, check_config
from recjax.nn import content as content_nn
from recjax.nn import sdae as sdae_nn
from recjax.nn import sparse
from recjax.ops import als, als_core

CONTENT_SCALES = ("word_max", "row_max", "binary", "none")


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig):
  """CDL's fields; a, b, λ_u, λ_v and the ALS solver fields: `als_core.PriorALSConfig`."""

  dim: int = 50  # K: dimension of u_i, v_j and of the SDAE's middle layer.
  hidden: tuple[int, ...] = (200,)  # Encoder layers before the K-wide code (decoder mirrors them).
  reg_u: float = 1.0  # λ_u.
  reg_v: float = 10.0  # λ_v, the pull of v_j toward the SDAE code θ_j.
  reg_n: float = 1000.0  # λ_n, the weight of the reconstruction error.
  reg_w: float = 1e-4  # λ_w on all weights and biases, in the paper's units (summed over items).
  noise: float = 0.3  # Masking noise level on the network's input.
  dropout: float = 0.1  # Dropout on the non-code hidden layers in training.
  content_scale: str = "word_max"  # "word_max" (paper: each word / its max count over items), "row_max" (each item / its own max count: the CDL author's code), "binary" or "none".
  layerwise_epochs: int = 0  # Epochs per greedy layerwise pretraining stage (one per encoder layer); 0: none.
  pretrain_epochs: int = 10  # Then epochs that train the whole SDAE alone (no λ_v term).
  learning_rate: float = 1e-3  # Adam.
  encode_batch: int = 1024  # Items per jitted call when the block step encodes every item.

  def __post_init__(self):
    check_config(self, "cdl", **als_core.merge_rules(als_core.PRIOR_ALS_RULES, {
        "at_least": {"dim": 1, "reg_n": 0.0, "reg_w": 0.0, "layerwise_epochs": 0,
                     "pretrain_epochs": 0, "encode_batch": 1},
        "above": {"learning_rate": 0.0}, "fractions": ("noise", "dropout"),
        "choices": {"content_scale": CONTENT_SCALES}}))


def network(config: Config, params) -> sdae_nn.SDAE:
  """The SDAE that `params` parameterize."""
  return sdae_nn.SDAE.for_params(params, (*config.hidden, config.dim), config.dropout)


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


def layer_parameters(n_layers: int, l: int) -> tuple[str, ...]:
  """The layers stage l of the greedy pretraining trains (and decays): enc_l and its mirror."""
  return (f"enc_{l}", f"dec_{n_layers - 1 - l}")


def phase(config: Config, epoch: int) -> dict:
  """{"stage", "prior_weight"} of runner epoch `epoch` (1-based): the loss's schedule.

  Stage l < len(hidden) + 1 is encoder layer l's denoising autoencoder
  (`layerwise_epochs` epochs each); then stage len(hidden) + 1, the whole SDAE:
  `pretrain_epochs` epochs without the λ_v term (prior weight 0), then the MAP
  training (prior weight 1); `recjax.nn.content.pretraining_stage`.
  """
  stage, prior_weight = content_nn.pretraining_stage(
      epoch, len(config.hidden) + 1, config.layerwise_epochs, config.pretrain_epochs)
  return {"stage": stage, "prior_weight": prior_weight}


@functools.lru_cache(maxsize=8)
def _encode_fn(config: Config):
  """Jitted θ of a `ContentRows` batch, compiled once per config."""
  return jax.jit(lambda p, b: encode_clean(config, p, content_nn.content_rows(b)))


def encode_items(config: Config, params, content: sp.csr_matrix) -> jax.Array:
  """θ_j [n_items, K] of every item's clean content, `encode_batch` items per call."""
  return content_nn.encode_all(_encode_fn(config), params,
                               batching.content_batches(content, config.encode_batch))


def make(config: Config) -> Model:
  n_layers = len(config.hidden) + 1

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix):
    n_words = item_content.shape[1]
    k_net, k_fac = jax.random.split(key)
    module = sdae_nn.SDAE(n_inputs=n_words, hidden=(*config.hidden, config.dim),
                          dropout=config.dropout)
    params = module.init(k_net, jnp.zeros((1, n_words)), True)
    params = content_nn.with_param(  # Starts at the bias-only optimum (marginal_output_bias).
        params, (f"dec_{len(config.hidden)}", "bias"), content_lib.marginal_output_bias(
            content_lib.scale(item_content, config.content_scale)))
    return params, als_core.init_factors(k_fac, train, config, prior="mu")

  def prepare(train: sp.csr_matrix, item_content: sp.spmatrix, mesh=None):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cdl: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    return {**als_core.prepare(train, config, mesh),
            "content": content_lib.scale(item_content, config.content_scale),
            "train": sp.csr_matrix(train)}

  def loss(params, factors, batch, key, phase):
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    rows = content_nn.content_rows(batch)
    net = network(config, params)
    zeros = jnp.zeros(batch["mask"].shape, jnp.float32)
    decay = functools.partial(content_nn.weight_decay, params, config.reg_w, factors["V"].shape[0])

    def layer_dae(l):  # Stage l: encoder layer l + its mirror as a DAE; lower layers fixed.
      def branch():
        h = rows if l == 0 else jax.lax.stop_gradient(
            net.apply(params, rows, l, method=sdae_nn.SDAE.features))
        noisy = sdae_nn.masking_noise(key, h, config.noise)
        recon = net.apply(params, noisy, l, method=sdae_nn.SDAE.layer_reconstruction)
        return (0.5 * config.reg_n * sdae_nn.squared_error(recon, h), zeros,
                decay(layer_parameters(n_layers, l)))
      return branch

    branches = [layer_dae(l) for l in range(n_layers)]
    branches.append(lambda: (*item_terms(config, params, rows, v, key), decay()))
    reconstruction, prior, weights = jax.lax.switch(
        phase["stage"], [lambda _, f=f: f() for f in branches], None)
    mean = lambda t: content_nn.masked_mean(t, batch["mask"])
    total = mean(reconstruction + phase["prior_weight"] * prior) + weights
    return total, {"reconstruction": mean(reconstruction), "prior": mean(prior),
                   "stage": phase["stage"].astype(jnp.float32)}

  als_parts = content_nn.prior_mean_parts(
      config, lambda params, aux: encode_items(config, params, aux["content"]), "mu")
  return Model(name="cdl", config=config, init=init, prepare=prepare, loss=loss,
               optimizer=optax.adam(config.learning_rate), train_defaults={"epochs": 200},
               side_keys=("item_content",), batch_source=batching.ContentRows("content"),
               phase=functools.partial(phase, config), **als_parts,
               item_vectors_doc="CDL item factors: v_j if clicked in training, else the SDAE "
                                "code θ_j")


@functools.lru_cache(maxsize=8)
def _terms_fn(config: Config):
  """Jitted `item_terms` of a `ContentRows` batch for `map_objective`, compiled once per config."""
  return jax.jit(lambda p, b, v, k: item_terms(config, p, content_nn.content_rows(b), v, k))


def map_objective(config: Config, params, factors, aux, key) -> dict:
  """J at (params, U, V) with its parts (float64 sums); `key` fixes the noise and dropout draws.

  Returns:
    {"total", "ratings", "network", "weights"}: the exact rating part (halved
    `implicit_objective` with prior mean θ of the clean content), the
    corrupted-input network terms, and λ_w/2 ||W, b||².
  """
  x = aux["content"]
  theta = encode_items(config, params, x)
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=theta)
  network_terms = content_nn.item_sum(_terms_fn(config), params, factors["V"],
                                      batching.content_batches(x, config.encode_batch), key, 1)
  weights = 0.5 * config.reg_w * float(optax.tree_utils.tree_norm(params, squared=True))
  return {"total": ratings + network_terms + weights, "ratings": ratings,
          "network": network_terms, "weights": weights}
