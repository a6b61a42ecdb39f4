"""Test helpers shared by the hybrid models' tests (CDL, CVAE, CRAE)."""

import numpy as np
import scipy.sparse as sp

from recjax.data import splits


def weighted_ridge(Y, obs, a, b, reg, prior):
  """Row-by-row brute force: (Yᵀ C Y + λI)⁻¹ (Yᵀ C p + λ m), C = a on obs, b elsewhere."""
  out = np.zeros((obs.shape[0], Y.shape[1]))
  for r in range(obs.shape[0]):
    c = np.where(obs[r], a, b)
    A = Y.T @ (c[:, None] * Y) + reg * np.eye(Y.shape[1])
    out[r] = np.linalg.solve(A, Y.T @ (c * obs[r]) + reg * prior[r])
  return out


def keep_p_split(clicks: sp.csr_matrix, p: int, seed: int = 0) -> splits.RankingSplit:
  """P random clicks of every user train, the rest test (the hybrid papers' protocol)."""
  rng = np.random.default_rng(seed)
  train, test = clicks.tolil(), clicks.tolil()
  for u in range(clicks.shape[0]):
    items = clicks[u].indices
    keep = rng.permutation(items)[:p]
    for i in items:
      if i in keep:
        test[u, i] = 0
      else:
        train[u, i] = 0
  train, test = sp.csr_matrix(train), sp.csr_matrix(test)
  train.eliminate_zeros()
  test.eliminate_zeros()
  return splits.weak_generalization_split(train, test)


def phase(model, epoch: int, step: int = 0) -> dict:
  """The loss's ``phase`` at `epoch` as the runner builds it: epoch, step and ``model.phase(epoch)``."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  values = model.phase(epoch) if model.phase is not None else {}
  return {"epoch": jnp.int32(epoch), "step": jnp.int32(step),
          **{k: jnp.asarray(v, jnp.int32 if isinstance(v, int) else jnp.float32)
             for k, v in values.items()}}


def epoch_batches(model, train, aux, batch_size: int, epoch: int, seed: int = 0):
  """The batches of `epoch` from ``model.batch_source`` (an iterator of dicts)."""
  return model.batch_source.epoch(train, aux, batch_size, epoch, seed)[1]


def train_step(model):
  """The runner's jitted optimization step of `model`, without donation.

  ``step(params, opt_state, factors, batch, key, phase) -> (params, opt_state)``.
  """
  from recjax.train.runner import make_train_step  # pylint: disable=import-outside-toplevel
  step = make_train_step(model, donate=False)
  return lambda *args: step(*args)[:2]


def topic_data(seed=0, n_users=50, n_items=36, n_words=24, cold=(0,)):
  """Clicks and word counts that share 3 topics; items in `cold` get no clicks."""
  rng = np.random.default_rng(seed)
  item_topic = rng.integers(0, 3, n_items)
  user_topic = rng.integers(0, 3, n_users)
  word_topic = rng.integers(0, 3, n_words)
  clicks = rng.random((n_users, n_items)) < np.where(user_topic[:, None] == item_topic[None, :],
                                                      0.3, 0.02)
  clicks[:, list(cold)] = False
  counts = rng.poisson(np.where(item_topic[:, None] == word_topic[None, :], 1.5, 0.05))
  return sp.csr_matrix(clicks.astype(np.float32)), sp.csr_matrix(counts.astype(np.float32))


def check_prior_sweep(factors, new, train, config, prior):
  """`new` U, V are one exact ALS sweep from `factors` with item prior mean `prior` (brute force)."""
  r = train.toarray() > 0
  u = weighted_ridge(np.asarray(factors["V"], np.float64), r, config.a, config.b, config.reg_u,
                     np.zeros((r.shape[0], np.shape(prior)[1])))
  np.testing.assert_allclose(new["U"], u, rtol=1e-3, atol=1e-5)
  v = weighted_ridge(np.asarray(new["U"], np.float64), r.T, config.a, config.b, config.reg_v,
                     np.asarray(prior, np.float64))
  np.testing.assert_allclose(new["V"], v, rtol=1e-3, atol=1e-5)
