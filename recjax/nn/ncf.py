"""Neural collaborative filtering towers (He et al. 2017): GMF, MLP and NeuMF.

One Linen module covers the three models.  For a user u and item i:

* GMF:   φ_G = p_u ⊙ q_i  (``dim`` dims);
* MLP:   φ_M = relu(W_L ... relu(W_1 [p'_u; q'_i] + b_1) ... + b_L), the layer
  widths of ``mlp_layers``: entry 0 is the width of the concatenated
  embedding (each side half of it), the rest the widths of the hidden layers,
  the last being the MLP's predictive factors (the authors' ``--layers
  [64,32,16,8]``);
* logit:  h^T [φ_G; φ_M] + b  (NeuMF), h^T φ_G + b (GMF), h^T φ_M + b (MLP).

Scoring every item of a user evaluates the first MLP layer as
``p'_u W_1u + q'_i W_1i`` (the split of W_1 over the concatenation), so the
[users, items, width] tensor is formed only after the first matmul, and GMF
is one matmul ``(p_u ⊙ h_G) Qᵀ``.

Parameter names (shared by the three kinds, so NeuMF can be initialized from
trained GMF and MLP parameters): ``gmf_user``/``gmf_item`` [n, dim],
``mlp_user``/``mlp_item`` [n, mlp_layers[0] // 2], ``mlp_w1`` [mlp_layers[0],
mlp_layers[1]], ``mlp_b1``, ``mlp_hidden_<k>`` (Dense), ``predict_kernel``
[dims of φ], ``predict_bias`` [].
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KINDS = ("gmf", "mlp", "neumf")


class NCF(nn.Module):
  """GMF / MLP / NeuMF over explicit user and item embedding tables.

  Attributes:
    n_users: rows of the user tables.
    n_items: rows of the item tables.
    kind: "gmf", "mlp" or "neumf".
    dim: GMF embedding size K.
    mlp_layers: concatenated-embedding width, then hidden widths (>= 2 entries).
  """

  n_users: int
  n_items: int
  kind: str = "neumf"
  dim: int = 8
  mlp_layers: Sequence[int] = (64, 32, 16, 8)

  def setup(self):
    if self.kind not in KINDS:
      raise ValueError(f"NCF kind must be one of {KINDS}, got {self.kind!r}")
    emb = nn.initializers.normal(0.01)  # The authors' init_normal.
    width = 0
    if self.kind in ("gmf", "neumf"):
      self.gmf_user = self.param("gmf_user", emb, (self.n_users, self.dim))
      self.gmf_item = self.param("gmf_item", emb, (self.n_items, self.dim))
      width += self.dim
    if self.kind in ("mlp", "neumf"):
      layers = tuple(self.mlp_layers)
      if len(layers) < 2 or layers[0] % 2:
        raise ValueError(f"mlp_layers needs an even first width and >= 2 entries, got {layers}")
      half = layers[0] // 2
      self.mlp_user = self.param("mlp_user", emb, (self.n_users, half))
      self.mlp_item = self.param("mlp_item", emb, (self.n_items, half))
      self.mlp_w1 = self.param("mlp_w1", nn.initializers.glorot_uniform(), (layers[0], layers[1]))
      self.mlp_b1 = self.param("mlp_b1", nn.initializers.zeros, (layers[1],))
      self.mlp_hidden = [nn.Dense(w, kernel_init=nn.initializers.glorot_uniform())
                         for w in layers[2:]]
      width += layers[-1]
    self.predict_kernel = self.param("predict_kernel", nn.initializers.lecun_uniform(),
                                     (width, 1))
    self.predict_bias = self.param("predict_bias", nn.initializers.zeros, (1,))

  def user_vectors(self, users: jax.Array) -> dict[str, jax.Array]:
    """The embeddings of training users: {"gmf": [B, f], "mlp": [B, d]} (those the kind has)."""
    out = {}
    if self.kind in ("gmf", "neumf"):
      out["gmf"] = self.gmf_user[users]
    if self.kind in ("mlp", "neumf"):
      out["mlp"] = self.mlp_user[users]
    return out

  def _mlp_tail(self, z: jax.Array) -> jax.Array:
    z = nn.relu(z)
    for layer in self.mlp_hidden:
      z = nn.relu(layer(z))
    return z

  def score_vectors(self, vectors: dict[str, jax.Array], items: jax.Array | None = None
                    ) -> jax.Array:
    """Logits of users given by their vectors (see `user_vectors`).

    Args:
      vectors: {"gmf": [B, f], "mlp": [B, d]}.
      items: [B, C] int item ids to score, or None for every item.

    Returns:
      [B, C] (or [B, n_items]) logits.
    """
    kernel = self.predict_kernel[:, 0]
    logit = jnp.zeros((), jnp.float32)
    offset = 0
    if self.kind in ("gmf", "neumf"):
      h = kernel[:self.dim]
      pu = vectors["gmf"] * h[None, :]
      if items is None:
        logit = logit + pu @ self.gmf_item.T
      else:
        logit = logit + jnp.einsum("bf,bcf->bc", pu, self.gmf_item[items])
      offset = self.dim
    if self.kind in ("mlp", "neumf"):
      half = self.mlp_layers[0] // 2
      user_part = vectors["mlp"] @ self.mlp_w1[:half] + self.mlp_b1[None, :]
      if items is None:
        item_part = (self.mlp_item @ self.mlp_w1[half:])[None, :, :]
      else:
        item_part = self.mlp_item[items] @ self.mlp_w1[half:]
      phi = self._mlp_tail(user_part[:, None, :] + item_part)
      logit = logit + phi @ kernel[offset:]
    return logit + self.predict_bias[0]

  def __call__(self, users: jax.Array, items: jax.Array | None = None) -> jax.Array:
    """Logits of training users `users` [B] for `items` [B, C] (None: all items)."""
    return self.score_vectors(self.user_vectors(users), items)
