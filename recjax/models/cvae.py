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
  from the current inference network, then one implicit-ALS sweep
  (`recjax.ops.als.half_sweep`):
  u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i (no prior) and
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v μ_j) (prior mean μ_j).
  Each half sweep minimizes J exactly in its block.
* ``loss`` (Adam over minibatches of items from ``batches``): the terms of J
  that involve θ, φ, per item, i.e. for a batch B
  (1/|B|) Σ_{j∈B} [λ_r (−log p_θ(x_j | z_j) + KL_j) + λ_v/2 E_q||v_j − z_j||²]
  + λ_w/(2N) ||θ, φ||², an unbiased estimate of (those terms of J) / N for
  N items.

Pretraining ("first learn initial starting points for the network weights
in plain VAE manner", §3.3) takes the first runner epochs (see `schedule`):

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
  pretraining stages the KL weight rises linearly from 0 to 1 (`kl_weight`).
  At weight 1 from the start both stages collapse the posterior on
  citeulike-a titles (KL → 0, μ_j one vector for every item) and the MAP
  stage never recovers.  The MAP stage always has weight 1 (the paper's J);
  there λ_v Σσ² holds σ² near λ_r/(λ_r + λ_v), so an informative μ is cheap
  and it stays informative;
* the configs use Adam at 1e-2 (the authors' pretraining rate) throughout.

The block step still runs in those epochs (ALS against the content codes of
the network being pretrained), so every epoch's validation numbers mean
something; the alternation proper starts after them.  A batch names its
stage, and the loss picks the stage's objective with `lax.switch` (one
compiled step for all stages).

Prediction (§2.4): R*_ij = u_iᵀ(v†_j + μ_j).  At the MAP point
v_j = v†_j + z_j with E[z_j] = μ_j, so v†_j = v_j − μ_j for every item with at
least one training click, and v†_j = 0 for an item with none ("items that
have never been seen before will have no v† term"): those are scored from
their content alone, u_iᵀμ_j.  μ_j here is the one the block step used as
the prior (stored in ``factors["mu"]``), so V and μ always come from the same
network.  Users are folded in by one exact implicit-ALS solve against V
(`recjax.ops.als.fold_in_dense`): the same update the block step gives u_i.

Content: bag-of-words rows; by default each word's counts are divided by its
largest count over all items (the paper's normalization), which puts them in
[0, 1] for the Bernoulli likelihood (the cross-entropy of the authors' code).
The output bias starts at each word's marginal log-odds (`marginal_output_bias`),
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
from recjax.models.base import Model, als_serving, check_config
from recjax.nn import cvae as cvae_nn
from recjax.nn import sdae as sdae_nn
from recjax.nn import sparse
from recjax.ops import als

CONTENT_SCALES = ("word_max", "binary", "none")


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 50  # K: dimension of u_i, v_j and of the latent content z_j (they must match).
  hidden: tuple[int, ...] = (200, 100)  # Inference layers ("200-100"); generation mirrors them, weights tied.
  a: float = 1.0  # Confidence C_ij on clicks.
  b: float = 0.01  # Confidence C_ij elsewhere.
  reg_u: float = 0.1  # λ_u (the paper's Fig. 6 setting and the authors' code).
  reg_v: float = 10.0  # λ_v.
  reg_r: float = 1.0  # λ_r, the weight of the content terms (reconstruction + KL; §3.4) in the joint MAP stage (pretraining is independent of it).
  reg_w: float = 1e-4  # λ_w on all network weights and biases, in Eq. 1's units (summed over items).
  likelihood: str = "bernoulli"  # p_θ(x | z): "bernoulli" (content in [0, 1]) or "gaussian".
  gaussian_precision: float = 1.0  # λ_x of the Gaussian likelihood.
  content_scale: str = "word_max"  # "word_max" (paper: each word / its max count), "binary" or "none".
  layerwise_epochs: int = 0  # Epochs per layerwise pretraining stage (one per hidden layer + the latent layer); 0: none.
  layerwise_noise: float = 0.3  # Masking noise of the layerwise denoising autoencoders (authors' code).
  pretrain_epochs: int = 10  # Then epochs that train the whole network as a plain VAE (no λ_v term).
  kl_warmup_epochs: int = 0  # In each VAE pretraining stage, the KL weight rises linearly from 0 to 1 over this many epochs; 0: always 1.
  learning_rate: float = 1e-3  # Adam (the authors' code).
  solver: str = "cholesky"  # ALS solver: "cholesky" (exact) or "cg".
  cg_steps: int = 3  # CG steps per half sweep when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial U and V.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths in the ALS buckets.
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted ALS solve.
  encode_batch: int = 1024  # Items per jitted call when the block step encodes every item.
  fold_in_chunk: int = 512  # Items per step when folding in users.

  def __post_init__(self):
    check_config(self, "cvae", at_least={"factors": 1, "b": 0.0, "reg_u": 0.0, "reg_v": 0.0,
                                        "reg_r": 0.0, "reg_w": 0.0, "layerwise_epochs": 0,
                                        "pretrain_epochs": 0, "kl_warmup_epochs": 0, "cg_steps": 1,
                                        "max_bytes_per_call": 1, "encode_batch": 1,
                                        "fold_in_chunk": 1},
                 above={"a": 0.0, "gaussian_precision": 0.0, "learning_rate": 0.0,
                        "init_scale": 0.0, "bucket_growth": 1.0},
                 fractions=("layerwise_noise",),
                 choices={"likelihood": ("bernoulli", "gaussian"), "content_scale": CONTENT_SCALES,
                          "solver": als.SOLVERS})


def scale_content(content: sp.spmatrix, how: str) -> sp.csr_matrix:
  """The content rows as the network reads them (float32 csr)."""
  if how == "word_max":
    return content_lib.scale_by_word_max(content)
  if how == "binary":
    return content_lib.binarize(content)
  if how == "none":
    return sp.csr_matrix(content, dtype=np.float32)
  raise ValueError(f"content_scale must be one of {CONTENT_SCALES}, got {how!r}")


def marginal_output_bias(content: sp.csr_matrix, likelihood: str) -> np.ndarray:
  """The bias-only optimum of the output layer: logit of each word's mean (Bernoulli) or the mean.

  The network's output bias starts here instead of at 0: the optimal logits
  of rare words are around −8, which Adam at 1e-3 takes thousands of steps
  to reach from 0 (measured: a zero start had not reached the bias-only
  reconstruction after 5 epochs on citeulike-a).
  """
  mean = np.asarray(content.mean(axis=0), np.float64).ravel()
  if likelihood == "gaussian":
    return mean.astype(np.float32)
  p = np.clip(mean, 1e-6, 1 - 1e-6)
  return (np.log(p) - np.log1p(-p)).astype(np.float32)


def with_output_bias(params, name: str, content: sp.csr_matrix, likelihood: str):
  """`params` with the top-level bias `name` set to `marginal_output_bias`."""
  inner = dict(params["params"])
  inner[name] = jnp.asarray(marginal_output_bias(content, likelihood))
  return {**params, "params": inner}


def item_vectors(factors) -> jax.Array:
  """v†_j + μ_j for every item: v†_j = v_j − μ_j if item j has a training click, else 0."""
  v, mu = factors["V"], factors["mu"]
  v_dagger = jnp.where(factors["rated"][:, None], v - mu, jnp.zeros_like(v))
  return v_dagger + mu


def network(config: Config, params) -> cvae_nn.TiedVAE:
  """The tied-weight VAE that `params` parameterize."""
  return cvae_nn.TiedVAE.for_params(params, config.hidden, config.factors)


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
  eps = jax.random.normal(key, (v.shape[0], config.factors), v.dtype)
  f, mu, logvar = network(config, params).apply(params, x, eps)
  nll = -cvae_nn.content_log_likelihood(config.likelihood, f, x, config.gaussian_precision)
  kl = cvae_nn.gaussian_kl(mu, logvar)
  prior = 0.5 * config.reg_v * (jnp.sum(jnp.square(v - mu), axis=-1)
                                + jnp.sum(jnp.exp(logvar), axis=-1))
  w = config.reg_r if content_weight is None else content_weight
  return w * nll, w * kl, prior


def make(config: Config) -> Model:
  if config.likelihood not in ("bernoulli", "gaussian"):
    raise ValueError(f"cvae: likelihood must be 'bernoulli' or 'gaussian', got {config.likelihood!r}")
  if config.content_scale not in CONTENT_SCALES:
    raise ValueError(f"cvae: content_scale must be one of {CONTENT_SCALES}, "
                     f"got {config.content_scale!r}")
  if config.solver not in als.SOLVERS:
    raise ValueError(f"cvae: solver must be one of {als.SOLVERS}, got {config.solver!r}")
  if config.pretrain_epochs < 0 or config.layerwise_epochs < 0:
    raise ValueError(f"cvae: pretrain_epochs and layerwise_epochs must be >= 0, got "
                     f"{config.pretrain_epochs} and {config.layerwise_epochs}")
  k = config.factors
  encode_mean = jax.jit(lambda params, x: encode(config, params, x)[0])

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix):
    n_words = item_content.shape[1]
    k_net, k_fac = jax.random.split(key)
    module = cvae_nn.TiedVAE(n_inputs=n_words, hidden=tuple(config.hidden), latent=k)
    params = module.init(k_net, jnp.zeros((1, n_words)), jnp.zeros((1, k)))
    params = with_output_bias(params, "dec_bias_0", scale_content(item_content, config.content_scale),
                              config.likelihood)
    factors = als.init_factors(k_fac, train.shape, k, config.init_scale)
    factors["mu"] = jnp.zeros((train.shape[1], k), jnp.float32)
    factors["rated"] = jnp.asarray(np.diff(sp.csc_matrix(train).indptr) > 0)
    return params, factors

  def prepare(train: sp.csr_matrix, item_content: sp.spmatrix):
    if item_content.shape[0] != train.shape[1]:
      raise ValueError(f"cvae: item_content has {item_content.shape[0]} rows for "
                       f"{train.shape[1]} items")
    x = scale_content(item_content, config.content_scale)
    if config.likelihood == "bernoulli" and x.nnz and (x.data.max() > 1 or x.data.min() < 0):
      raise ValueError("cvae: the Bernoulli likelihood needs content in [0, 1]; use "
                       "content_scale='word_max' or 'binary', or likelihood='gaussian'")
    return {**als.bucketed_sides(train, config.bucket_growth), "content": x,
            "train": sp.csr_matrix(train)}

  def batches(aux, batch_size, epoch, seed):
    x = aux["content"]
    order = batching.shuffled_order(x.shape[0], seed, epoch)
    stage, weight = schedule(config, epoch)
    return batching.n_batches(x.shape[0], batch_size), content_batches(
        x, batch_size, order, weight, stage, kl_weight(config, epoch))

  n_layers = len(config.hidden)

  def loss(params, factors, batch, key):
    m = batch["mask"].astype(jnp.float32)
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    rows = sparse.PaddedRows(batch["words"], batch["values"])
    net = network(config, params)
    k_noise, k_eps = jax.random.split(key)
    zeros = jnp.zeros(m.shape, jnp.float32)

    n_items = factors["V"].shape[0]

    def decay(names=None):  # λ_w/(2N) ||·||² of the named parameters (all if None).
      p = params["params"] if names is None else {n: params["params"][n] for n in names}
      return 0.5 * config.reg_w / n_items * optax.tree_utils.tree_norm(p, squared=True)

    def layer_dae(l):  # Stage l: layer l's tied denoising autoencoder; lower layers fixed.
      def branch():
        h = rows if l == 0 else jax.lax.stop_gradient(
            net.apply(params, rows, l, method=cvae_nn.TiedVAE.features))
        noisy = sdae_nn.masking_noise(k_noise, h, config.layerwise_noise)
        logits = net.apply(params, noisy, l, method=cvae_nn.TiedVAE.layer_reconstruction)
        return (-cvae_nn.bernoulli_log_likelihood(logits, h), zeros, zeros,
                decay(layer_parameters(l)))
      return branch

    def latent_vae():  # Stage n_layers: the latent heads as a VAE of the top features.
      h = jax.lax.stop_gradient(net.apply(params, rows, n_layers,
                                          method=cvae_nn.TiedVAE.features))
      eps = jax.random.normal(k_eps, (h.shape[0], k), h.dtype)
      logits, mu, logvar = net.apply(params, h, eps,
                                     method=cvae_nn.TiedVAE.latent_reconstruction)
      return (-cvae_nn.bernoulli_log_likelihood(logits, h), cvae_nn.gaussian_kl(mu, logvar),
              zeros, decay(LATENT_PARAMETERS))

    def whole():  # Stage n_layers + 1: the whole network (pretraining, then the MAP terms).
      # λ_r weighs the content against the rating coupling, so it applies only once the
      # coupling does (prior weight > 0); the whole-VAE pretraining runs at weight 1.
      content_weight = jnp.where(batch["prior_weight"][0] > 0, config.reg_r, 1.0)
      return (*item_terms(config, params, rows, v, k_eps, content_weight), decay())

    branches = [layer_dae(l) for l in range(n_layers)] + [latent_vae, whole]
    nll, kl, prior, weights = jax.lax.switch(
        batch["stage"][0], [lambda _, f=f: f() for f in branches], None)
    per_item = nll + batch["kl_weight"] * kl + batch["prior_weight"] * prior
    count = jnp.maximum(jnp.sum(m), 1.0)
    mean = lambda t: jnp.sum(t * m) / count
    return mean(per_item) + weights, {"neg_log_lik": mean(nll), "kl": mean(kl),
                                    "prior": mean(prior),
                                    "stage": mean(batch["stage"].astype(jnp.float32))}

  def block_step(params, factors, aux, key):
    del key
    mu = encode_items(encode_mean, params, aux["content"], config.encode_batch)
    kw = dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call)
    u = als.half_sweep(factors["U"], factors["V"], aux["users"], reg=config.reg_u, **kw)
    v = als.half_sweep(factors["V"], u, aux["items"], reg=config.reg_v, prior=mu, **kw)
    return {"U": u, "V": v, "mu": mu, "rated": factors["rated"]}

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

  return Model(name="cvae", config=config, init=init, score=score, score_padded=score_padded,
               serving_factors=serving_factors, prepare=prepare,
               block_step=block_step, loss=loss, optimizer=optax.adam(config.learning_rate),
               train_defaults={"epochs": 100}, side_keys=("item_content",), batches=batches,
               item_vectors=model_item_vectors,
               item_vectors_doc="CVAE item factors: v_j if clicked in training, else the encoder mean μ_j")


LATENT_PARAMETERS = ("mu", "logvar", "latent_in")


def layer_parameters(l: int) -> tuple[str, ...]:
  """The parameters layer l's denoising autoencoder trains (and decays): W_l, c_l, d_l."""
  return (f"kernel_{l}", f"enc_bias_{l}", f"dec_bias_{l}")


def schedule(config: Config, epoch: int) -> tuple[int, float]:
  """(stage, prior weight) of runner epoch `epoch` (1-based).

  Stages: l < len(hidden) is layer l's denoising autoencoder and len(hidden)
  the latent VAE (each `layerwise_epochs` epochs, in that order), then
  len(hidden) + 1, the whole network: `pretrain_epochs` epochs without the
  λ_v term (prior weight 0), then the MAP training (prior weight 1).
  """
  n_stages = len(config.hidden) + 1 if config.layerwise_epochs > 0 else 0
  layerwise = n_stages * config.layerwise_epochs
  if epoch <= layerwise:
    return (epoch - 1) // config.layerwise_epochs, 0.0
  return len(config.hidden) + 1, 0.0 if epoch <= layerwise + config.pretrain_epochs else 1.0


def kl_weight(config: Config, epoch: int) -> float:
  """The weight of the KL term in runner epoch `epoch` (1-based).

  1 (the objective) except in the VAE pretraining stages (the latent VAE and
  the whole-network pretraining) when ``kl_warmup_epochs`` > 0: there it is
  (epochs already spent in the stage) / kl_warmup_epochs, capped at 1.  The MAP
  stage always has weight 1.
  """
  if config.kl_warmup_epochs <= 0:
    return 1.0
  n_layers = len(config.hidden)
  stage, prior = schedule(config, epoch)
  if stage < n_layers or prior > 0:
    return 1.0
  layerwise = (n_layers + 1) * config.layerwise_epochs if config.layerwise_epochs > 0 else 0
  start = layerwise - config.layerwise_epochs if stage == n_layers else layerwise
  return min(1.0, (epoch - 1 - start) / config.kl_warmup_epochs)


def content_batches(content: sp.csr_matrix, batch_size: int, order=None,
                    prior_weight: float = 1.0, stage: int | None = None,
                    kl_weight: float = 1.0):
  """The content rows as the loss reads them: padded word lists of one shape for the whole run.

  Yields dicts with "words" int32 [B, L] and "values" float32 [B, L] (L the
  longest row of `content`, padding value 0), "index" int32 [B] item ids (-1
  on padding rows), "mask" bool [B], "prior_weight" float32 [B] (weight of
  the λ_v term) and "stage" int32 [B] (see `schedule`; None: the whole
  network: a large index, which `lax.switch` clamps to the last branch).
  """
  for rb in batching.padded_row_batches(content, batch_size, order=order):
    n = len(rb.mask)
    yield {"words": rb.items, "values": rb.values, "index": rb.index.astype(np.int32),
           "mask": rb.mask, "prior_weight": np.full(n, prior_weight, np.float32),
           "stage": np.full(n, 10_000 if stage is None else stage, np.int32),
           "kl_weight": np.full(n, kl_weight, np.float32)}


def encode_items(encode_fn, params, content: sp.csr_matrix, batch_size: int) -> jax.Array:
  """encode_fn(params, padded rows) for every content row, batch by batch: [n_items, K]."""
  out = [np.asarray(encode_fn(params, sparse.PaddedRows(b["words"], b["values"])))[b["mask"]]
         for b in content_batches(content, batch_size)]
  return jnp.asarray(np.concatenate(out))


@functools.lru_cache(maxsize=8)
def _objective_fns(config: Config):
  """Jitted (encode, item_terms) for `map_objective`, compiled once per config."""
  return (jax.jit(lambda p, r: encode(config, p, r)),
          jax.jit(lambda p, r, v, kk: item_terms(config, p, r, v, kk)))


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
  stats, terms = _objective_fns(config)
  mus, variances = [], []
  for batch in content_batches(x, config.encode_batch):
    mu, logvar = stats(params, sparse.PaddedRows(batch["words"], batch["values"]))
    mus.append(np.asarray(mu, np.float64)[batch["mask"]])
    variances.append(np.exp(np.asarray(logvar, np.float64))[batch["mask"]])
  mu = np.concatenate(mus)
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=mu)
  prior_variance = 0.5 * config.reg_v * float(np.sum(np.concatenate(variances)))
  content = 0.0
  v_all = jnp.asarray(factors["V"])
  for s in range(n_samples):
    ks = jax.random.fold_in(key, s)
    for b, batch in enumerate(content_batches(x, config.encode_batch)):
      rows = sparse.PaddedRows(batch["words"], batch["values"])
      nll, kl, _ = terms(params, rows, v_all[np.maximum(batch["index"], 0)],
                         jax.random.fold_in(ks, b))
      content += float(np.sum((np.asarray(nll, np.float64)
                               + np.asarray(kl, np.float64))[batch["mask"]]))
  content /= n_samples
  weights = 0.5 * config.reg_w * float(optax.tree_utils.tree_norm(params, squared=True))
  total = ratings + prior_variance + content + weights
  return {"total": total, "ratings": ratings, "prior_variance": prior_variance,
          "content": content, "weights": weights}
