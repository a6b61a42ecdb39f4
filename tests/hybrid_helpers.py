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
