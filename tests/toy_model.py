"""A small gradient-trained model for runner tests: a linear autoencoder with a softmax output.

Kept in tests/ on purpose: it exercises the runner's optax path (params,
optimizer state, dropout keys, batch order) without depending on the model zoo.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from recjax.models.base import Model


@dataclasses.dataclass(frozen=True)
class Config:
  dim: int = 8
  learning_rate: float = 0.01
  dropout: float = 0.5
  optimizer: str = "adam"  # or "sgd"


def make(config: Config = Config()) -> Model:
  def init(key, train):
    n = train.shape[1]
    k1, k2 = jax.random.split(key)
    params = {"enc": jax.random.normal(k1, (n, config.dim)) / jnp.sqrt(n),
              "dec": jax.random.normal(k2, (config.dim, n)) / jnp.sqrt(config.dim),
              "bias": jnp.zeros((n,))}
    return params, {}

  def logits(params, x):
    return jnp.tanh(x @ params["enc"]) @ params["dec"] + params["bias"][None, :]

  def loss(params, factors, batch, key, phase):
    del phase
    x = batch["rows"]
    keep = jax.random.bernoulli(key, 1 - config.dropout, x.shape)
    h = logits(params, jnp.where(keep, x, 0.0) / (1 - config.dropout))
    nll = -jnp.sum(jax.nn.log_softmax(h) * x, axis=-1)
    m = batch["mask"].astype(jnp.float32)
    return jnp.sum(nll * m) / jnp.maximum(jnp.sum(m), 1.0), {"nll": jnp.sum(nll * m) / jnp.maximum(jnp.sum(m), 1.0)}

  def score(params, factors, inputs):
    return logits(params, inputs)

  return Model(name="toy", config=config, init=init, score=score, loss=loss,
               optimizer=getattr(optax, config.optimizer)(config.learning_rate), train_defaults={"epochs": 5})


def make_split():
  """Seeded synthetic clicks with strong taste clusters, split for strong generalization."""
  from recjax.data import splits, synthetic
  matrix = synthetic.synthetic_implicit(n_users=400, n_items=120, nnz=6000, seed=1, n_clusters=6,
                                        cluster_strength=0.8)
  return splits.strong_generalization(matrix, n_heldout_users=60, seed=2)
