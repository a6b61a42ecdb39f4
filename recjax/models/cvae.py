"""CVAE: collaborative variational autoencoder (Li & She, KDD 2017), MAP estimates (§2.2).

Generative model: u_i ~ N(0, λ_u⁻¹ I), v†_j ~ N(0, λ_v⁻¹ I), z_j ~ N(0, I),
x_j ~ p_θ(x | z_j) (the generation network), v_j = v†_j + z_j and
R_ij ~ N(u_iᵀv_j, C_ij⁻¹) with C_ij = a on clicks and b elsewhere.  The
inference network gives q_φ(z_j | x_j) = N(μ_j, diag σ_j²).  Training
minimizes the negative of Eq. 1, with λ_r on its third line as in §3.4:

  J = Σ_ij C_ij/2 (R_ij − u_iᵀv_j)² + λ_u/2 Σ_i ||u_i||²
      + λ_v/2 Σ_j E_q ||v_j − z_j||²
      + λ_r Σ_j ( −E_q log p_θ(x_j | z_j) + KL(q_φ(z_j | x_j) || N(0, I)) )
      + λ_w/2 Σ_l (||W_l||² + ||b_l||²),

where E_q ||v_j − z_j||² = ||v_j − μ_j||² + Σ_k σ_jk² exactly (the
network's loss uses this closed form; the paper's SGVB estimate with one
sample has the same expectation and gradient in expectation) and
E_q log p_θ(x_j | z_j) is estimated with one reparameterized sample
z_j = μ_j + σ_j ⊙ ε (L = 1, as the paper suggests for minibatches of 128).

Block coordinate descent on J, one runner epoch at a time:

* ``block_step`` (closed form, never optax): μ_j = E_q[z_j] for every item
  from the current inference network, then one implicit-ALS sweep with prior
  mean μ (`recjax.ops.als_core.prior_step`):
  u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i (no prior) and
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v μ_j) (prior mean μ_j).
  Each half sweep minimizes J exactly in its block.
* ``loss`` (Adam over minibatches of items, `recjax.data.batching.ContentRows`):
  the terms of J that involve θ, φ, per item, i.e. for a batch B
  (1/|B|) Σ_{j∈B} [λ_r (−log p_θ(x_j | z_j) + KL_j) + λ_v/2 E_q||v_j − z_j||²]
  + λ_w/(2N) ||θ, φ||², an unbiased estimate of (those terms of J) / N for
  N items.

Pretraining ("first learn initial starting points for the network weights
in plain VAE manner", §3.3) takes the first runner epochs (see `phase`):

1. optionally, as the authors' code does, layer by layer
   (``layerwise_epochs`` per stage): each inference layer as a tied
   denoising autoencoder of its input (masking noise 0.3, Bernoulli
   cross-entropy, lower layers fixed), then the latent heads as a VAE of the
   top features.  Trained end to end from a random start, the VAE's
   posterior collapses (KL → 0) within 2–3 epochs on both citeulike sets;
   layer by layer, each stage learns (the latent stage keeps KL ≈ 3 nats on
   citeulike-a titles), though the whole-network stage still collapses there
   within an epoch;
2. ``pretrain_epochs`` epochs of the whole network as a plain VAE
   (``prior_weight = 0``: λ_r(−log p + KL) + weight decay alone).

Training-procedure choices the paper leaves open (issue 5):

* weight decay in a layerwise stage covers only the parameters that stage
  trains (`layer_parameters`, `LATENT_PARAMETERS`): through Adam a
  decay-only gradient moves every "fixed" weight by ~lr per step, which had
  erased the lower layers between stages;
* KL warm-up (``kl_warmup_epochs``): in the latent-VAE and whole-VAE
  pretraining stages the KL weight rises linearly from 0 to 1
  (``phase(epoch)["kl_weight"]``).
  At weight 1 from the start both stages collapse the posterior on
  citeulike-a titles (KL → 0, μ_j one vector for every item) and the MAP
  stage never recovers.  The MAP stage always has weight 1 (the paper's J);
  there λ_v Σσ² holds σ² near λ_r/(λ_r + λ_v), so an informative μ is cheap
  and it stays informative;
* the configs use Adam at 1e-2 (the authors' pretraining rate) throughout.

The block step still runs in those epochs (ALS against the content codes of
the network being pretrained), so every epoch's validation numbers mean
something; the alternation proper starts after them.  The loss reads the
epoch's stage and weights from its ``phase`` argument and picks the stage's
objective with `lax.switch` (one compiled step for all stages).

Prediction (§2.4): R*_ij = u_iᵀ(v†_j + μ_j).  At the MAP point
v_j = v†_j + z_j with E[z_j] = μ_j, so v†_j = v_j − μ_j for every item with at
least one training click (v†_j + μ_j = v_j), and v†_j = 0 for an item with none
("items that have never been seen before will have no v† term"): those are
scored from their content alone, u_iᵀμ_j (`recjax.ops.als_core.item_vectors`).
μ_j here is the one the block step used as the prior (stored in
``factors["mu"]``), so V and μ always come from the same network.  Users are
folded in by one exact implicit-ALS solve against V (`recjax.ops.als_core.scorers`):
the same update the block step gives u_i.

The authors' code (eelxpeng/CollaborativeVAE: citeulike-t/test_vae.py and
test_cvae.py, lib/vae.py, lib/cvae.py), where it departs from the paper or
fills what the paper leaves open, is a set of labelled Config options, all off
by default (the paper, or recjax's choice, stays the default); the config
``experiments/configs/cvae_authors_citeulike_*_p1.py`` turns them all on:

* ``map_learning_rate``: a fresh Adam at this rate for the MAP stage
  (`two_stage_adam`: both Adam states live in the optimizer state, the stage
  picks one), as their test_cvae.py builds a new model at lr 1e-3 after
  pretraining at 1e-2;
* ``pretrain_fraction``: their pretraining reads a random 80% of the items
  (test_vae.py); here the other items stay in the batches with weight 0
  (``factors["pretrain"]``), so an epoch has the same number of steps as a
  MAP epoch;
* ``pretrain_weight_decay=False``: their pretraining has no weight decay;
* ``bias_layout="authors_code"`` (`recjax.nn.cvae.BIAS_LAYOUTS`): the middle
  generation bias tied to the first inference bias, the layerwise
  autoencoders' decoder biases discarded after their stage, the output bias
  from 0 at the whole-network stage;
* ``objective="authors_code"``: per item −log p + KL + λ_v/λ_r E||v − z||²
  (their v_loss has no ½) + ``kernel_decay`` (2e-4) Σ_l ||W_l||² per item on
  the tied kernels only (tf.nn.l2_loss of each use of W_1, W_2);
* ``user_gram="clicked"``: their user solve's b VᵀV sums only the items with
  a training click (`recjax.ops.als_core.user_side`), a departure from the
  objective above, which has b on every unobserved (user, item) pair;
* ``score_unclicked="factor"``: they score every item by u_iᵀv_j, so an item
  with no click is scored by its ALS solution v_j = (b UᵀU + λ_v I)⁻¹ λ_v μ_j
  (a shrunk μ_j) rather than μ_j itself.

Content: bag-of-words rows; by default each word's counts are divided by its
largest count over all items (the paper's normalization), which puts them in
[0, 1] for the Bernoulli likelihood (the cross-entropy of the authors' code).
The output bias starts at each word's marginal log-odds
(`recjax.data.content.marginal_output_bias`),
not at 0 as in the authors' code: from 0, Adam at 1e-3 needs tens of epochs
just to reach the bias-only reconstruction.
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
from recjax.models import base
from recjax.models.base import Model, check_config
from recjax.nn import content as content_nn
from recjax.nn import cvae as cvae_nn
from recjax.nn import sdae as sdae_nn
from recjax.nn import sparse
from recjax.ops import als, als_core

CONTENT_SCALES = ("word_max", "row_max", "binary", "none")
LIKELIHOODS = ("bernoulli", "gaussian")
OBJECTIVES = ("paper", "authors_code")


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig):
  """CVAE's fields; a, b, λ_v and the ALS solver fields come from `als_core.PriorALSConfig`."""

  dim: int = 50  # K: dimension of u_i, v_j and of the latent content z_j (they must match).
  hidden: tuple[int, ...] = (200, 100)  # Inference layers ("200-100"); generation mirrors them, weights tied.
  reg_u: float = 0.1  # λ_u (the paper's Fig. 6 setting and the authors' code).
  reg_v: float = 10.0  # λ_v, the pull of v_j toward the inference mean μ_j.
  reg_r: float = 1.0  # λ_r, the weight of the content terms (reconstruction + KL; §3.4) in the joint MAP stage (pretraining is independent of it).
  reg_w: float = 1e-4  # λ_w on all network weights and biases, in Eq. 1's units (summed over items).
  likelihood: str = "bernoulli"  # p_θ(x | z): "bernoulli" (content in [0, 1]) or "gaussian".
  gaussian_precision: float = 1.0  # λ_x of the Gaussian likelihood.
  content_scale: str = "word_max"  # "word_max" (paper: each word / its max count over items), "row_max" (each item / its own max count: the CDL author's code), "binary" or "none".
  layerwise_epochs: int = 0  # Epochs per layerwise pretraining stage (one per hidden layer + the latent layer); 0: none.
  layerwise_noise: float = 0.3  # Masking noise of the layerwise denoising autoencoders (authors' code).
  pretrain_epochs: int = 10  # Then epochs that train the whole network as a plain VAE (no λ_v term).
  kl_warmup_epochs: int = 0  # In each VAE pretraining stage, the KL weight rises linearly from 0 to 1 over this many epochs; 0: always 1.
  learning_rate: float = 1e-3  # Adam (the authors' code).
  encode_batch: int = 1024  # Items per jitted call when the block step encodes every item.
  # Options that follow the authors' code where it departs from the paper or leaves it open
  # (eelxpeng/CollaborativeVAE; issue 20).  The defaults are the paper's (or recjax's) choice.
  map_learning_rate: float | None = None  # A fresh Adam at this rate from the first MAP epoch (authors: 1e-3 after pretraining at 1e-2); None: one Adam at learning_rate throughout.
  pretrain_fraction: float = 1.0  # Pretraining stages train on this random fraction of the items (authors: 0.8; the rest carry weight 0); the MAP stage on all.
  pretrain_weight_decay: bool = True  # Weight decay in the pretraining stages (the authors' pretraining has none).
  bias_layout: str = "untied"  # "untied" or "authors_code": tied middle biases, DAE biases discarded, output bias from 0 (recjax.nn.cvae.BIAS_LAYOUTS).
  objective: str = "paper"  # MAP-stage network loss: "paper" (λ_r(−log p + KL) + λ_v/2 E||v−z||² + λ_w/(2N)||θ||²) or "authors_code" (−log p + KL + λ_v/λ_r E||v−z||² + kernel_decay Σ_l ||W_l||² per item).
  kernel_decay: float = 2e-4  # The authors' per-item weight decay on the tied kernels (objective="authors_code" only).
  user_gram: str = "all"  # User solve's b VᵀV over "all" items (the paper) or only items with a training click ("clicked", the authors' code).
  score_unclicked: str = "prior"  # Items without a training click are scored by "prior" (μ_j: no v† term, §2.4) or "factor" (their ALS v_j = (bUᵀU + λ_v I)⁻¹ λ_v μ_j, the authors' code).

  def __post_init__(self):
    check_config(self, "cvae", **als_core.merge_rules(als_core.PRIOR_ALS_RULES, {
        "at_least": {"dim": 1, "reg_r": 0.0, "reg_w": 0.0, "layerwise_epochs": 0,
                     "pretrain_epochs": 0, "kl_warmup_epochs": 0, "encode_batch": 1,
                     "kernel_decay": 0.0},
        "above": {"gaussian_precision": 0.0, "learning_rate": 0.0, "map_learning_rate": 0.0},
        "fractions": ("layerwise_noise",),
        "choices": {"likelihood": LIKELIHOODS, "content_scale": CONTENT_SCALES,
                    "bias_layout": cvae_nn.BIAS_LAYOUTS, "objective": OBJECTIVES,
                    "user_gram": als_core.USER_GRAMS,
                    "score_unclicked": als_core.UNCLICKED_SCORES}}))
    if not 0.0 < self.pretrain_fraction <= 1.0:
      raise ValueError(f"cvae: pretrain_fraction must be in (0, 1], got {self.pretrain_fraction}")
    if self.objective == "authors_code" and self.reg_r <= 0:
      raise ValueError("cvae: objective='authors_code' divides by reg_r; it must be > 0")


def network(config: Config, params) -> cvae_nn.TiedVAE:
  """The tied-weight VAE that `params` parameterize."""
  return cvae_nn.TiedVAE.for_params(params, config.hidden, config.dim)


def encode(config: Config, params, x: sparse.Rows) -> tuple[jax.Array, jax.Array]:
  """(μ, log σ²) [B, K] of q_φ(z | x) for content rows x (dense [B, W] or padded)."""
  return network(config, params).apply(params, x, method=cvae_nn.TiedVAE.encode)


def item_terms(config: Config, params, x: sparse.Rows, v: jax.Array, key: jax.Array,
               content_weight=None):
  """The per-item network terms of J, each [B].

  `content_weight` (default λ_r) multiplies the two content terms: λ_r belongs to
  the joint objective (Eq. 1), so the VAE pretraining, which has no rating term,
  passes 1 and is the same whatever λ_r is.

  Returns:
    (λ_r · −log p_θ(x_j | z_j) with one reparameterized z_j ~ q(z | x_j),
     λ_r · KL(q(z | x_j) || N(0, I)),
     λ_v/2 · E_q||v_j − z_j||² = λ_v/2 (||v_j − μ_j||² + Σ_k σ_jk²)).
  """
  eps = jax.random.normal(key, (v.shape[0], config.dim), v.dtype)
  f, mu, logvar = network(config, params).apply(params, x, eps)
  nll = -cvae_nn.content_log_likelihood(config.likelihood, f, x, config.gaussian_precision)
  kl = cvae_nn.gaussian_kl(mu, logvar)
  prior = 0.5 * config.reg_v * (jnp.sum(jnp.square(v - mu), axis=-1)
                                + jnp.sum(jnp.exp(logvar), axis=-1))
  w = config.reg_r if content_weight is None else content_weight
  return w * nll, w * kl, prior


LATENT_PARAMETERS = ("mu", "logvar", "latent_in")


def layer_parameters(l: int, bias_layout: str = "untied") -> tuple[str, ...]:
  """The parameters layer l's denoising autoencoder trains (and decays): W_l, c_l and its
  decoder bias (d_l, or its own ``dae_bias_l`` under the authors' bias layout)."""
  decoder = f"dae_bias_{l}" if bias_layout == "authors_code" else f"dec_bias_{l}"
  return (f"kernel_{l}", f"enc_bias_{l}", decoder)


def two_stage_adam(learning_rate: float, map_learning_rate: float
                   ) -> optax.GradientTransformationExtraArgs:
  """Adam at `learning_rate` in pretraining, then a fresh Adam at `map_learning_rate`.

  The state holds both Adams; ``update(..., map_stage=b)`` steps the one of
  the stage (b a traced bool), so the MAP Adam starts from zero moments and
  count at the first MAP step, as the authors' code starts a new optimizer
  after pretraining.
  """
  pre, post = optax.adam(learning_rate), optax.adam(map_learning_rate)

  def init(params):
    return {"pretrain": pre.init(params), "map": post.init(params)}

  def update(grads, state, params=None, *, map_stage=False, **unused):
    del unused

    def step_pretrain():
      updates, s = pre.update(grads, state["pretrain"], params)
      return updates, {"pretrain": s, "map": state["map"]}

    def step_map():
      updates, s = post.update(grads, state["map"], params)
      return updates, {"pretrain": state["pretrain"], "map": s}

    return jax.lax.cond(map_stage, step_map, step_pretrain)

  return optax.GradientTransformationExtraArgs(init, update)


def phase(config: Config, epoch: int) -> dict:
  """{"stage", "prior_weight", "kl_weight"} of runner epoch `epoch` (1-based): the loss's schedule.

  Stages: l < len(hidden) is layer l's denoising autoencoder and len(hidden)
  the latent VAE (each `layerwise_epochs` epochs, in that order), then
  len(hidden) + 1, the whole network: `pretrain_epochs` epochs without the
  λ_v term (prior weight 0), then the MAP training (prior weight 1)
  (`recjax.nn.content.pretraining_stage`).

  The KL weight is 1 (the objective) except in the VAE pretraining stages (the
  latent VAE and the whole-network pretraining) when ``kl_warmup_epochs`` > 0:
  there it is (epochs already spent in the stage) / kl_warmup_epochs, capped
  at 1.  The MAP stage always has weight 1.
  """
  n_layers = len(config.hidden)
  stage, prior_weight = content_nn.pretraining_stage(
      epoch, n_layers + 1, config.layerwise_epochs, config.pretrain_epochs)
  kl_weight = 1.0
  if config.kl_warmup_epochs > 0 and stage >= n_layers and prior_weight == 0:
    layerwise = (n_layers + 1) * config.layerwise_epochs if config.layerwise_epochs > 0 else 0
    start = layerwise - config.layerwise_epochs if stage == n_layers else layerwise
    kl_weight = min(1.0, (epoch - 1 - start) / config.kl_warmup_epochs)
  return {"stage": stage, "prior_weight": prior_weight, "kl_weight": kl_weight}


@functools.lru_cache(maxsize=8)
def _encode_fn(config: Config):
  """Jitted (μ, log σ²) of a `ContentRows` batch, compiled once per config."""
  return jax.jit(lambda p, b: encode(config, p, content_nn.content_rows(b)))


def encode_items(config: Config, params, content: sp.csr_matrix) -> jax.Array:
  """μ_j = E_q[z_j] [n_items, K] of every item, `encode_batch` items per call."""
  return content_nn.encode_all(lambda p, b: _encode_fn(config)(p, b)[0], params,
                               batching.content_batches(content, config.encode_batch))


def make(config: Config) -> Model:
  n_layers = len(config.hidden)

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix):
    n_words = item_content.shape[1]
    k_net, k_fac = jax.random.split(key)
    module = cvae_nn.TiedVAE(n_inputs=n_words, hidden=tuple(config.hidden), latent=config.dim,
                             bias_layout=config.bias_layout)
    params = module.init(k_net, jnp.zeros((1, n_words)), jnp.zeros((1, config.dim)))
    if config.bias_layout == "untied":  # The authors' output bias starts at 0.
      params = content_nn.with_param(params, ("dec_bias_0",), content_lib.marginal_output_bias(
          content_lib.scale(item_content, config.content_scale), config.likelihood))
    factors = als_core.init_factors(k_fac, train, config, prior="mu")
    if config.pretrain_fraction < 1.0:  # The items pretraining sees (fixed for the run).
      factors["pretrain"] = jax.random.uniform(
          jax.random.fold_in(k_fac, 1), (train.shape[1],)) < config.pretrain_fraction
    return params, factors

  def prepare(train: sp.csr_matrix, item_content: sp.spmatrix, mesh=None):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cvae: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    x = content_lib.scale(item_content, config.content_scale)
    if config.likelihood == "bernoulli" and x.nnz and (x.data.max() > 1 or x.data.min() < 0):
      raise ValueError("cvae: the Bernoulli likelihood needs content in [0, 1]; use "
                       "content_scale='word_max', 'row_max' or 'binary', or likelihood='gaussian'")
    return {**als_core.prepare(train, config, mesh), "content": x, "train": sp.csr_matrix(train)}

  def loss(params, factors, batch, key, phase):
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    rows = content_nn.content_rows(batch)
    net = network(config, params)
    k_noise, k_eps = jax.random.split(key)
    zeros = jnp.zeros(batch["mask"].shape, jnp.float32)
    full_decay = functools.partial(content_nn.weight_decay, params, config.reg_w,
                                   factors["V"].shape[0])
    pretraining = phase["prior_weight"] == 0
    # Pretraining stages: decay only when pretrain_weight_decay; the items of the
    # pretraining subset only when pretrain_fraction < 1.
    decay = full_decay if config.pretrain_weight_decay else lambda names=None: 0.0
    rows_used = batch["mask"]
    if "pretrain" in factors:
      in_subset = factors["pretrain"][jnp.maximum(batch["index"], 0)]
      rows_used = rows_used & jnp.where(pretraining, in_subset, True)

    def layer_dae(l):  # Stage l: layer l's tied denoising autoencoder; lower layers fixed.
      def branch():
        h = rows if l == 0 else jax.lax.stop_gradient(
            net.apply(params, rows, l, method=cvae_nn.TiedVAE.features))
        noisy = sdae_nn.masking_noise(k_noise, h, config.layerwise_noise)
        logits = net.apply(params, noisy, l, method=cvae_nn.TiedVAE.layer_reconstruction)
        return (-cvae_nn.bernoulli_log_likelihood(logits, h), zeros, zeros,
                decay(layer_parameters(l, config.bias_layout)))
      return branch

    def latent_vae():  # Stage n_layers: the latent heads as a VAE of the top features.
      h = jax.lax.stop_gradient(net.apply(params, rows, n_layers,
                                          method=cvae_nn.TiedVAE.features))
      eps = jax.random.normal(k_eps, (h.shape[0], config.dim), h.dtype)
      logits, mu, logvar = net.apply(params, h, eps,
                                     method=cvae_nn.TiedVAE.latent_reconstruction)
      return (-cvae_nn.bernoulli_log_likelihood(logits, h), cvae_nn.gaussian_kl(mu, logvar),
              zeros, decay(LATENT_PARAMETERS))

    def whole():  # Stage n_layers + 1: the whole network (pretraining, then the MAP terms).
      if config.objective == "authors_code":
        # lib/cvae.py: gen_loss + latent_loss + λ_v/λ_r mean||v − z||² + 2e-4 reg_loss, where
        # reg_loss counts each tied kernel twice with tf.nn.l2_loss (½||W||²).
        nll, kl, prior = item_terms(config, params, rows, v, k_eps, 1.0)
        prior = prior * (2.0 / config.reg_r)
        kernels = sum(jnp.sum(jnp.square(params["params"][f"kernel_{l}"]))
                      for l in range(n_layers))
        return nll, kl, prior, jnp.where(pretraining, decay(), config.kernel_decay * kernels)
      # λ_r weighs the content against the rating coupling, so it applies only once the
      # coupling does (prior weight > 0); the whole-VAE pretraining runs at weight 1.
      content_weight = jnp.where(phase["prior_weight"] > 0, config.reg_r, 1.0)
      return (*item_terms(config, params, rows, v, k_eps, content_weight),
              jnp.where(pretraining, decay(), full_decay()))

    branches = [layer_dae(l) for l in range(n_layers)] + [latent_vae, whole]
    nll, kl, prior, weights = jax.lax.switch(
        phase["stage"], [lambda _, f=f: f() for f in branches], None)
    per_item = nll + phase["kl_weight"] * kl + phase["prior_weight"] * prior
    mean = lambda t: content_nn.masked_mean(t, rows_used)
    return mean(per_item) + weights, {"neg_log_lik": mean(nll), "kl": mean(kl),
                                    "prior": mean(prior),
                                    "stage": phase["stage"].astype(jnp.float32)}

  # The block step's prior mean is the inference network's mean μ_j of each item's content.
  mean_codes = lambda params, aux: encode_items(config, params, aux["content"])
  if config.map_learning_rate is None:
    optimizer, update = optax.adam(config.learning_rate), None
  else:
    optimizer = two_stage_adam(config.learning_rate, config.map_learning_rate)
    update = base.gradient_update(loss, optimizer,
                                  lambda phase: {"map_stage": phase["prior_weight"] > 0})
  return Model(
      name="cvae", config=config, init=init, prepare=prepare, loss=loss,
      optimizer=optimizer, update=update, train_defaults={"epochs": 100},
      side_keys=("item_content",), batch_source=batching.ContentRows("content"),
      phase=functools.partial(phase, config),
      item_vectors_doc="CVAE item factors: v_j if clicked in training, else the encoder mean μ_j",
      **content_nn.prior_mean_parts(config, mean_codes, "mu"))


@functools.lru_cache(maxsize=8)
def _terms_fn(config: Config):
  """Jitted `item_terms` of a `ContentRows` batch for `map_objective`, compiled once per config."""
  return jax.jit(lambda p, b, v, k: item_terms(config, p, content_nn.content_rows(b), v, k))


def map_objective(config: Config, params, factors, aux, key, n_samples: int = 1) -> dict:
  """J (the negative of Eq. 1) at (params, U, V), with its parts, summed in float64.

  The rating part is exact (`recjax.ops.als.implicit_objective`, halved to the
  paper's C/2 and λ/2 convention, with the current network's μ as V's prior
  mean); the content part averages `n_samples` reparameterized draws per item
  (a fixed `key` gives a deterministic value).

  Args:
    config: the model's `Config`.
    params: network parameters.
    factors: {"U", "V", ...}.
    aux: `prepare`'s output (holds the training matrix and the scaled content).
    key: PRNG key of the content samples.
    n_samples: samples per item for E_q log p(x | z).

  Returns:
    {"total", "ratings", "prior_variance", "content", "weights"} as floats.
  """
  x = aux["content"]
  batches = lambda: batching.content_batches(x, config.encode_batch)
  stats = [(_encode_fn(config)(params, b), b["mask"]) for b in batches()]
  mu = np.concatenate([np.asarray(m, np.float64)[mask] for (m, _), mask in stats])
  variance = float(np.sum(np.concatenate([np.exp(np.asarray(lv, np.float64))[mask]
                                          for (_, lv), mask in stats])))
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=mu)
  prior_variance = 0.5 * config.reg_v * variance
  content = sum(content_nn.item_sum(_terms_fn(config), params, factors["V"], batches(),
                                    jax.random.fold_in(key, s), 2)
                for s in range(n_samples)) / n_samples
  weights = 0.5 * config.reg_w * float(optax.tree_utils.tree_norm(params, squared=True))
  total = ratings + prior_variance + content + weights
  return {"total": total, "ratings": ratings, "prior_variance": prior_variance,
          "content": content, "weights": weights}
