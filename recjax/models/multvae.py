"""Mult-VAE^PR and Mult-DAE (Liang, Krishnan, Hoffman & Jebara, WWW 2018).

Both read a user's whole click row x, L2-normalize it, apply dropout (0.5)
and encode it with an MLP (`recjax.nn.autoencoders`); the decoder's logits
f_θ(z) over all items feed a multinomial likelihood (Eq. 2), or the Gaussian
(Eq. 3) or logistic (Eq. 4) one of Table 4.

* ``mult-vae``: q(z | x) = N(mu, diag σ²); the loss is the negative of Eq. 6,
  -E_q[log p(x | z)] + β · KL(q ‖ N(0, I)), one reparameterized sample per
  user, with β = min(anneal_cap, step / total_anneal_steps), step the optax
  updates made so far (the loss's ``phase["step"]``; vae_cf's schedule; by
  default total_anneal_steps is derived from the run's length so that β
  reaches the cap at 85.5% of it, as in the authors' ML-20M run).  No L2 term
  by default.
* ``mult-dae``: z = g_φ(x) (a point), loss -log p(x | z) + λ Σ‖W‖² over the
  kernels (vae_cf's ``2 · l2_regularizer(λ)``, λ = ``l2`` = 0.01).  Both configs
  take ``l2``: the VAE's default is 0, as in the paper.

Both are trained with Adam (lr 1e-3) on batches of 500 users.  ``score``
folds in unseen users as the paper does (§2.4): the decoder's logits at the
encoder mean (VAE) or output (DAE), without dropout.

For large catalogs, ``sparse_input`` trains on padded item lists (batch source
`recjax.data.batching.PaddedRows`, rows of similar length batched together with
``group_by_length``) through a gather-sum first layer, and
``sampled_softmax = S > 0`` replaces the full softmax normalizer in training
by the user's own items plus S items drawn per step from a uniform or
popularity proposal, with log-Q correction
(`recjax.nn.likelihoods.sampled_multinomial_log_likelihood`); training then
never builds a [B, I] array.  Scoring stays exact and dense.

``partition`` lays the item axis of the encoder's first kernel [I, H], the
decoder's last kernel [H, I] and its bias [I] (and their Adam moments) over the
mesh's ``model`` axis (``TrainConfig.model_shards``); jit splits the matmuls
and the softmax's reductions over the item shards.

``compute_dtype = "bfloat16"`` runs the layers' matmuls on bfloat16 operands
with float32 accumulation (`recjax.nn.autoencoders.mixed_matmul`); the
parameters (Adam's master weights), logits, softmax, log-likelihood and KL
stay float32.  Scoring uses the same layers.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import batching
from recjax.models import base
from recjax.models.base import Model, check_config
from recjax.nn import autoencoders, likelihoods, sparse
from recjax.ops import mesh as mesh_lib

SAMPLERS = ("uniform", "popularity")
# Field rules both configs share (see `check_config`).
_AUTOENCODER_RULES = dict(
    at_least={"latent_dim": 1, "neg_weight": 0.0, "l2": 0.0, "sampled_softmax": 0},
    above={"learning_rate": 0.0, "pos_weight": 0.0}, fractions=("dropout",),
    choices={"likelihood": likelihoods.LIKELIHOODS, "sampler": SAMPLERS,
             "compute_dtype": autoencoders.COMPUTE_DTYPES})


@dataclasses.dataclass(frozen=True)
class _AutoencoderConfig:
  """The fields Mult-VAE and Mult-DAE share."""

  hidden_dims: tuple[int, ...] = (600,)  # Encoder hidden widths (decoder mirrors); () is [I → K → I].
  latent_dim: int = 200  # K.
  dropout: float = 0.5  # Dropout on the L2-normalized input (training only).
  likelihood: str = "multinomial"  # "multinomial", "gaussian" or "logistic" (Table 4).
  pos_weight: float = 1.0  # Gaussian only: confidence c_1 of clicked entries.
  neg_weight: float = 1.0  # Gaussian only: confidence c_0 of the other entries.
  learning_rate: float = 1e-3  # Adam's step size.
  l2: float = 0.0  # λ in λ Σ‖W‖² over the kernels (biases not), added to the loss (the paper: 0 for VAEs).
  sparse_input: bool = False  # Train on padded item lists (no dense [B, I] input batch).
  group_by_length: bool = False  # sparse_input: batch rows of similar length (less padding; batches no longer uniformly random).
  sampled_softmax: int = 0  # S > 0: sampled softmax normalizer with S items per step (needs sparse_input).
  sampler: str = "uniform"  # Proposal for sampled items: "uniform" or "popularity" (training counts).
  compute_dtype: str = "float32"  # "float32", or "bfloat16": bf16 matmul operands, f32 accumulation, params and loss.


@dataclasses.dataclass(frozen=True)
class VAEConfig(_AutoencoderConfig):
  # β = min(anneal_cap, step / total_anneal_steps) (0: β = cap from the start).  None (default):
  # derived from this run's length (the runner's `with_run_length`) so that β reaches anneal_cap
  # at 85.5% of the run's updates, the proportion of the authors' ML-20M run (200,000 with
  # cap 0.2 over 200 epochs x 234 batches = 46,800 updates: the cap at update 40,000); see
  # `base.derived_anneal_steps`.  The resolved number is what config.json records.  The old
  # fixed 200,000 left β < 0.005 for a whole run on a dataset of a few thousand users.
  total_anneal_steps: int | None = None
  anneal_cap: float = 0.2  # Largest β (select it with experiments/beta_select.py).
  eps_std: float = 1.0  # Std of the reparameterization noise ε (the paper: 1; RecBole's MultiVAE uses 0.01).

  def __post_init__(self):
    rules = dict(_AUTOENCODER_RULES)
    rules["at_least"] = {**rules["at_least"], "total_anneal_steps": 0, "anneal_cap": 0.0,
                         "eps_std": 0.0}
    check_config(self, "mult-vae", **rules)


@dataclasses.dataclass(frozen=True)
class DAEConfig(_AutoencoderConfig):
  l2: float = 0.01  # λ in λ Σ‖W‖² over the kernels (biases not), added to the loss (vae_cf's lam).

  def __post_init__(self):
    check_config(self, "mult-dae", **_AUTOENCODER_RULES)


def _kernel_sq_norm(params) -> jax.Array:
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(jnp.square(x)) for path, x in leaves
             if getattr(path[-1], "key", None) == "kernel")


def _validate(name: str, config) -> None:
  """The rules across fields (each field alone is checked by the Config)."""
  if config.sampled_softmax and not config.sparse_input:
    raise ValueError(f"{name}: sampled_softmax needs sparse_input=True (it reads each "
                     "user's item list)")
  if config.group_by_length and not config.sparse_input:
    raise ValueError(f"{name}: group_by_length applies to sparse_input=True (padded item "
                     "lists); dense rows have no length to group by")
  if config.sampled_softmax and config.likelihood != "multinomial":
    raise ValueError(f"{name}: sampled_softmax applies to the multinomial likelihood only, "
                     f"got likelihood={config.likelihood!r}")


def _make(name: str, config, variational: bool) -> Model:
  _validate(name, config)
  sampled = config.sampled_softmax > 0

  def modules(n_items: int):
    encoder = autoencoders.MLPEncoder(
        n_items=n_items, hidden_dims=tuple(config.hidden_dims), latent_dim=config.latent_dim,
        variational=variational, dropout_rate=config.dropout, compute_dtype=config.compute_dtype)
    decoder = autoencoders.MLPDecoder(n_items=n_items,
                                      hidden_dims=tuple(reversed(config.hidden_dims)),
                                      compute_dtype=config.compute_dtype)
    return encoder, decoder

  def init(key, train: sp.csr_matrix):
    n_items = train.shape[1]
    encoder, decoder = modules(n_items)

    @jax.jit  # One compile instead of an eager dispatch per initializer op.
    def init_params(key):
      k_enc, k_dec = jax.random.split(key)
      return {"encoder": encoder.init(k_enc, jnp.zeros((1, n_items), jnp.float32)),
              "decoder": decoder.init(k_dec, jnp.zeros((1, config.latent_dim), jnp.float32))}

    params = init_params(key)
    factors = {}
    if sampled:
      if config.sampler == "popularity":
        counts = np.bincount(sp.csr_matrix(train).indices, minlength=n_items).astype(np.float64)
        q = (counts + 1.0) / (counts + 1.0).sum()  # +1: every item keeps a chance to be drawn.
      else:
        q = np.full(n_items, 1.0 / n_items)
      factors = {"log_q": jnp.asarray(np.log(q), jnp.float32),
                 "cdf": jnp.asarray(np.cumsum(q) / np.sum(q), jnp.float32)}
    return params, factors

  def encode(params, n_items, rows, deterministic, key=None):
    encoder, _ = modules(n_items)
    rngs = None if deterministic else {"dropout": key}
    return encoder.apply(params["encoder"], rows, deterministic=deterministic, rngs=rngs)

  def decode(params, n_items, z, items=None):
    _, decoder = modules(n_items)
    return decoder.apply(params["decoder"], z, items)

  def log_likelihood(params, factors, n_items, rows, z, key):
    """Per-user log p(x | z) for dense rows or padded rows."""
    if sampled:
      n_s = config.sampled_softmax
      neg = jnp.searchsorted(factors["cdf"], jax.random.uniform(key, (n_s,)))
      neg = jnp.minimum(neg, n_items - 1).astype(jnp.int32)
      pos_logits = decode(params, n_items, z, rows.items)
      neg_logits = decode(params, n_items, z, neg)
      log_expected = jnp.log(jnp.float32(n_s)) + factors["log_q"][neg]
      return likelihoods.sampled_multinomial_log_likelihood(
          pos_logits, rows.values, neg_logits, log_expected, sparse.contains(rows, n_items, neg))
    logits = decode(params, n_items, z)
    if isinstance(rows, sparse.PaddedRows):
      if config.likelihood == "multinomial":  # Σ_l v_l log π(items_l): no dense x needed.
        log_pi = jax.nn.log_softmax(logits, axis=-1)
        return jnp.sum(rows.values * jnp.take_along_axis(log_pi, rows.items, axis=1), axis=-1)
      rows = sparse.to_dense(rows, n_items)
    return likelihoods.log_likelihood(
        config.likelihood, logits, rows,
        **({"pos_weight": config.pos_weight, "neg_weight": config.neg_weight}
           if config.likelihood == "gaussian" else {}))

  def catalog_size(params) -> int:
    return params["decoder"]["params"]["output"]["bias"].shape[0]

  def loss(params, factors, batch, key, phase):
    if config.sparse_input:
      rows = sparse.PaddedRows(batch["items"], batch["values"])
      n_items = catalog_size(params)
    else:
      rows = batch["rows"]
      n_items = rows.shape[-1]
    k_drop, k_z, k_neg = jax.random.split(key, 3)
    m = batch["mask"].astype(jnp.float32)
    n = jnp.maximum(jnp.sum(m), 1.0)
    out = encode(params, n_items, rows, deterministic=False, key=k_drop)
    aux = {}
    if variational:
      mu, logvar = out
      z = autoencoders.reparameterize(k_z, mu, logvar, config.eps_std)
      kl = jnp.sum(m * likelihoods.gaussian_kl(mu, logvar)) / n
      if config.total_anneal_steps is None:
        raise ValueError(f"{name}: total_anneal_steps=None is derived from the run's length by "
                         "the runner (Model.with_run_length); set it to train outside the runner")
      beta = likelihoods.anneal_beta(phase["step"], config.total_anneal_steps, config.anneal_cap)
      aux.update(kl=kl, beta=beta)
    else:
      z = out
    neg_ll = -jnp.sum(m * log_likelihood(params, factors, n_items, rows, z, k_neg)) / n
    total = neg_ll
    if variational:
      total = total + aux["beta"] * aux["kl"]
    if config.l2 > 0:
      total = total + config.l2 * _kernel_sq_norm(params)
    aux["neg_ll"] = neg_ll
    return total, aux

  def score(params, factors, inputs):
    del factors
    n_items = inputs.shape[-1]
    out = encode(params, n_items, inputs, deterministic=True)
    z = out[0] if variational else out
    return decode(params, n_items, z)

  def partition(params, factors):
    """The item axis of the first and last layers over ``model``: [I, H], [H, I] and the [I] bias."""
    del factors  # The sampled softmax's [I] proposal stays replicated (searchsorted reads it all).
    return mesh_lib.item_specs(params, rows=[("encoder", "params", "input", "kernel"),
                                             ("decoder", "params", "output", "bias")],
                               cols=[("decoder", "params", "output", "kernel")]), None

  def item_vectors(params, factors):
    """Columns of the decoder's output kernel [H, I] as rows [I, H] (output bias left out)."""
    del factors
    return params["decoder"]["params"]["output"]["kernel"].T

  source = (batching.PaddedRows(group_by_length=config.group_by_length) if config.sparse_input
            else batching.DenseRows())
  with_run_length = schedule_report = None
  if variational:
    def with_run_length(train, batch_size: int, epochs: int) -> Model:
      """total_anneal_steps=None -> derived from this run's updates (one per batch of rows)."""
      if config.total_anneal_steps is not None:
        return model
      n_updates = epochs * -(-train.shape[0] // batch_size)
      return _make(name, dataclasses.replace(
          config, total_anneal_steps=base.derived_anneal_steps(n_updates, config.anneal_cap)),
                   variational)

    def schedule_report(n_updates: int, final: bool = True):
      if config.total_anneal_steps is None:
        return None
      return base.beta_report(name, n_updates, config.total_anneal_steps, config.anneal_cap, final)

  model = Model(name=name, config=config, init=init, score=score, loss=loss,
                optimizer=optax.adam(config.learning_rate), train_defaults={"epochs": 200},
                batch_source=source,
                item_vectors=item_vectors,
                item_vectors_doc=f"{name} decoder output weights W[:, j] (bias excluded)",
                with_run_length=with_run_length, schedule_report=schedule_report,
                partition=partition)
  return model


def make_vae(config: VAEConfig) -> Model:
  """Mult-VAE^PR (or Gaussian-/Logistic-VAE^PR with `config.likelihood`)."""
  return _make("mult-vae", config, variational=True)


def make_dae(config: DAEConfig) -> Model:
  """Mult-DAE (or Gaussian-/Logistic-DAE with `config.likelihood`)."""
  return _make("mult-dae", config, variational=False)
