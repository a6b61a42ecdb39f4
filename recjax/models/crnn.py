"""The collaborative RNN of Ko et al. 2016 (C-GRU, C-tanh) and the pooled GRU (P-GRU).

Item embeddings W_in (the input terms, [I, kD]) and the output matrix W_out
([I, D]) are shared by all users; each user has its own recurrent matrix
W_h^(u) ([D, kD]; for the GRU W_zh | W_rh | W_h), gathered by user id for a
batch of users (Eq. 17–24).  The pooled model has one recurrent matrix.

Training follows Algorithms 1–2 batched over users: users in random order,
`batch_users` sequences per jitted step, each sequence cut into windows of
`window` events (128 in the paper) with truncated back-propagation inside a
window and the hidden state carried from window to window; time runs under
`lax.scan`.  RMSprop (Tieleman and Hinton); the shared parameters go through
optax, the per-user rows through the same RMSprop rule applied to the gathered
rows only (a user's matrix moves only when that user is processed, as in
Algorithm 2, and the step costs O(batch D²), not O(U D²)).  Dropout on the
non-recurrent connections (input term and the state fed to the output layer,
Zaremba et al. 2014); weights drawn from N(0, 1/D); early stopping by the
validation-tail error, done by the driver.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.models.base import check_config
from recjax.nn import recurrent

OUTPUT_CHUNK = 8  # Time steps per full-softmax block: bounds [B, chunk, I] logits in memory.


@dataclasses.dataclass(frozen=True)
class Config:
  cell: str = "gru"  # "gru" or "tanh".
  pooled: bool = False  # True: one recurrent matrix for all users (P-RNN).
  dim: int = 32  # D, hidden units.
  dropout: float = 0.2  # Drop rate on the input term and on h before the output layer.
  learning_rate: float = 3e-3  # RMSprop step size.
  decay: float = 0.9  # RMSprop second-moment decay.
  eps: float = 1e-6  # RMSprop ε.
  window: int = 128  # Truncated-BPTT window (events).
  batch_users: int = 64  # Sequences per jitted step.
  sampled: int = 0  # 0: full softmax; S > 0: sampled softmax with S uniform negatives (training only).
  h0: float = 0.0  # Value of every component of the initial state (paper: ε).

  def __post_init__(self):
    check_config(self, "crnn", at_least={"dim": 1, "window": 1, "batch_users": 1, "sampled": 0},
                 above={"learning_rate": 0.0, "eps": 0.0}, fractions=("dropout", "decay"),
                 choices={"cell": tuple(recurrent.CELL_WIDTH)})


def init(key: jax.Array, n_users: int, n_items: int, config: Config) -> dict:
  """Parameters {"shared": {w_x, w_out[, w_h]}, "user": {w_h}} drawn from N(0, 1/D).

  The pooled model keeps its recurrent matrix in "shared" and an empty [0, D, kD]
  user table.
  """
  if config.cell not in recurrent.CELL_WIDTH:
    raise ValueError(f"cell must be one of {sorted(recurrent.CELL_WIDTH)}, got {config.cell!r}")
  d, k = config.dim, recurrent.CELL_WIDTH[config.cell]
  std = 1.0 / np.sqrt(d)
  kx, ko, kh = jax.random.split(key, 3)
  shared = {"w_x": std * jax.random.normal(kx, (n_items, k * d), jnp.float32),
            "w_out": std * jax.random.normal(ko, (n_items, d), jnp.float32)}
  if config.pooled:
    shared["w_h"] = std * jax.random.normal(kh, (d, k * d), jnp.float32)
    user = {"w_h": jnp.zeros((0, d, k * d), jnp.float32)}
  else:
    user = {"w_h": std * jax.random.normal(kh, (n_users, d, k * d), jnp.float32)}
  return {"shared": shared, "user": user}


def _recurrent_weights(shared, user_rows, config):
  return shared["w_h"] if config.pooled else user_rows


def _full_nll(w_out, hs, targets):
  """[B, T] -log softmax(W_out h_t)[target_t], in time chunks with rematerialization."""
  b, t, d = hs.shape
  c = OUTPUT_CHUNK if t % OUTPUT_CHUNK == 0 else 1
  hs_c = jnp.swapaxes(hs.reshape(b, t // c, c, d), 0, 1)
  y_c = jnp.swapaxes(targets.reshape(b, t // c, c), 0, 1)

  @jax.checkpoint
  def chunk(h, y):
    logits = h @ w_out.T
    true = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - true

  _, nll = jax.lax.scan(lambda carry, hy: (carry, chunk(*hy)), None, (hs_c, y_c))
  return jnp.swapaxes(nll, 0, 1).reshape(b, t)


def _sampled_nll(w_out, hs, targets, samples):
  """Sampled softmax over the target and S uniform negatives (accidental hits masked)."""
  true = jnp.sum(hs * w_out[targets], axis=-1)
  neg = hs @ w_out[samples].T
  neg = jnp.where(samples[None, None, :] == targets[..., None], -jnp.inf, neg)
  return jax.nn.logsumexp(jnp.concatenate([true[..., None], neg], axis=-1), axis=-1) - true


def forward_nll(shared, user_rows, h0, inputs, targets, mask, config: Config, *,
                dropout_key=None, samples=None):
  """Per-event NLL of one window.

  Args:
    shared: shared parameters.
    user_rows: [B, D, kD] the batch users' recurrent matrices (ignored when pooled).
    h0: [B, D] state carried from the previous window.
    inputs, targets: [B, T] int32 item x_t and the next item x_{t+1}.
    mask: [B, T] 1 for real pairs.
    config: the model Config.
    dropout_key: a PRNG key to apply dropout (training), or None.
    samples: [S] negative items for the sampled softmax, or None for the full one.

  Returns:
    (nll [B, T] zero on padding, h_T [B, D]).
  """
  x = shared["w_x"][inputs]
  if dropout_key is not None and config.dropout > 0:
    k_in, k_out = jax.random.split(dropout_key)
    keep = 1.0 - config.dropout
    x = x * jax.random.bernoulli(k_in, keep, x.shape) / keep
  w_h = _recurrent_weights(shared, user_rows, config)
  h_last, hs = recurrent.run(config.cell, w_h, h0, x, mask)
  if dropout_key is not None and config.dropout > 0:
    hs = hs * jax.random.bernoulli(k_out, keep, hs.shape) / keep
  if samples is None:
    nll = _full_nll(shared["w_out"], hs, targets)
  else:
    nll = _sampled_nll(shared["w_out"], hs, targets, samples)
  return nll * mask, h_last


def window_nll_sum(params, user_ids, h0, inputs, targets, mask, config: Config):
  """Summed NLL of a window with the user rows gathered from the full table (for tests)."""
  rows = params["user"]["w_h"][user_ids] if not config.pooled else None
  nll, _ = forward_nll(params["shared"], rows, h0, inputs, targets, mask, config)
  return nll.sum()


def make_optimizer(config: Config) -> optax.GradientTransformation:
  return optax.rmsprop(config.learning_rate, decay=config.decay, eps=config.eps)


def init_state(params, config: Config) -> dict:
  """Optimizer state: optax state of the shared part, RMSprop ν of the user table."""
  return {"shared": make_optimizer(config).init(params["shared"]),
          "user_nu": jnp.zeros_like(params["user"]["w_h"])}


@functools.partial(jax.jit, static_argnames=("config",), donate_argnums=(0, 1))
def train_step(params, opt_state, user_ids, h0, inputs, targets, mask, key, config: Config):
  """One truncated-BPTT update on a window of a batch of users.

  Args:
    params, opt_state: from `init` / `init_state` (donated).
    user_ids: [B] int32 distinct users; id U (out of range) marks a padding slot.
    h0: [B, D] carried state.
    inputs, targets, mask: [B, window] (see `forward_nll`).
    key: PRNG key of this step (dropout, negative samples).
    config: static Config.

  Returns:
    (params, opt_state, h_T [B, D], nll_sum, n_events).
  """
  n_users = params["user"]["w_h"].shape[0]
  k_drop, k_samp = jax.random.split(key)
  samples = None
  if config.sampled > 0:
    samples = jax.random.randint(k_samp, (config.sampled,), 0, params["shared"]["w_x"].shape[0])
  rows = None if config.pooled else params["user"]["w_h"].at[user_ids].get(mode="clip")
  count = mask.sum()

  def loss(shared, rows):
    nll, h_last = forward_nll(shared, rows, h0, inputs, targets, mask, config,
                              dropout_key=k_drop, samples=samples)
    return nll.sum() / jnp.maximum(count, 1.0), (h_last, nll.sum())

  (_, (h_last, nll_sum)), (g_shared, g_rows) = jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True)(params["shared"], rows)
  updates, s_state = make_optimizer(config).update(g_shared, opt_state["shared"], params["shared"])
  shared = optax.apply_updates(params["shared"], updates)
  user_w, user_nu = params["user"]["w_h"], opt_state["user_nu"]
  if not config.pooled:
    active = (mask.sum(axis=1) > 0) & (user_ids < n_users)
    ids = jnp.where(active, user_ids, n_users)  # inactive slots are dropped by the scatter.
    nu = config.decay * user_nu.at[ids].get(mode="clip") + (1 - config.decay) * g_rows ** 2
    new_rows = rows - config.learning_rate * g_rows / (jnp.sqrt(nu) + config.eps)
    user_w = user_w.at[ids].set(new_rows, mode="drop")
    user_nu = user_nu.at[ids].set(nu, mode="drop")
  return ({"shared": shared, "user": {"w_h": user_w}}, {"shared": s_state, "user_nu": user_nu},
          jax.lax.stop_gradient(h_last), nll_sum, count)


@functools.partial(jax.jit, static_argnames=("config",))
def eval_step(params, user_ids, h0, inputs, targets, mask, config: Config):
  """log P(targets | history) of a window under the full softmax, no dropout.

  Returns:
    (h_T [B, D], logp [B, T] zero on padding).
  """
  rows = None if config.pooled else params["user"]["w_h"].at[user_ids].get(mode="clip")
  nll, h_last = forward_nll(params["shared"], rows, h0, inputs, targets, mask, config)
  return h_last, -nll


def _bucket(n: int, window: int) -> int:
  """Width of a window holding n events: the next power of two >= max(n, 8), at most `window`."""
  return min(window, max(OUTPUT_CHUNK, 1 << max(0, int(n) - 1).bit_length()))


def window_slices(length: int, window: int) -> list[slice]:
  """Column slices cutting `length` events into truncated-BPTT windows of `window` events.

  All windows are `window` wide except the last, which is trimmed to a power-of-two
  bucket (at least 8) of what remains: short sequences do not pay for a full padded
  window, and a handful of widths means a handful of compilations.  At least one
  window is returned.
  """
  out, start = [], 0
  while True:
    rest = int(length) - start
    if rest <= window:
      out.append(slice(start, start + _bucket(rest, window)))
      return out
    out.append(slice(start, start + window))
    start += window


def _window_batches(order, pairs, batch_users, window, n_users):
  """Yields (user_ids, inputs, targets, mask, slices) per user batch, padded to full batches.

  `slices` cut the batch's columns into windows (`window_slices` of its longest sequence).
  """
  lengths = pairs["mask"].sum(axis=1).astype(np.int64)
  t_max = pairs["inputs"].shape[1]
  for start in range(0, len(order), batch_users):
    ids = order[start:start + batch_users]
    pad = batch_users - len(ids)
    slices = window_slices(int(lengths[ids].max()), window)
    width = slices[-1].stop

    def take(name, fill):
      a = pairs[name][ids, :min(width, t_max)]
      if a.shape[1] < width:  # the bucket can be wider than the padded pairs.
        a = np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), fill, a.dtype)], axis=1)
      if pad:
        a = np.concatenate([a, np.full((pad, a.shape[1]), fill, a.dtype)])
      return a

    user_ids = np.concatenate([ids, np.full(pad, n_users)]).astype(np.int32)
    yield user_ids, take("inputs", 0), take("targets", 0), take("mask", 0.0), slices


def batch_order(rng: np.random.Generator, lengths: np.ndarray, batch_users: int,
                group: int = 8) -> np.ndarray:
  """Users in random order, sorted by length within groups of `group` batches.

  Sorting inside small random groups keeps the order random across groups while
  batches rarely mix one long sequence with many short ones (fewer padded windows).
  """
  perm = rng.permutation(len(lengths))
  size = batch_users * group
  chunks = [perm[i:i + size] for i in range(0, len(perm), size)]
  chunks = [c[np.argsort(-lengths[c], kind="stable")] for c in chunks]
  batches = [b for c in chunks for b in np.array_split(c, -(-len(c) // batch_users))]
  return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


def train_epoch(params, opt_state, pairs, config: Config, key, rng: np.random.Generator,
                step: int = 0, progress=None):
  """One pass over all users (Algorithm 2's inner loop).

  Args:
    params, opt_state: current state (donated to the jitted step).
    pairs: `data.sequences.next_item_pairs` of the training sequences.
    config: the model Config.
    key: PRNG key; step keys are `fold_in(key, step)`.
    rng: numpy Generator for the user order.
    step: global step counter at entry.
    progress: optional callable(done_users, total_users).

  Returns:
    (params, opt_state, mean training NLL per event, step, n_events).
  """
  n_users = pairs["inputs"].shape[0]
  lengths = pairs["mask"].sum(axis=1)
  order = batch_order(rng, lengths, config.batch_users)
  total, count, done = 0.0, 0.0, 0
  h_init = jnp.full((config.batch_users, config.dim), config.h0, jnp.float32)
  sums = []
  for user_ids, inputs, targets, mask, slices in _window_batches(
      order, pairs, config.batch_users, config.window, n_users):
    h = h_init
    for cols in slices:
      params, opt_state, h, s, c = train_step(
          params, opt_state, jnp.asarray(user_ids), h, jnp.asarray(inputs[:, cols]),
          jnp.asarray(targets[:, cols]), jnp.asarray(mask[:, cols]),
          jax.random.fold_in(key, step), config)
      sums.append((s, c))
      step += 1
    done += int((user_ids < n_users).sum())
    if progress is not None:
      progress(done, n_users)
  sums = jax.device_get(sums)
  total = float(sum(s for s, _ in sums))
  count = float(sum(c for _, c in sums))
  return params, opt_state, total / max(count, 1.0), step, count


def score_pairs(params, pairs, config: Config, batch_users: int | None = None) -> np.ndarray:
  """[U, T] log P(target_t | x_<=t) over whole sequences, the state carried across windows."""
  batch_users = batch_users or config.batch_users
  n_users, t_max = pairs["inputs"].shape
  lengths = pairs["mask"].sum(axis=1)
  order = np.argsort(-lengths, kind="stable")
  out = np.zeros((n_users, t_max), np.float32)
  for user_ids, inputs, targets, mask, slices in _window_batches(
      order, pairs, batch_users, config.window, n_users):
    h = jnp.full((batch_users, config.dim), config.h0, jnp.float32)
    ids_dev = jnp.asarray(user_ids)
    chunks = []
    for cols in slices:
      h, lp = eval_step(params, ids_dev, h, jnp.asarray(inputs[:, cols]),
                        jnp.asarray(targets[:, cols]), jnp.asarray(mask[:, cols]), config)
      chunks.append(lp)
    lp = np.concatenate(jax.device_get(chunks), axis=1)
    real = user_ids < n_users
    width = min(lp.shape[1], t_max)
    out[user_ids[real], :width] = lp[real, :width]
  return out
