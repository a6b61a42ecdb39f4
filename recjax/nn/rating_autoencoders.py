"""Flax Linen modules and masked losses for rating autoencoders (AutoRec, DeepRec).

Inputs are dense rating rows [B, n] with 0 for "unobserved"; outputs are dense
rating predictions [B, n].  The losses count only the observed entries.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda x: x,
    "sigmoid": nn.sigmoid,
    "selu": nn.selu,
    "elu": nn.elu,
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "lrelu": nn.leaky_relu,
    "swish": nn.swish,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called `name`; unknown names list the valid ones."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class AutoRec(nn.Module):
  """AutoRec's network (Sedhain et al. 2015, Eq. 1): ``f(W g(V r + mu) + b)``.

  Attributes:
    n_out: columns of a rating row (users for I-AutoRec, items for U-AutoRec).
    hidden: hidden units k (the paper's best: 500).
    hidden_activation: g (the paper's best: sigmoid).
    output_activation: f (the paper's best: identity).
  """

  n_out: int
  hidden: int = 500
  hidden_activation: str = "sigmoid"
  output_activation: str = "identity"

  @nn.compact
  def __call__(self, ratings: jax.Array) -> jax.Array:
    init = nn.initializers.xavier_uniform()
    h = nn.Dense(self.hidden, kernel_init=init, name="encoder")(ratings)
    h = activation(self.hidden_activation)(h)
    out = nn.Dense(self.n_out, kernel_init=init, name="decoder")(h)
    return activation(self.output_activation)(out)


class DeepAutoencoder(nn.Module):
  """DeepRec's network (Kuchaiev & Ginsburg 2017): a deep autoencoder, decoder mirrored.

  Encoder layers ``hidden`` (e.g. (512, 512, 1024)), the last being the code;
  dropout on the code; decoder layers ``hidden[-2::-1]`` then ``n_out``.  Every
  layer applies ``activation`` except the last, which applies
  ``output_activation`` (the paper keeps it linear when the activation's range
  is narrower than the ratings'; SELU's covers them, and the paper's code
  applies it there by default).

  Attributes:
    n_out: columns of a rating row.
    hidden: encoder layer sizes, the last one the code.
    activation: hidden activation (the paper's best: SELU).
    output_activation: activation of the output layer.
    dropout: drop probability on the code layer (the paper: 0.8).
    tied: decoder kernels are the transposed encoder kernels (the paper's
      "constrained" variant); biases stay separate.
  """

  n_out: int
  hidden: Sequence[int] = (512, 512, 1024)
  activation: str = "selu"
  output_activation: str = "selu"
  dropout: float = 0.8
  tied: bool = False

  @nn.compact
  def __call__(self, ratings: jax.Array, *, deterministic: bool = True) -> jax.Array:
    act = activation(self.activation)
    init = nn.initializers.xavier_uniform()
    x = ratings
    kernels = []
    sizes_in = (ratings.shape[-1], *self.hidden[:-1])
    for i, (d_in, d_out) in enumerate(zip(sizes_in, self.hidden)):
      w = self.param(f"encoder_{i}_kernel", init, (d_in, d_out), jnp.float32)
      b = self.param(f"encoder_{i}_bias", nn.initializers.zeros, (d_out,), jnp.float32)
      kernels.append(w)
      x = act(x @ w + b[None, :])
    x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
    sizes_out = (*self.hidden[-2::-1], self.n_out)
    n_layers = len(sizes_out)
    for i, d_out in enumerate(sizes_out):
      d_in = x.shape[-1]
      if self.tied:
        w = kernels[n_layers - 1 - i].T
      else:
        w = self.param(f"decoder_{i}_kernel", init, (d_in, d_out), jnp.float32)
      b = self.param(f"decoder_{i}_bias", nn.initializers.zeros, (d_out,), jnp.float32)
      x = x @ w + b[None, :]
      x = activation(self.output_activation)(x) if i == n_layers - 1 else act(x)
    return x


def masked_squared_error(predictions: jax.Array, targets: jax.Array,
                         observed: jax.Array) -> jax.Array:
  """Per-row sum of squared errors over the observed entries: ``||r - h||_O^2``.

  Args:
    predictions: [B, n].
    targets: [B, n]; entries where `observed` is False are ignored.
    observed: [B, n] bool.

  Returns:
    [B] sums.
  """
  err = jnp.where(observed, predictions - targets, 0.0)
  return jnp.sum(err * err, axis=-1)


def kernel_sq_norm(params) -> jax.Array:
  """Sum of squared entries of every leaf whose name contains "kernel" (weights, not biases)."""
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if "kernel" in jax.tree_util.keystr(path):
      total = total + jnp.sum(jnp.square(leaf))
  return total


def with_default_rating(predictions: jax.Array, inputs: jax.Array, known_columns: jax.Array,
                        default: float) -> jax.Array:
  """Replaces predictions the training data cannot support by a default rating.

  A row with no input ratings (a user/item training never saw) and a column
  with no training ratings get `default` (AutoRec's code predicts 3 for unseen
  users and items).

  Args:
    predictions: [B, n].
    inputs: [B, n] input ratings (0 = unobserved).
    known_columns: [n] bool, columns with at least one training rating.
    default: the rating to predict there.

  Returns:
    [B, n] predictions.
  """
  known_row = jnp.any(inputs != 0, axis=-1, keepdims=True)
  known = jnp.logical_and(known_row, known_columns[None, :])
  return jnp.where(known, predictions, jnp.asarray(default, predictions.dtype))
