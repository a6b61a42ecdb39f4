"""AutoRec (Sedhain, Menon, Sanner & Xie, WWW 2015): rating rows through one hidden layer.

The network reconstructs a partially observed rating row ``r``:
``h(r) = f(W g(V r + mu) + b)`` (``hidden = (500,)``: 500 sigmoid units, identity output), trained on

    sum_rows ||r - h(r)||_O^2 + (lambda / 2) (||W||_F^2 + ||V||_F^2)

where ``O`` are the observed entries.  I-AutoRec and U-AutoRec are this one
model on differently oriented data: I-AutoRec's rows are items (data protocol
``"ratings-items"``), U-AutoRec's are users (``"ratings"``); see
`recjax.data.ratings`.  A prediction ``R[u, i]`` is entry ``u`` of ``h(r_i)``
(I-AutoRec) -- the row's training ratings are its input, so scoring is the
fold-in.  Rows or columns without any training rating are predicted with
``default_rating`` (3, as AutoRec's code does for unseen users/items); the rating
evaluator clips predictions to the rating range.

Minibatches: the paper minimizes the full-batch objective (L-BFGS or Rprop).
Here a batch of B rows gives ``(1/B) sum_batch ||r - h(r)||_O^2 + lambda/(2 N)
(||W||^2 + ||V||^2)``, N the number of training rows: an unbiased estimate of
the paper's objective divided by N, so ``l2`` means the paper's lambda at any
batch size.  ``optimizer="rprop"`` with a batch of every row is the paper's
full-batch Rprop.

Run with `experiments/configs/autorec_i_ml100k.py` / `autorec_u_ml100k.py`, or
``--set protocol=ratings-items --set metrics=rmse,mae,neg_rmse --set select_metric=neg_rmse``.
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
  hidden: tuple[int, ...] = (500,)  # (k,): the one hidden layer's units (the paper's best: 500).
  hidden_activation: str = "sigmoid"  # g (the paper: sigmoid).
  output_activation: str = "identity"  # f (the paper: identity).
  l2: float = 1.0  # lambda on (||W||^2 + ||V||^2) / 2, on the scale of the full-batch objective.
  optimizer: str = "adam"  # "adam", "rprop" (the paper's; use a batch of all rows) or "sgd".
  learning_rate: float = 1e-3  # Step size (Rprop: the initial step).
  momentum: float = 0.9  # For "sgd".
  default_rating: float = 3.0  # Prediction where the row or the column has no training rating.

  def __post_init__(self):
    check_config(self, "autorec", at_least={"l2": 0.0}, above={"learning_rate": 0.0},
                 fractions=("momentum",),
                 choices={"hidden_activation": tuple(rae.ACTIVATIONS),
                          "output_activation": tuple(rae.ACTIVATIONS),
                          "optimizer": ("adam", "rprop", "sgd")})
    if len(self.hidden) != 1:
      raise ValueError(f"autorec: hidden must hold exactly one width (AutoRec has one hidden "
                       f"layer), got {self.hidden!r}")


def _optimizer(name: str, learning_rate: float, momentum: float) -> optax.GradientTransformation:
  if name == "adam":
    return optax.adam(learning_rate)
  if name == "rprop":
    return optax.rprop(learning_rate)
  if name == "sgd":
    return optax.sgd(learning_rate, momentum=momentum or None)
  raise ValueError(f"autorec: optimizer must be 'adam', 'rprop' or 'sgd', got {name!r}")


def make(config: Config) -> Model:
  rae.activation(config.hidden_activation)
  rae.activation(config.output_activation)
  optimizer = _optimizer(config.optimizer, config.learning_rate, config.momentum)

  def network(n: int) -> rae.AutoRec:
    return rae.AutoRec(n_out=n, hidden=config.hidden[0],
                       hidden_activation=config.hidden_activation,
                       output_activation=config.output_activation)

  def init(key, train: sp.csr_matrix):
    n_rows, n = train.shape
    params = network(n).init(key, jnp.zeros((1, n), jnp.float32))
    counts = np.bincount(sp.csr_matrix(train).indices, minlength=n)
    factors = {"known_columns": jnp.asarray(counts > 0),
               "n_rows": jnp.asarray(max(n_rows, 1), jnp.float32)}
    return params, factors

  def loss(params, factors, batch, key, phase):
    del key, phase
    x = batch["rows"]
    real = batch["mask"].astype(jnp.float32)
    out = network(x.shape[-1]).apply(params, x)
    sse = rae.masked_squared_error(out, x, x != 0) * real
    n_batch = jnp.maximum(jnp.sum(real), 1.0)
    n_observed = jnp.maximum(jnp.sum((x != 0).astype(jnp.float32)), 1.0)
    reg = 0.5 * config.l2 * rae.kernel_sq_norm(params) / factors["n_rows"]
    objective = jnp.sum(sse) / n_batch + reg
    return objective, {"mse": jnp.sum(sse) / n_observed, "reg": reg}

  def score(params, factors, inputs):
    out = network(inputs.shape[-1]).apply(params, inputs)
    return rae.with_default_rating(out, inputs, factors["known_columns"], config.default_rating)

  # One vector per training-matrix column: items under "ratings" (U-AutoRec), but users under
  # "ratings-items" (I-AutoRec), whose item code g(V r_i + mu) needs the item's rating row,
  # which is not in the params; the model cannot tell the orientation apart.
  def item_vectors(params, factors):
    """Columns of the decoder kernel W [k, n] as rows [n, k] (bias left out)."""
    del factors
    return params["params"]["decoder"]["kernel"].T

  return Model(name="autorec", config=config, init=init, score=score, loss=loss,
               optimizer=optimizer, train_defaults={"epochs": 200},
               item_vectors=item_vectors, item_vectors_doc=(
                   "AutoRec decoder weights W[:, j] per column, bias excluded (U-AutoRec: "
                   "items; I-AutoRec, 'ratings-items': the columns are users)"))
