"""Content regressors: an MLP from an item's bag of words to a latent vector.

The first layer reads sparse rows in either of two forms with the same kernel:
padded (word id, value) lists (`recjax.nn.sparse.PaddedRows`, for training
batches) or the COO triples of a whole catalog (`ContentMLP.from_coo`, for
scoring every item at once without a [items, words] or [items, L, hidden]
temporary: the nonzeros are summed into the hidden layer in chunks).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.nn.sparse import PaddedRows

ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}


class ContentMLP(nn.Module):
  """Bag of words -> hidden layers -> a linear output of `features` units.

  Attributes:
    n_in: vocabulary size (input width).
    hidden: widths of the hidden layers (at least one).
    features: output width (the latent dimension K).
    activation: "relu", "sigmoid" or "tanh" after each hidden layer.
  """

  n_in: int
  hidden: Sequence[int]
  features: int
  activation: str = "relu"

  def setup(self):
    if not self.hidden:
      raise ValueError("ContentMLP needs at least one hidden layer")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"ContentMLP: activation must be one of {sorted(ACTIVATIONS)}, "
                       f"got {self.activation!r}")
    self.input_kernel = self.param("input_kernel", nn.initializers.xavier_uniform(),
                                   (self.n_in, self.hidden[0]), jnp.float32)
    self.input_bias = self.param("input_bias", nn.initializers.zeros_init(), (self.hidden[0],),
                                 jnp.float32)
    self.layers = [nn.Dense(w) for w in self.hidden[1:]] + [nn.Dense(self.features)]

  def _rest(self, pre: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    h = act(pre + self.input_bias[None, :])
    for layer in self.layers[:-1]:
      h = act(layer(h))
    return self.layers[-1](h)

  def __call__(self, rows: PaddedRows | jax.Array) -> jax.Array:
    """Outputs [B, features] for padded rows (values 0 on padding) or dense rows [B, n_in]."""
    if isinstance(rows, PaddedRows):
      gathered = jnp.take(self.input_kernel, rows.items, axis=0, mode="clip")  # [B, L, H]
      pre = jnp.einsum("bl,blh->bh", rows.values, gathered)
    else:
      if rows.shape[-1] != self.n_in:
        raise ValueError(f"ContentMLP: rows have {rows.shape[-1]} columns, expected {self.n_in}")
      pre = rows @ self.input_kernel
    return self._rest(pre)

  def from_coo(self, doc: jax.Array, word: jax.Array, value: jax.Array, n_docs: int,
               chunk: int = 65536) -> jax.Array:
    """Outputs [n_docs, features] for every document of a catalog given as COO triples.

    Args:
      doc, word: int [nnz] document and word of each nonzero; nnz must be a
        multiple of `chunk` (pad with value 0).
      value: [nnz] the nonzeros.
      n_docs: number of documents (static).
      chunk: nonzeros summed into the hidden layer per scan step (static).
    """
    n = doc.shape[0]
    if n % chunk:
      raise ValueError(f"ContentMLP.from_coo: {n} nonzeros is not a multiple of chunk={chunk}")
    parts = (doc.reshape(-1, chunk), word.reshape(-1, chunk), value.reshape(-1, chunk))
    kernel = self.input_kernel  # Read outside the scan (Linen sets up lazily).

    def add(total, part):
      d, w, v = part
      rows = v[:, None] * jnp.take(kernel, w, axis=0)
      return total + jax.ops.segment_sum(rows, d, num_segments=n_docs), None

    pre, _ = jax.lax.scan(add, jnp.zeros((n_docs, self.hidden[0]), jnp.float32), parts)
    return self._rest(pre)
