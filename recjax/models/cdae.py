"""CDAE (Wu et al., WSDM 2016) as the Mult-VAE paper ran it (Liang et al. 2018, §4.4).

The network is `recjax.nn.cdae.CDAE`: [I → K → I], K = ``hidden[0]`` = 200, a per-user vector
V_u added at the bottleneck, tanh at the bottleneck and at the output (the
Mult-VAE paper's choice; footnote 8).  Training, per the Mult-VAE paper:

* user-level batches (500 users, Adam, lr 1e-3) instead of Wu et al.'s
  (user, item) entry subsampling;
* a weighted square loss (Eq. 3 with confidences c_1 = ``click_weight`` on
  clicks, c_0 = 1 elsewhere), "equivalent to the square loss with negative
  sampling" of the original paper;
* input corruption by dropout with rate q, survivors scaled by 1 / (1 − q)
  (Wu et al.'s unbiased "drop-out" corruption);
* weight decay λ = ``l2`` (selected over {0.01, 0.1, ..., 100} in the paper)
  as an L2 term in the loss.

The loss of a batch of users B is (bias vectors are not penalized)

    1/|B| Σ_{u∈B} [ Σ_i c_ui (x_ui − tanh(W_2ᵀ h_u + b_2)_i)² + λ ‖V_u‖² ] + λ (‖W_1‖² + ‖W_2‖²),

a minibatch estimate of (1/U) Σ_u ℓ_u + λ (‖W‖² + (1/U) Σ_u ‖V_u‖²); V_u is
penalized only when u is in the batch, so users are shrunk at the same rate
whatever the batch order.

Users that training never saw (strong generalization) have no V_u.  `score`
folds them in the way the Mult-VAE paper describes CDAE needing ("additional
optimization to obtain the latent factor for unseen users"): V_u starts at 0
(the prior mean the weight decay pulls every user toward) and takes
``fold_in_steps`` Adam steps on that user's own training objective
Σ_i c_ui (x_ui − f_ui)² + λ‖V_u‖² on the uncorrupted fold-in row, with the
network fixed.  ``fold_in_steps = 0`` scores with the zero vector.  Scores are
the output pre-activations (same order as tanh, no saturation ties).  A query
from `recjax.eval.sampled` (training users, leave-one-out) uses the trained
V_u of rows with index >= 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.nn.cdae import CDAE
from recjax.ops import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class Config:
  hidden: tuple[int, ...] = (200,)  # (K,): the one hidden (bottleneck) layer's width (the Mult-VAE paper: 200).
  dropout: float = 0.5  # Input corruption q: each click dropped with this rate, survivors × 1/(1−q).
  click_weight: float = 5.0  # c_1, the confidence of clicked entries (c_0 = 1).
  l2: float = 0.1  # λ of λ(‖W_1‖² + ‖W_2‖² + the batch's mean ‖V_u‖²), added to the loss (the paper's grid: 0.01 ... 100; 0.1 best on ml-1m).
  learning_rate: float = 1e-3  # Adam's step size.
  fold_in_steps: int = 50  # Adam steps on an unseen user's V_u at scoring time (0: V_u = 0).
  fold_in_lr: float = 0.05  # Their step size.

  def __post_init__(self):
    check_config(self, "cdae", at_least={"l2": 0.0, "fold_in_steps": 0},
                 above={"click_weight": 0.0, "learning_rate": 0.0, "fold_in_lr": 0.0},
                 fractions=("dropout",))
    if len(self.hidden) != 1:
      raise ValueError(f"cdae: hidden must hold exactly one width (CDAE has one hidden layer), "
                       f"got {self.hidden!r}")


def weighted_square_loss(x, out, click_weight: float):
  """Per-user Σ_i c_ui (x_ui − tanh(out_ui))², c = click_weight on x > 0, else 1: [B]."""
  c = jnp.where(x > 0, click_weight, 1.0)
  return jnp.sum(c * (x - jnp.tanh(out)) ** 2, axis=-1)


def make(config: Config) -> Model:
  def net_of(params):
    n_users, hidden = params["params"]["users"].shape
    n_items = params["params"]["decoder"]["bias"].shape[0]
    return CDAE(n_items=n_items, n_users=n_users, hidden=hidden)

  def init(key, train: sp.csr_matrix):
    n_users, n_items = train.shape
    net = CDAE(n_items=n_items, n_users=n_users, hidden=config.hidden[0])
    params = net.init(key, jnp.zeros((1, n_items), jnp.float32), jnp.zeros((1,), jnp.int32))
    return params, {}

  def weight_norm(params):
    p = params["params"]
    return jnp.sum(p["encoder"]["kernel"] ** 2) + jnp.sum(p["decoder"]["kernel"] ** 2)

  def loss(params, factors, batch, key, phase):
    del factors, phase
    net = net_of(params)
    x = (batch["rows"] > 0).astype(jnp.float32)
    mask = batch["mask"].astype(jnp.float32)
    if config.dropout > 0:
      keep = jax.random.bernoulli(key, 1.0 - config.dropout, x.shape)
      x_in = jnp.where(keep, x / (1.0 - config.dropout), 0.0)
    else:
      x_in = x
    v = net.apply(params, jnp.maximum(batch["index"], 0), method=CDAE.user_vectors)
    out = net.apply(params, net.apply(params, x_in, method=CDAE.encode_input), v,
                    method=CDAE.decode)
    per_user = weighted_square_loss(x, out, config.click_weight)
    user_reg = config.l2 * jnp.sum(v ** 2, axis=-1)
    n = jnp.maximum(jnp.sum(mask), 1.0)
    data = jnp.sum(per_user * mask) / n
    total = data + jnp.sum(user_reg * mask) / n + config.l2 * weight_norm(params)
    return total, {"square_loss": data}

  def fold_in(params, x):
    """V_u for rows of unseen users: Adam on each user's objective from V_u = 0."""
    net = net_of(params)
    encoded = net.apply(params, x, method=CDAE.encode_input)
    v0 = jnp.zeros(encoded.shape, encoded.dtype)
    if config.fold_in_steps == 0:
      return v0

    def objective(v):
      out = net.apply(params, encoded, v, method=CDAE.decode)
      return jnp.sum(weighted_square_loss(x, out, config.click_weight)
                     + config.l2 * jnp.sum(v ** 2, axis=-1))

    opt = optax.adam(config.fold_in_lr)

    def step(carry, _):
      v, s = carry
      upd, s = opt.update(jax.grad(objective)(v), s, v)
      return (optax.apply_updates(v, upd), s), None

    (v, _), _ = jax.lax.scan(step, (v0, opt.init(v0)), None, length=config.fold_in_steps)
    return v

  def score(params, factors, inputs):
    del factors
    net = net_of(params)
    if isinstance(inputs, dict):
      x = (inputs["rows"] > 0).astype(jnp.float32)
      index = inputs["index"]
      known = net.apply(params, jnp.maximum(index, 0), method=CDAE.user_vectors)
      needed = jnp.any((index < 0) & (jnp.sum(x, axis=1) > 0))
      unseen = jax.lax.cond(needed, lambda: fold_in(params, x), lambda: known)
      v = jnp.where((index >= 0)[:, None], known, unseen)
      out = net.apply(params, net.apply(params, x, method=CDAE.encode_input), v,
                      method=CDAE.decode)
      return jnp.take_along_axis(out, inputs["items"], axis=1)
    x = (jnp.asarray(inputs) > 0).astype(jnp.float32)
    v = fold_in(params, x)
    return net.apply(params, net.apply(params, x, method=CDAE.encode_input), v,
                     method=CDAE.decode)

  def item_vectors(params, factors):
    """Columns of the decoder kernel W_2 [K, I] as rows [I, K] (bias b_2 left out)."""
    del factors
    return params["params"]["decoder"]["kernel"].T

  def partition(params, factors):
    """W_1 [I, K] by rows, W_2 [K, I] by columns and b_2 [I] over ``model``; V and b_1 replicated."""
    del factors
    return mesh_lib.item_specs(params, rows=[("params", "encoder", "kernel"),
                                             ("params", "decoder", "bias")],
                               cols=[("params", "decoder", "kernel")]), None

  return Model(name="cdae", config=config, init=init, score=score, loss=loss,
               optimizer=optax.adam(config.learning_rate), train_defaults={"epochs": 200},
               partition=partition,
               item_vectors=item_vectors,
               item_vectors_doc="CDAE decoder output weights W_2[:, j] (bias excluded)")
