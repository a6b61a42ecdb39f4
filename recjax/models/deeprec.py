"""DeepRec (Kuchaiev & Ginsburg 2017, "Training Deep AutoEncoders for Collaborative Filtering").

A deep autoencoder over user rating rows (data protocol ``"ratings"``): SELU
layers, e.g. encoder [n, 512, 512, 1024] and the mirrored decoder
[1024, 512, 512, n], dropout 0.8 (drop probability) on the 1024-unit code,
trained on the masked MSE of the observed ratings,

    MMSE = sum_i m_i (r_i - y_i)^2 / sum_i m_i,

plus *dense re-feeding*: the first pass's dense output ``y = f(x)`` is fed back
as a new, fully observed example, and ``f(y)`` is fitted to ``y`` on every entry
(``refeed_steps`` times, each on the previous pass's output, which is a constant:
no gradient flows into it).  Every pass is in training mode (dropout on).

Deviation: the paper takes a separate optimizer step after each pass; the
runner takes one step per batch, so here the re-feeding losses are added to the
first pass's and one step follows their summed gradients (the re-fed input
comes from the pre-step weights).

Scoring feeds a user's training ratings through the network without dropout;
the rating evaluator clips predictions to the rating range.  ``default_rating``
(off by default, the paper has none) predicts a fixed rating for users or
items without training ratings, as AutoRec does.

``l2`` adds λ Σ‖W‖² over the kernels to the loss (0 by default).  It replaces
the former ``weight_decay``, which added ``0.5 · weight_decay · Σ‖W‖²`` (the
gradient of PyTorch's coupled weight decay): ``l2 = weight_decay / 2`` is the
same loss.

Run with `experiments/configs/deeprec_ml100k.py`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.nn import rating_autoencoders as rae


@dataclasses.dataclass(frozen=True)
class Config:
  hidden: tuple[int, ...] = (512, 512, 1024)  # Encoder sizes, the last the code; decoder mirrored.
  activation: str = "selu"  # Hidden activation (the paper's best: SELU).
  output_activation: str = "selu"  # Last layer (paper code: SELU); "identity": linear.
  dropout: float = 0.8  # Drop probability on the code layer (the paper: 0.8).
  tied: bool = False  # Decoder kernels = transposed encoder kernels (the paper's "constrained").
  refeed_steps: int = 1  # Dense re-feeding iterations per batch (the paper: 1; 0 turns it off).
  l2: float = 0.0  # λ in λ Σ‖W‖² over the kernels (biases not), added to each batch's loss; the paper code's weight_decay wd (PyTorch, coupled) is l2 = wd / 2.
  optimizer: str = "momentum"  # "momentum" (SGD with momentum, the paper's) or "adam".
  learning_rate: float = 0.005  # The paper's Netflix runs: 0.005.
  momentum: float = 0.9  # For "momentum".
  default_rating: float | None = None  # If set, the prediction for unseen users and items.

  def __post_init__(self):
    check_config(self, "deeprec", at_least={"refeed_steps": 0, "l2": 0.0},
                 above={"learning_rate": 0.0}, fractions=("dropout", "momentum"),
                 nonempty=("hidden",),
                 choices={"activation": tuple(rae.ACTIVATIONS),
                          "output_activation": tuple(rae.ACTIVATIONS),
                          "optimizer": ("momentum", "adam")})


def _optimizer(name: str, learning_rate: float, momentum: float) -> optax.GradientTransformation:
  if name == "momentum":
    return optax.sgd(learning_rate, momentum=momentum)
  if name == "adam":
    return optax.adam(learning_rate)
  raise ValueError(f"deeprec: optimizer must be 'momentum' or 'adam', got {name!r}")


def make(config: Config) -> Model:
  hidden = tuple(int(h) for h in config.hidden)
  rae.activation(config.activation)
  rae.activation(config.output_activation)
  optimizer = _optimizer(config.optimizer, config.learning_rate, config.momentum)

  def network(n: int) -> rae.DeepAutoencoder:
    return rae.DeepAutoencoder(n_out=n, hidden=hidden, activation=config.activation,
                               output_activation=config.output_activation,
                               dropout=config.dropout, tied=config.tied)

  def init(key, train: sp.csr_matrix):
    n = train.shape[1]
    params = network(n).init(key, jnp.zeros((1, n), jnp.float32))
    counts = np.bincount(sp.csr_matrix(train).indices, minlength=n)
    return params, {"known_columns": jnp.asarray(counts > 0)}

  def loss(params, factors, batch, key, phase):
    del factors, phase
    x = batch["rows"]
    net = network(x.shape[-1])
    observed = x != 0
    # Padding rows and rows without ratings take no part (the paper's loader has no such rows).
    rows = jnp.logical_and(batch["mask"], jnp.any(observed, axis=-1)).astype(jnp.float32)

    def forward(inputs, pass_index):
      return net.apply(params, inputs, deterministic=False,
                       rngs={"dropout": jax.random.fold_in(key, pass_index)})

    out = forward(x, 0)
    sse = rae.masked_squared_error(out, x, observed) * rows
    n_observed = jnp.maximum(jnp.sum(observed.astype(jnp.float32) * rows[:, None]), 1.0)
    mmse = jnp.sum(sse) / n_observed
    total = mmse
    aux = {"mmse": mmse}
    n_dense = jnp.maximum(jnp.sum(rows), 1.0) * x.shape[-1]
    for t in range(config.refeed_steps):
      refed = jax.lax.stop_gradient(out)
      out = forward(refed, t + 1)
      dense = rae.masked_squared_error(out, refed, jnp.ones_like(observed)) * rows
      refeed_mse = jnp.sum(dense) / n_dense
      total = total + refeed_mse
      aux[f"refeed_mse_{t + 1}"] = refeed_mse
    if config.l2:
      total = total + config.l2 * rae.kernel_sq_norm(params)
    return total, aux

  def score(params, factors, inputs):
    out = network(inputs.shape[-1]).apply(params, inputs)
    if config.default_rating is None:
      return out
    return rae.with_default_rating(out, inputs, factors["known_columns"], config.default_rating)

  def item_vectors(params, factors):
    """Columns of the last decoder kernel [hidden[0], n] as rows [n, hidden[0]] (bias left out)."""
    del factors
    p = params["params"]
    if config.tied:  # The last decoder kernel is the first encoder kernel, transposed.
      return p["encoder_0_kernel"]
    return p[f"decoder_{len(hidden) - 1}_kernel"].T

  return Model(name="deeprec", config=config, init=init, score=score, loss=loss,
               optimizer=optimizer, train_defaults={"epochs": 100},
               item_vectors=item_vectors,
               item_vectors_doc="DeepRec last decoder layer's weights W[:, j] (bias excluded)")
