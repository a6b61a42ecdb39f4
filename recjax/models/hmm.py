"""The hidden Markov model baseline of Ko et al. 2016, trained by Baum–Welch under the runner.

One discrete HMM pooled over all users: K hidden states, emissions over the I
items (`recjax.ops.hmm`).  The state is the ``factors`` {"pi", "A", "B"}; each
epoch is one EM iteration (a closed-form block step): the E-step's expected
counts summed over padded batches of the training sequences, then the
smoothed M-step.  A killed run resumes at its iteration.  Emissions start at
the item frequencies times random noise per state.  ``score`` gives the
forward pass's predictive log P(x_t | x_<t) of the sequence protocol's
next-item pairs; the model answers that protocol only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from recjax.data import sequences
from recjax.models.base import Model, check_config
from recjax.ops import hmm as hmm_ops

E_STEP_USERS = 256  # Sequences per E-step call.
E_STEP_MULTIPLE = 64  # Padded sequence lengths are multiples of this (few compiled shapes).


@dataclasses.dataclass(frozen=True)
class Config:
  states: int = 32  # K, hidden states.
  smoothing: float = 1e-3  # Pseudo-count added to every expected count in the M-step.
  init_noise: float = 0.5  # Std of the log-normal noise on each state's initial emissions.

  def __post_init__(self):
    check_config(self, "hmm", at_least={"states": 1, "smoothing": 0.0, "init_noise": 0.0})


def padded_batches(seqs: list[np.ndarray], batch: int = E_STEP_USERS,
                   multiple: int = E_STEP_MULTIPLE) -> list[tuple[np.ndarray, np.ndarray]]:
  """(items [batch, T] int32, mask [batch, T] float32) of the sequences, longest first.

  T is a multiple of `multiple`; the last batch is padded with empty rows so every
  batch has `batch` rows.
  """
  order = np.argsort([-len(s) for s in seqs], kind="stable")
  out = []
  for start in range(0, len(order), batch):
    ids = order[start:start + batch]
    items, lengths = sequences.pad_sequences([seqs[i] for i in ids], multiple)
    if len(ids) < batch:
      items = np.concatenate([items, np.zeros((batch - len(ids), items.shape[1]), np.int32)])
      lengths = np.concatenate([lengths, np.zeros(batch - len(ids), np.int32)])
    mask = (np.arange(items.shape[1])[None] < lengths[:, None]).astype(np.float32)
    out.append((items, mask))
  return out


def em_iteration(params: dict, batches, smoothing: float) -> tuple[dict, float]:
  """One Baum–Welch iteration over `padded_batches`: (new parameters, training log-likelihood)."""
  total = None
  for items, mask in batches:
    total = hmm_ops.add_counts(total, hmm_ops.e_step(params, items, mask))
  return hmm_ops.m_step(total, smoothing), float(total["loglik"])


@jax.jit
def _pair_log_probs(params, inputs, targets, events):
  """log P(x_{t+1} | x_<=t) of next-item pairs: the forward pass over x_0, x_1, ..."""
  full = jnp.concatenate([inputs[:, :1], targets], axis=1)
  mask = jnp.concatenate([events[:, :1], events], axis=1)
  return hmm_ops.predictive_log_probs(params, full, mask)[:, 1:]


def make(config: Config) -> Model:
  """The pooled HMM as a runner model over ``train_sequences``; one EM iteration per epoch."""

  def init(key, train, train_sequences):
    del train_sequences
    counts = np.asarray(train.sum(axis=0)).ravel()  # Item frequencies of the training events.
    return {}, hmm_ops.init(key, config.states, train.shape[1], counts, noise=config.init_noise)

  def prepare(train, train_sequences):
    del train
    return padded_batches(list(train_sequences))

  def block_step(params, factors, batches, key):
    del params, key
    return em_iteration(factors, batches, config.smoothing)[0]

  def score(params, factors, batch):
    """Per-position next-item log-probabilities (the sequence protocol's batches only)."""
    del params
    if not isinstance(batch, dict):
      raise ValueError("hmm scores item sequences (the sequence-tail protocol); it cannot rank "
                       "items for an unordered row of items")
    return _pair_log_probs(factors, batch["inputs"], batch["targets"], batch["events"])

  return Model(name="hmm", config=config, init=init, prepare=prepare, block_step=block_step,
               score=score, side_keys=("train_sequences",), train_defaults={"epochs": 20})
