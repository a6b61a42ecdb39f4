"""SVAE: sequential variational autoencoder (Sachdeva, Manco, Ritacco & Pudi, WSDM 2019).

A user's items in time order x_1..x_T go through an item embedding and a GRU;
at every step t the GRU state h_t (after reading x_1..x_t) gives
q(z_t | x_{1:t}) = N(μ_t, diag σ²_t) through an MLP, and the decoder's
softmax π(z_t) over all items models what the user consumes next
(`recjax.nn.svae.SVAENet`; sizes E = 256, GRU 200, 150, K = 64 by default).

Data: the protocol "strong-temporal-ordered" (`recjax.data.temporal`), whose
training and fold-in rows hold each item's 1-based time rank; the model's batch
source, `recjax.data.batching.TimeRankedSequences`, states and decodes that
encoding.  ``prepare`` turns the training rows into sequences, keeping each
user's LAST ``max_length`` events (default 200, as a cap on the unrolled length;
earlier events are dropped, not windowed) and dropping users with fewer than 2
events (nothing to predict).  The source yields padded [B, L] item ids with
lengths, L a power of two (>= 8) of the batch's longest sequence capped at
``max_length``, rows of similar length batched together when
``group_by_length`` (random otherwise).

Loss per user (a "valid step" is a step t < T that has a next item):

  (1 / #valid steps) Σ_valid t [ -Σ_{j = t+1}^{min(t + next_k, T)} log π(z_t)[x_j]
                                 + β · KL(q(z_t) ‖ N(0, I)) ]

i.e. the multinomial log-likelihood of the multi-hot of the next ``next_k``
items (default 1: next-item prediction; the authors' code offers next_k = 4),
one reparameterized z_t per step, the KL in closed form, both averaged over
the user's valid steps; the batch loss is the mean over its users.  β is
annealed linearly to ``anneal_cap`` over ``total_anneal_steps`` updates (the
loss reads the updates made so far from ``phase["step"]``; by default
total_anneal_steps is derived from the run's length) by Mult-VAE's schedule
(`recjax.nn.likelihoods.anneal_beta`, the authors' code uses the same).  (The authors' code, one user per batch, sums the
log-likelihood over the steps and divides by next_k while averaging the KL
over the steps; averaging both per step, as here, makes β comparable across
sequence lengths.)  Adam with ``coupled_l2`` · θ added to the gradient as
PyTorch's Adam does with its ``weight_decay`` (coupled L2 on every parameter;
0.01 by default, the value the survey reports; the authors' code has 5e-3).

``score`` folds in a user from the dense fold-in row, which carries the same
time ranks (`fold_in_sequences`): the items with a nonzero value, ordered by
value, the last ``max_length`` of them, run through the GRU; the scores are the
decoder's logits of the LAST real step with z = μ.  It never sees the row as a
set, only as a sequence, so a fold-in row that is binary (protocol
"strong-temporal") has no order; ``prepare`` refuses such training rows.
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
from recjax.nn import likelihoods
from recjax.nn.svae import SVAENet


@dataclasses.dataclass(frozen=True)
class Config:
  embed_dim: int = 256  # Item embedding width E.
  rnn_dim: int = 200  # GRU state width H.
  hidden_dim: int = 150  # Hidden width of the encoder (H → hidden → 2K) and decoder (K → hidden → I).
  latent_dim: int = 64  # K.
  next_k: int = 1  # Step t is trained to predict the next next_k items (multi-hot); 1 = next item.
  max_length: int = 200  # Sequences keep their last max_length events (training and fold-in).
  learning_rate: float = 1e-3  # Adam's step size (PyTorch's default, which the authors use).
  coupled_l2: float = 0.01  # λ·θ added to the gradient before Adam (PyTorch Adam's weight_decay), all parameters (survey: 0.01; authors' code: 5e-3); 0 disables.
  # β = min(anneal_cap, step / total_anneal_steps) (0: β = cap).  None (default): derived from the
  # run's length (`base.derived_anneal_steps`: β reaches the cap at 85.5% of the updates, the
  # proportion of Mult-VAE's ML-20M run); the fixed 200,000 left β ≈ 0 on any small dataset.
  total_anneal_steps: int | None = None
  anneal_cap: float = 0.2  # Largest β.
  group_by_length: bool = True  # Batch sequences of similar length (less padding); False: uniformly random batches.

  def __post_init__(self):
    check_config(self, "svae", at_least={"embed_dim": 1, "rnn_dim": 1, "hidden_dim": 1,
                                        "latent_dim": 1, "next_k": 1, "max_length": 2,
                                        "coupled_l2": 0.0, "total_anneal_steps": 0,
                                        "anneal_cap": 0.0},
                 above={"learning_rate": 0.0})


def _next_targets(items: jax.Array, lengths: jax.Array, next_k: int
                  ) -> tuple[jax.Array, jax.Array]:
  """targets [B, T, k] = items at t+1..t+k and their validity (inside the sequence)."""
  b, t = items.shape
  ext = jnp.concatenate([items, jnp.zeros((b, next_k), items.dtype)], axis=1)
  targets = jnp.stack([ext[:, 1 + k:1 + k + t] for k in range(next_k)], axis=-1)
  pos = jnp.arange(t)[None, :, None] + 1 + jnp.arange(next_k)[None, None, :]
  valid = pos < lengths[:, None, None]
  return targets, valid


def per_user_terms(net: SVAENet, params, items: jax.Array, lengths: jax.Array, next_k: int,
                   key: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-user (NLL, KL) averaged over valid steps, and the number of valid steps.

  Args:
    net: the network.
    params: its variables.
    items: [B, T] int32 left-aligned item ids.
    lengths: [B] int32 real lengths (0 for padding rows).
    next_k: targets per step.
    key: reparameterization key; None uses z = μ.

  Returns:
    (nll [B], kl [B], steps [B]); rows without a valid step give 0, 0, 0.
  """
  t = items.shape[1]
  mask = jnp.arange(t)[None, :] < lengths[:, None]
  logits, mu, logvar = net.apply(params, items, mask, key)
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  targets, valid = _next_targets(items, lengths, next_k)
  ll = jnp.take_along_axis(log_pi, targets, axis=2)  # [B, T, k]
  nll_t = -jnp.sum(jnp.where(valid, ll, 0.0), axis=-1)
  step = valid[..., 0]  # Step t is valid iff it has a next item.
  kl_t = likelihoods.gaussian_kl(mu, logvar)  # [B, T]
  steps = jnp.sum(step.astype(jnp.float32), axis=1)
  denom = jnp.maximum(steps, 1.0)
  nll = jnp.sum(jnp.where(step, nll_t, 0.0), axis=1) / denom
  kl = jnp.sum(jnp.where(step, kl_t, 0.0), axis=1) / denom
  return nll, kl, steps


def fold_in_sequences(rows: jax.Array, max_length: int) -> tuple[jax.Array, jax.Array]:
  """Right-aligned sequences of the last max_length nonzero entries of rows, by value.

  Args:
    rows: [B, I] values > 0 on fold-in items, their time ranks (the encoding
      of `batching.TimeRankedSequences`), 0 elsewhere.
    max_length: L (capped at I).

  Returns:
    (items [B, L] int32, mask [B, L] bool): oldest to newest, the newest at the last column;
    padding (mask False) on the left.
  """
  length = min(max_length, rows.shape[-1])
  values, idx = jax.lax.top_k(rows, length)  # Newest first.
  return idx[:, ::-1].astype(jnp.int32), values[:, ::-1] > 0


def make(config: Config) -> Model:
  """SVAE (see the module docstring)."""
  source = batching.TimeRankedSequences(max_length=config.max_length,
                                        group_by_length=config.group_by_length)

  def network(n_items: int) -> SVAENet:
    return SVAENet(n_items=n_items, embed_dim=config.embed_dim, rnn_dim=config.rnn_dim,
                   hidden_dim=config.hidden_dim, latent_dim=config.latent_dim)

  def catalog_size(params) -> int:
    return params["params"]["dec_out"]["bias"].shape[0]

  def init(key, train: sp.csr_matrix):
    n_items = train.shape[1]
    net = network(n_items)
    init_fn = jax.jit(lambda k: net.init(k, jnp.zeros((1, 2), jnp.int32),
                                         jnp.ones((1, 2), bool)))
    return init_fn(key), {}

  def prepare(train: sp.csr_matrix):
    try:
      return source.sequences(train)
    except ValueError as e:  # Binary rows, or no row with 2 items.
      raise ValueError(f"svae: {e}") from None

  def loss(params, factors, batch, key, phase):
    del factors
    net = network(catalog_size(params))
    nll, kl, steps = per_user_terms(net, params, batch["items"], batch["lengths"],
                                    config.next_k, key)
    w = (batch["mask"] & (steps > 0)).astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    neg_ll = jnp.sum(w * nll) / n
    kl = jnp.sum(w * kl) / n
    if config.total_anneal_steps is None:
      raise ValueError("svae: total_anneal_steps=None is derived from the run's length by the "
                       "runner (Model.with_run_length); set it to train outside the runner")
    beta = likelihoods.anneal_beta(phase["step"], config.total_anneal_steps, config.anneal_cap)
    return neg_ll + beta * kl, {"neg_ll": neg_ll, "kl": kl, "beta": beta}

  def score(params, factors, inputs):
    del factors
    net = network(inputs.shape[-1])
    items, mask = fold_in_sequences(inputs, config.max_length)
    hs = net.apply(params, items, mask, method=SVAENet.states)
    mu, _ = net.apply(params, hs[:, -1], method=SVAENet.latent)
    return net.apply(params, mu, method=SVAENet.decode)

  def item_vectors(params, factors):
    """Columns of the decoder's output kernel [hidden, I] as rows [I, hidden] (bias left out)."""
    del factors
    return params["params"]["dec_out"]["kernel"].T

  optimizer = optax.adam(config.learning_rate)
  if config.coupled_l2 > 0:  # PyTorch Adam's weight_decay: λ·θ added to the gradient.
    optimizer = optax.chain(optax.add_decayed_weights(config.coupled_l2), optimizer)

  def with_run_length(train, batch_size: int, epochs: int) -> Model:
    """total_anneal_steps=None -> derived from the run's updates (a batch of users with >= 2 items)."""
    if config.total_anneal_steps is not None:
      return model
    users = int(np.count_nonzero(np.diff(sp.csr_matrix(train).indptr) >= source.min_length))
    n_updates = epochs * batching.n_batches(users, batch_size)
    return make(dataclasses.replace(
        config, total_anneal_steps=base.derived_anneal_steps(n_updates, config.anneal_cap)))

  def schedule_report(n_updates: int, final: bool = True):
    if config.total_anneal_steps is None:
      return None
    return base.beta_report("svae", n_updates, config.total_anneal_steps, config.anneal_cap, final)

  model = Model(name="svae", config=config, init=init, score=score, prepare=prepare,
                loss=loss, optimizer=optimizer, batch_source=source,
                train_defaults={"epochs": 20}, item_vectors=item_vectors,
                item_vectors_doc="SVAE decoder output weights W[:, j] (bias excluded)",
                with_run_length=with_run_length, schedule_report=schedule_report)
  return model
