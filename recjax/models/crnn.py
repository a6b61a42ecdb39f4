"""The collaborative RNN of Ko et al. 2016 (C-GRU, C-tanh) and the pooled GRU (P-GRU).

Item embeddings W_in (the input terms, [I, kD]) and the output matrix W_out
([I, D]) are shared by all users; each user has its own recurrent matrix
W_h^(u) ([D, kD]; for the GRU W_zh | W_rh | W_h), gathered by user id for a
batch of users (Eq. 17–24).  The pooled model has one recurrent matrix.

Training follows Algorithms 1–2 batched over users, driven by the runner:
the batch source (`data.sequences.SequenceWindows`) puts users in random order,
``TrainConfig.batch_size`` sequences per batch, each batch cut into windows of
`window` events (128 in the paper), and the model's own ``update`` makes one
step per window: truncated back-propagation inside the window, the hidden state
carried to the batch's next window in ``params["carry"]["hidden"]`` (one row per
user, written by the update and never trained, reset on a batch's first
window; scoring starts from h0 instead).  One step per window keeps
Algorithm 2's updates (the parameters move after every window) with a few
compiled window widths; carrying the state inside one call per user batch
would compile once per number of windows.  Time runs under `lax.scan`.
RMSprop (Tieleman and Hinton): the shared parameters by optax.rmsprop's rule,
the per-user rows by the RMSprop rule applied to the gathered rows only (a
user's matrix moves only when that user is processed, as in Algorithm 2, and
the step costs O(batch D²), not O(U D²)).  A step touches the catalog only
where the full softmax must: the output layer runs in item chunks with W_out's
update fused in (`nn.full_softmax`, on the window's real events only), and of
W_in only the rows of the window's items are updated, the second moment of the
others decaying lazily (`make_optimizer`); the result is that of ``jax.grad``
of `forward_nll` plus dense optax (tests/test_crnn.py).  Dropout on the non-recurrent
connections (input term and the state fed to the output layer, Zaremba et al.
2014); weights drawn from N(0, 1/D); the runner keeps the epoch of the best
validation-tail error and stops early.

``score`` answers the sequence protocol only (`recjax.eval.sequence`): log P of
each next item given the user's history, the state carried across windows, the
softmax computed only at the positions the protocol scores.  A
model of sequences cannot rank items for an unordered row, so the item-row
queries of serving are refused with one line.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.data import sequences
from recjax.models.base import Model, check_config
from recjax.nn import full_softmax, recurrent

OUTPUT_CHUNK = sequences.MIN_WIDTH  # Time steps per full-softmax block: bounds [B, chunk, I] logits.


@dataclasses.dataclass(frozen=True)
class Config:
  cell: str = "gru"  # "gru" or "tanh".
  pooled: bool = False  # True: one recurrent matrix for all users (P-RNN).
  dim: int = 32  # D, hidden units.
  dropout: float = 0.2  # Drop rate on the input term and on h before the output layer.
  learning_rate: float = 3e-3  # RMSprop step size.
  decay: float = 0.9  # RMSprop second-moment decay.
  eps: float = 1e-6  # RMSprop ε.
  window: int = 128  # Truncated-BPTT window (events); the sequences per step are TrainConfig.batch_size.
  sampled: int = 0  # 0: full softmax; S > 0: sampled softmax with S uniform negatives (training only).
  h0: float = 0.0  # Value of every component of the initial state (paper: ε).

  def __post_init__(self):
    check_config(self, "crnn", at_least={"dim": 1, "window": 1, "sampled": 0},
                 above={"learning_rate": 0.0, "eps": 0.0}, fractions=("dropout", "decay"),
                 choices={"cell": tuple(recurrent.CELL_WIDTH)})


@dataclasses.dataclass(frozen=True)
class PooledConfig(Config):
  """The P-GRU: one recurrent matrix shared by all users."""
  pooled: bool = True


@dataclasses.dataclass(frozen=True)
class TanhConfig(Config):
  """The C-tanh: the collaborative RNN with the tanh cell."""
  cell: str = "tanh"


@dataclasses.dataclass(frozen=True)
class PooledTanhConfig(Config):
  """The pooled RNN with the tanh cell (P-tanh)."""
  cell: str = "tanh"
  pooled: bool = True


def name_of(config: Config) -> str:
  """The registry name of a configuration: c-gru, p-gru, c-tanh or p-tanh."""
  return ("p-" if config.pooled else "c-") + config.cell


def init(key: jax.Array, n_users: int, n_items: int, config: Config) -> dict:
  """Parameters {"shared": {w_x, w_out[, w_h]}, "user": {w_h}, "carry": {hidden}}.

  Weights are drawn from N(0, 1/D); the pooled model keeps its recurrent
  matrix in "shared" and no user table ("user" is empty).  "carry" holds the
  [U, D] recurrent state each user's last training window ended in (h0 at
  first): `update` carries it from a batch's window to the next.
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
    user = {}
  else:
    user = {"w_h": std * jax.random.normal(kh, (n_users, d, k * d), jnp.float32)}
  carry = {"hidden": jnp.full((n_users, d), config.h0, jnp.float32)}
  return {"shared": shared, "user": user, "carry": carry}


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


def _hidden(x, w_h, h0, mask, config: Config, dropout_key=None):
  """(hs [B, T, D] fed to the output layer, h_T [B, D]) from the input terms x [B, T, kD].

  Dropout (with `dropout_key`) on x and on hs, from the two halves of the key.
  """
  drop = dropout_key is not None and config.dropout > 0
  if drop:
    k_in, k_out = jax.random.split(dropout_key)
    keep = 1.0 - config.dropout
    x = x * jax.random.bernoulli(k_in, keep, x.shape) / keep
  h_last, hs = recurrent.run(config.cell, w_h, h0, x, mask)
  if drop:
    hs = hs * jax.random.bernoulli(k_out, keep, hs.shape) / keep
  return hs, h_last


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
  hs, h_last = _hidden(shared["w_x"][inputs], _recurrent_weights(shared, user_rows, config), h0,
                       mask, config, dropout_key)
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


def _rms_rows(p, nu, g, config: Config):
  """optax.rmsprop's rule on rows (ε inside the square root): (new p, new ν)."""
  nu = (1 - config.decay) * g ** 2 + config.decay * nu
  return p + (-config.learning_rate) * (jax.lax.rsqrt(nu + config.eps) * g), nu


def make_optimizer(config: Config) -> optax.GradientTransformation:
  """The optimizer state `update` carries; its ``update`` is not used (`update` applies the rules).

  ``init(params)`` -> {"shared": RMSprop ν of each shared parameter (optax.rmsprop's
  rule), "user_nu": ν of the user table ({} when pooled), "x_seen": [I] int32
  the step after which each row of ν["w_x"] was last written, "step": int32
  steps taken}.  Rows of ``w_x`` outside a window have a zero gradient: their
  parameters do not move and their ν only decays, so ν["w_x"] is stored lazily
  and decayed by ``decay ** (step - x_seen)`` when a window next reads the row.
  """

  def init_fn(params):
    return {"shared": jax.tree.map(jnp.zeros_like, params["shared"]),
            "user_nu": jax.tree.map(jnp.zeros_like, params["user"]),
            "x_seen": jnp.zeros(params["shared"]["w_x"].shape[0], jnp.int32),
            "step": jnp.zeros((), jnp.int32)}

  def update_fn(updates, state, params=None):
    raise NotImplementedError("the collaborative RNN steps by its own update (crnn.update)")

  return optax.GradientTransformation(init_fn, update_fn)


def _input_rows_step(w_x, nu_x, seen, step, inputs, g_x, config: Config):
  """RMSprop on the rows of w_x a window read (the others' gradient is zero), ν decayed lazily."""
  flat = inputs.reshape(-1)
  n_items = w_x.shape[0]
  ids, inverse = jnp.unique(flat, size=flat.shape[0], fill_value=n_items, return_inverse=True)
  g = jnp.zeros((flat.shape[0], w_x.shape[1]), g_x.dtype).at[inverse.reshape(-1)].add(
      g_x.reshape(flat.shape[0], -1))
  stale = (step - seen.at[ids].get(mode="clip")).astype(jnp.float32)
  nu = nu_x.at[ids].get(mode="clip") * jnp.power(jnp.float32(config.decay), stale)[:, None]
  rows, nu = _rms_rows(w_x.at[ids].get(mode="clip"), nu, g, config)
  return (w_x.at[ids].set(rows, mode="drop"), nu_x.at[ids].set(nu, mode="drop"),
          seen.at[ids].set(step + 1, mode="drop"))


def update(params, opt_state, batch, key, config: Config):
  """One truncated-BPTT step on a window of a batch of users (`SequenceWindows` batches).

  The state starts at h0 where ``batch["reset"]`` (a batch's first window) and
  from the user's carried row of ``params["carry"]["hidden"]`` otherwise; the
  rows of the batch's users are written back.  Padding rows (user id U) change
  nothing.  The arithmetic is that of ``jax.grad`` of the mean window NLL
  (`forward_nll`) followed by optax.rmsprop on the shared parameters and the
  per-user rule on the gathered rows; it is arranged so that no step touches
  the whole catalog more than the full softmax must: the output layer runs in
  item chunks with W_out's update fused in (`nn.full_softmax`), and only the
  input rows of the window's items are updated (ν of the others decays lazily).

  Returns:
    (params, opt_state, {"loss": summed NLL of the window's events}, n_events).
  """
  users, inputs, targets, mask = batch["users"], batch["inputs"], batch["targets"], batch["events"]
  shared, nu = params["shared"], opt_state["shared"]
  n_users = params["carry"]["hidden"].shape[0]
  carried = params["carry"]["hidden"].at[users].get(mode="clip")
  h0 = jnp.where(batch["reset"][:, None], jnp.float32(config.h0), carried)
  k_drop, k_samp = jax.random.split(key)
  rows = None if config.pooled else params["user"]["w_h"].at[users].get(mode="clip")
  count = mask.sum()
  weight = mask / jnp.maximum(count, 1.0)

  def hidden(x, rows, w_h):
    return _hidden(x, w_h if config.pooled else rows, h0, mask, config, k_drop)

  hs, pullback, h_last = jax.vjp(hidden, shared["w_x"][inputs], rows, shared.get("w_h"),
                                 has_aux=True)
  b, t, d = hs.shape
  new_shared, new_nu = dict(shared), dict(nu)
  if config.sampled > 0:
    samples = jax.random.randint(k_samp, (config.sampled,), 0, shared["w_x"].shape[0])
    nll, out_pullback = jax.vjp(lambda w, h: _sampled_nll(w, h, targets, samples),
                                shared["w_out"], hs)
    g_out, g_hs = out_pullback(weight)
    new_shared["w_out"], new_nu["w_out"] = _rms_rows(shared["w_out"], nu["w_out"], g_out, config)
    nll = nll * mask
  else:
    nll, g_hs, new_shared["w_out"], new_nu["w_out"] = full_softmax.nll_and_rmsprop_packed(
        hs.reshape(b * t, d), targets.reshape(-1), weight.reshape(-1), shared["w_out"],
        nu["w_out"], learning_rate=config.learning_rate, decay=config.decay, eps=config.eps)
    nll, g_hs = nll.reshape(b, t) * mask, g_hs.reshape(b, t, d)
  g_x, g_rows, g_wh = pullback(g_hs)
  step = opt_state["step"]
  new_shared["w_x"], new_nu["w_x"], x_seen = _input_rows_step(
      shared["w_x"], nu["w_x"], opt_state["x_seen"], step, inputs, g_x, config)
  if config.pooled:
    new_shared["w_h"], new_nu["w_h"] = _rms_rows(shared["w_h"], nu["w_h"], g_wh, config)
  user, user_nu = params["user"], opt_state["user_nu"]
  if not config.pooled:
    user_w, user_nu = user["w_h"], user_nu["w_h"]
    active = (mask.sum(axis=1) > 0) & (users < n_users)
    ids = jnp.where(active, users, n_users)  # inactive slots are dropped by the scatter.
    nu_rows = config.decay * user_nu.at[ids].get(mode="clip") + (1 - config.decay) * g_rows ** 2
    new_rows = rows - config.learning_rate * g_rows / (jnp.sqrt(nu_rows) + config.eps)
    user = {"w_h": user_w.at[ids].set(new_rows, mode="drop")}
    user_nu = {"w_h": user_nu.at[ids].set(nu_rows, mode="drop")}
  hidden_rows = params["carry"]["hidden"].at[jnp.where(users < n_users, users, n_users)].set(
      jax.lax.stop_gradient(h_last), mode="drop")
  return ({"shared": new_shared, "user": user, "carry": {"hidden": hidden_rows}},
          {"shared": new_nu, "user_nu": user_nu, "x_seen": x_seen, "step": step + 1},
          {"loss": nll.sum()}, count)


@functools.partial(jax.jit, static_argnames=("config",))
def hidden_window(params, user_ids, h0, inputs, mask, config: Config):
  """(h_T [B, D], hs [B, T, D]) of a window, no dropout: the states the output layer reads."""
  rows = None if config.pooled else params["user"]["w_h"].at[user_ids].get(mode="clip")
  hs, h_last = _hidden(params["shared"]["w_x"][inputs],
                       _recurrent_weights(params["shared"], rows, config), h0, mask, config)
  return h_last, hs


@jax.jit
def _row_log_probs(w_out, h, targets):
  """log softmax(W_out h_n)[target_n] of rows h [N, D] (compiled once per row bucket)."""
  return jnp.sum(h * w_out[targets], axis=-1) - full_softmax.logsumexp(h, w_out, EVAL_CHUNK)


EVAL_ROWS = 256  # Scored positions per output-layer call of `log_probs`; with EVAL_CHUNK items
EVAL_CHUNK = 1024  # a block of logits is 1 MiB (2-3x the GFLOP/s of 2048 x 4096 blocks on CPU).


def log_probs(params, batch, config: Config) -> np.ndarray:
  """[B, T] log P(targets_t | x_<=t) of whole sequences, the state carried across windows.

  `batch` as `recjax.eval.sequence` builds it ({"users", "inputs", "targets",
  "events"} and optionally "scored"); windows are `data.sequences.window_slices`
  of the longest row.  The recurrence runs over every event; the softmax only
  at the positions asked for ("scored" > 0 where given, else every event), in
  blocks of at most `EVAL_ROWS` positions (bucketed to powers of two) and item
  chunks; other positions are 0.
  """
  inputs, targets, events = (np.asarray(batch[k]) for k in ("inputs", "targets", "events"))
  b, t = inputs.shape
  slices = sequences.window_slices(int(events.sum(axis=1).max()) if b else 0, config.window)
  users = jnp.asarray(batch["users"], jnp.int32)
  h = jnp.full((b, config.dim), config.h0, jnp.float32)
  hs = []
  for cols in slices:
    h, hs_w = hidden_window(params, users, h, jnp.asarray(sequences.columns(inputs, cols)),
                            jnp.asarray(sequences.columns(events, cols, 0.0)), config)
    hs.append(hs_w)
  hs = np.concatenate(jax.device_get(hs), axis=1)  # [B, T, D]: small next to the logits.
  wanted = np.asarray(batch.get("scored", events)) > 0
  rows, cols = np.nonzero(wanted & (events > 0))
  out = np.zeros((b, t), np.float32)
  for start in range(0, len(rows), EVAL_ROWS):
    r, c = rows[start:start + EVAL_ROWS], cols[start:start + EVAL_ROWS]
    size = sequences.bucket_width(len(r), EVAL_ROWS)
    pad = size - len(r)
    h_rows = np.pad(hs[r, c], ((0, pad), (0, 0)))
    lp = _row_log_probs(params["shared"]["w_out"], jnp.asarray(h_rows),
                        jnp.asarray(np.pad(targets[r, c], (0, pad))))
    out[r, c] = np.asarray(lp)[:len(r)]
  return out


def make(config: Config) -> Model:
  """The collaborative (or pooled) RNN as a runner model, trained on ``train_sequences``."""
  name = name_of(config)

  def init_model(key, train, train_sequences):
    del train_sequences
    return init(key, train.shape[0], train.shape[1], config), {}

  def prepare(train, train_sequences):
    del train
    empty = [np.zeros(0, np.int32)] * len(train_sequences)
    return {"pairs": sequences.next_item_pairs(train_sequences, empty, config.window)}

  def loss(params, factors, batch, key, phase):
    """Mean NLL per event of a window started from h0 (`update` carries the state instead)."""
    del factors, phase
    rows = None if config.pooled else params["user"]["w_h"].at[batch["users"]].get(mode="clip")
    h0 = jnp.full((batch["users"].shape[0], config.dim), config.h0, jnp.float32)
    nll, _ = forward_nll(params["shared"], rows, h0, batch["inputs"], batch["targets"],
                         batch["events"], config, dropout_key=key)
    return nll.sum() / jnp.maximum(batch["events"].sum(), 1.0), {}

  def model_update(params, opt_state, factors, batch, key, phase):
    del factors, phase
    return update(params, opt_state, batch, key, config)

  def score(params, factors, batch):
    """Per-position next-item log-probabilities (the sequence protocol's batches only)."""
    del factors
    if not isinstance(batch, dict):
      raise ValueError(f"{name} scores item sequences (the sequence-tail protocol); it cannot "
                       f"rank items for an unordered row of items")
    return log_probs(params, batch, config)

  return Model(name=name, config=config, init=init_model, prepare=prepare, loss=loss,
               optimizer=make_optimizer(config), update=model_update, score=score,
               batch_source=sequences.SequenceWindows(window=config.window),
               side_keys=("train_sequences",), train_defaults={"epochs": 20})
