"""The denoising recurrent autoencoder of CRAE (Wang, Shi & Yeung, NIPS 2016, §3.1–3.4).

Robust recurrent network (RRN, §3.1).  Every hidden variable is Gaussian with
precision λ_s around a mean computed from the means of its parents, and a
nonlinearity that acts on such a variable is replaced by its expectation in
closed form (Eq. 6–8):

  E σ(x)    ≈ σ(κ(λ_s) μ),              κ(λ) = (1 + π / (8λ))^(-1/2)      (Eq. 6)
  E tanh(x) = E[2σ(2x) − 1] ≈ 2σ(2 κ(λ_s/4) μ) − 1 = tanh(κ(λ_s/4) μ),

(2x has variance 4/λ_s, hence κ(λ_s/4)), and the variance of every variable is
taken to be λ_s⁻¹ (Eq. 7), so the forward pass is deterministic and chained:
with ā, h̄ⁱ, h̄ᶠ, h̄ᵒ = Y x_t + W h_{t−1} + b per gate (one fused Dense),

  s_t = σ_κ(h̄ᶠ) ⊙ s_{t−1} + σ_κ(h̄ⁱ) ⊙ g_κ(ā)                        (Eq. 2, 8)
  h_t = tanh_κ(s_t) ⊙ σ_κ(h̄ᵒ)                                          (Eq. 3)

where g is the paper's σ (Eq. 2, the LSTM of Goodfellow, Bengio & Courville's
book, the paper's ref. [1]) or tanh (Hochreiter & Schmidhuber's / flax's LSTM)
by ``candidate``.  κ → 1 as λ_s → ∞ (``precision=math.inf`` gives κ = 1
exactly) and the cell *is* that LSTM.

Autoencoder (§3.2–3.4), for item j with T_j words e_1..e_T:

* encoder RRN over the corrupted title e'_1..e'_T' (wildcard denoising or
  word dropping, `wildcard_noise` / `drop_words`; the caller owns the key),
  from a zero state; its last state φ_T' = (h_T'; s_T');
* compression θ_j = W_1 φ_T' + b_1, decompression (h; s)_0 = W_2 E[tanh(θ_j)] + b_2
  (Eq. 4, the expectation under θ's λ_s noise as above);
* decoder RRN from (h; s)_0 reading ⟨$⟩, e_1, ..., e_T (teacher forcing) and
  predicting e_1, ..., e_T, ⟨$⟩ with softmax(W_g h_t + b_g) over the words,
  ⟨unk⟩ and ⟨$⟩ (the paper's '$' ends a sentence; here it also starts the
  decoder, and the T + 1-th step predicts it so that generation knows when to stop);
* beta-pooling (§3.3): the T' encoder states and the T decoder states that
  emitted words, φ_1..φ_N (N = T' + T; 2T_j under wildcard noise), weighted by
  w_p = F(p/N; a, b) − F((p−1)/N; a, b) with F the Beta(a, b) CDF; then
  γ_j = tanh(W_1 f_{a,b} + b_1) (Eq. 5, same W_1, b_1 as θ).  ``pooling="last"``
  is the degenerate γ_j = tanh(θ_j) (Beta(a, b) peaked just left of 1/2).

Token ids: words 0..S−1, ⟨unk⟩ = S, ⟨$⟩ = S + 1, ⟨wildcard⟩ = S + 2 (it has
its own embedding, and is never predicted).  The softmax has S + 2 classes.
Sequences are padded to a fixed width with lengths beside them; padded steps
keep the recurrent state and get zero pooling weight.  Both RRNs run under
`flax.linen.scan`.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

CANDIDATES = ("sigmoid", "tanh")
POOLINGS = ("beta", "last")
# Relative step of the central differences that give the Beta CDF's derivatives in a and b.
BETA_FD_STEP = 1e-3


def special_ids(n_words: int) -> dict[str, int]:
  """The ids of the special tokens for a vocabulary of `n_words` words."""
  return {"unk": n_words, "eos": n_words + 1, "wildcard": n_words + 2}


def kappa(precision: float) -> float:
  """κ(λ) = (1 + π/(8λ))^(-1/2), so E σ(x) ≈ σ(κμ) for x ~ N(μ, 1/λ) (Eq. 6); 1 at λ = ∞."""
  if precision <= 0:
    raise ValueError(f"the noise precision λ_s must be > 0, got {precision}")
  if math.isinf(precision):
    return 1.0
  return 1.0 / math.sqrt(1.0 + math.pi / (8.0 * precision))


def robust_sigmoid(x: jax.Array, precision: float) -> jax.Array:
  """E σ(x̃) for x̃ ~ N(x, λ⁻¹), approximately: σ(κ(λ) x)."""
  return jax.nn.sigmoid(kappa(precision) * x)


def robust_tanh(x: jax.Array, precision: float) -> jax.Array:
  """E tanh(x̃) for x̃ ~ N(x, λ⁻¹) through tanh(y) = 2σ(2y) − 1: tanh(κ(λ/4) x)."""
  return jnp.tanh(kappa(precision / 4.0) * x)


# ----------------------------------------------------------------------------- beta-pooling


@jax.custom_jvp
def beta_cdf(x: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """F(x; a, b), the regularized incomplete beta function, differentiable in x, a and b.

  a and b are scalars.  JAX's `betainc` has no derivative in a or b; here
  dF/da and dF/db are central differences in log a and log b (relative step
  `BETA_FD_STEP`), enough for learning the two pooling hyperparameters; the
  five evaluations share one `betainc` call (it is costly to compile).  dF/dx
  is the Beta density.
  """
  return jax.scipy.special.betainc(a, b, x)


@beta_cdf.defjvp
def _beta_cdf_jvp(primals, tangents):
  x, a, b = primals
  dx, da, db = tangents
  up, down = math.exp(BETA_FD_STEP), math.exp(-BETA_FD_STEP)
  one = jnp.ones_like(a)
  shape = (5,) + (1,) * x.ndim
  a5 = (a * jnp.stack([one, up * one, down * one, one, one])).reshape(shape)
  b5 = (b * jnp.stack([one, one, one, up * one, down * one])).reshape(shape)
  f = jax.scipy.special.betainc(a5, b5, x[None])
  df_da = (f[1] - f[2]) / (a * (up - down))
  df_db = (f[3] - f[4]) / (b * (up - down))
  inside = (x > 0) & (x < 1)
  xs = jnp.where(inside, x, 0.5)
  log_pdf = ((a - 1) * jnp.log(xs) + (b - 1) * jnp.log1p(-xs)
             - jax.scipy.special.betaln(a, b))
  pdf = jnp.where(inside, jnp.exp(log_pdf), 0.0)
  return f[0], pdf * dx + df_da * da + df_db * db


@functools.lru_cache(maxsize=64)
def _beta_cdf_table(a: float, b: float, width: int) -> np.ndarray:
  """float32 [width + 1, width + 1]: row N holds F(min(q/N, 1); a, b) for q = 0..width (row 0 = row 1).

  Every value `beta_pooling_weights` can need for fixed a, b (N = max(T' + T, 1)
  never exceeds `width`), computed once on the host in float64.
  """
  n = np.maximum(np.arange(width + 1, dtype=np.float64), 1.0)[:, None]
  edges = np.clip(np.arange(width + 1, dtype=np.float64)[None, :] / n, 0.0, 1.0)
  return scipy.special.betainc(a, b, edges).astype(np.float32)


def beta_pooling_weights(n_first: jax.Array, n_second: jax.Array, width_first: int,
                         width_second: int, a, b) -> tuple[jax.Array, jax.Array]:
  """Beta-pooling weights of two padded runs of states pooled as one sequence (§3.3).

  State p (1-based) of the N = n_first + n_second states gets
  F(p/N; a, b) − F((p−1)/N; a, b): the Beta(a, b) mass over the p-th of N equal
  bins of [0, 1].  The weights of a sequence sum to 1 (N ≥ 1); a = b = 1 is
  average pooling.

  Args:
    n_first: int [B] states in the first run (the encoder's T').
    n_second: int [B] states in the second run (the decoder's T).
    width_first: padded width of the first run.
    width_second: padded width of the second run.
    a, b: Beta parameters (scalars, > 0).  Python numbers (fixed pooling)
      read the CDF from a host-side table of `_beta_cdf_table`; arrays (learned
      pooling, or traced) evaluate it, differentiably, with `beta_cdf`.

  Returns:
    (w_first [B, width_first], w_second [B, width_second]); 0 on padding.
  """
  width = width_first + width_second
  total = jnp.maximum(n_first + n_second, 1)
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    table = jnp.asarray(_beta_cdf_table(float(a), float(b), width))
    cdf = table[jnp.minimum(total, width)]  # [B, width + 1].
  else:
    edges = jnp.clip(jnp.arange(width + 1, dtype=jnp.float32)[None, :]
                     / total.astype(jnp.float32)[:, None], 0.0, 1.0)
    cdf = beta_cdf(edges, a, b)
  mass = cdf[:, 1:] - cdf[:, :-1]  # [B, width]: the bin of combined state q (0-based).
  p1 = jnp.arange(width_first)[None, :]
  w_first = jnp.where(p1 < n_first[:, None], mass[:, :width_first], 0.0)
  p2 = jnp.arange(width_second)[None, :]
  q2 = jnp.minimum(p2 + n_first[:, None], width - 1)
  w_second = jnp.where(p2 < n_second[:, None], jnp.take_along_axis(mass, q2, axis=1), 0.0)
  return w_first, w_second


# ----------------------------------------------------------------------------- noise


def wildcard_noise(key: jax.Array, tokens: jax.Array, lengths: jax.Array, rate: float,
                   wildcard: int) -> jax.Array:
  """Wildcard denoising (§3.2): each real word becomes ⟨wildcard⟩ with probability `rate`.

  Args:
    key: PRNG key.
    tokens: int [B, L] ids (anything on padding).
    lengths: int [B] real words per row.
    rate: replacement probability in [0, 1).
    wildcard: the ⟨wildcard⟩ id.

  Returns:
    int [B, L] corrupted ids; lengths are unchanged.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"wildcard rate must be in [0, 1), got {rate}")
  real = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
  hit = jax.random.bernoulli(key, rate, tokens.shape) & real
  return jnp.where(hit, jnp.asarray(wildcard, tokens.dtype), tokens)


def drop_words(key: jax.Array, tokens: jax.Array, lengths: jax.Array, rate: float
               ) -> tuple[jax.Array, jax.Array]:
  """The naive denoising the paper compares with: each word dropped with probability `rate`.

  The kept words close up in order (a stable sort moves them to the front).

  Returns:
    (int [B, L] ids, kept words first; int [B] new lengths).
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"word drop rate must be in [0, 1), got {rate}")
  real = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
  keep = real & ~jax.random.bernoulli(key, rate, tokens.shape)
  order = jnp.argsort(~keep, axis=1, stable=True)
  return (jnp.take_along_axis(tokens, order, axis=1),
          jnp.sum(keep, axis=1).astype(lengths.dtype))


def decoder_io(words: jax.Array, lengths: jax.Array, eos: int) -> tuple[jax.Array, jax.Array]:
  """Teacher-forcing inputs and targets of the decoder, both [B, L + 1].

  inputs = ⟨$⟩, e_1, ..., e_T (then padding); targets = e_1, ..., e_T, ⟨$⟩ (then
  padding); positions t ≤ T are real (T + 1 steps).  Padding holds ⟨$⟩.
  """
  b, width = words.shape
  pos = jnp.arange(width + 1)[None, :]
  start = jnp.full((b, 1), eos, words.dtype)
  padded = jnp.concatenate([words, start], axis=1)
  inputs = jnp.concatenate([start, words], axis=1)
  inputs = jnp.where(pos <= lengths[:, None], inputs, eos)
  targets = jnp.where(pos < lengths[:, None], padded, eos)
  return inputs, targets


# ----------------------------------------------------------------------------- modules


def _recurrent_init(key, shape, dtype=jnp.float32):
  """Orthogonal [K_W, K_W] blocks side by side for the fused [K_W, 4 K_W] recurrent kernel."""
  n_in, n_out = shape
  keys = jax.random.split(key, n_out // n_in)
  return jnp.concatenate([nn.initializers.orthogonal()(k, (n_in, n_in), dtype) for k in keys],
                         axis=1)


class RRNCell(nn.Module):
  """One robust recurrent network step (§3.1, Eq. 2–3 with Eq. 6–8).

  The four gate pre-activations come from one fused input Dense ("input",
  kernel [E, 4 K_W], bias) and one recurrent Dense ("recurrent", kernel
  [K_W, 4 K_W], no bias), in the order (ā, h̄ⁱ, h̄ᶠ, h̄ᵒ).  `project` is the
  input half alone (it depends on x only, so a sequence's inputs are projected
  for all steps at once, outside the recurrence) and `step` the rest;
  ``cell(carry, x) == cell.step(carry, cell.project(x))``.

  Attributes:
    features: K_W, the width of h_t and s_t.
    precision: λ_s (math.inf: the plain LSTM).
    candidate: "sigmoid" (Eq. 2) or "tanh" (the usual LSTM) for the cell input g(ā).
  """

  features: int
  precision: float = math.inf
  candidate: str = "sigmoid"

  def setup(self):
    if self.candidate not in CANDIDATES:
      raise ValueError(f"RRNCell: candidate must be one of {CANDIDATES}, got {self.candidate!r}")
    self.input = nn.Dense(4 * self.features)
    self.recurrent = nn.Dense(4 * self.features, use_bias=False, kernel_init=_recurrent_init)

  def project(self, x: jax.Array) -> jax.Array:
    """Y x + b, the input's share of the gate pre-activations: [..., E] -> [..., 4 K_W]."""
    return self.input(x)

  def step(self, carry: tuple[jax.Array, jax.Array], zx: jax.Array):
    """(h [B, K_W], s [B, K_W]), zx = project(x) [B, 4 K_W] -> ((h_t, s_t), (h_t, s_t))."""
    h, s = carry
    z = zx + self.recurrent(h)
    a, gi, gf, go = jnp.split(z, 4, axis=-1)
    sig = lambda t: robust_sigmoid(t, self.precision)
    g = sig(a) if self.candidate == "sigmoid" else robust_tanh(a, self.precision)
    s_new = sig(gf) * s + sig(gi) * g
    h_new = robust_tanh(s_new, self.precision) * sig(go)
    return (h_new, s_new), (h_new, s_new)

  def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
    """(h [B, K_W], s [B, K_W]), x [B, E] -> ((h_t, s_t), (h_t, s_t))."""
    return self.step(carry, self.project(x))


def _masked_step(step, carry, zx, m):
  """A cell step that keeps the carry where m is False; emits the (new or kept) state."""
  new, _ = step(carry, zx)
  keep = m[:, None]
  out = (jnp.where(keep, new[0], carry[0]), jnp.where(keep, new[1], carry[1]))
  return out, out


class CRAENet(nn.Module):
  """The DRAE of CRAE: encoder RRN, compression/decompression, decoder RRN, beta-pooling.

  Attributes:
    n_words: S, the vocabulary size (ids: see the module docstring).
    word_dim: K_W, the width of the embeddings and of both RRNs.
    latent: K, the width of θ_j and γ_j.
    precision: λ_s.
    candidate: the cell input nonlinearity ("sigmoid": Eq. 2; "tanh").
    pooling: "beta" (γ_j = tanh(W_1 f_{a,b} + b_1)) or "last" (γ_j = tanh(θ_j)).
    pool_a, pool_b: Beta(a, b) of beta-pooling (the initial values when learned).
    learn_pool: learn log a and log b as parameters ("log_a", "log_b").
  """

  n_words: int
  word_dim: int = 100
  latent: int = 50
  precision: float = 10.0
  candidate: str = "sigmoid"
  pooling: str = "beta"
  pool_a: float = 400.0
  pool_b: float = 311.0
  learn_pool: bool = False

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"CRAENet: pooling must be one of {POOLINGS}, got {self.pooling!r}")
    self.embed = nn.Embed(self.n_words + 3, self.word_dim,
                          embedding_init=nn.initializers.normal(0.1))
    self.encoder = RRNCell(self.word_dim, self.precision, self.candidate)
    self.decoder = RRNCell(self.word_dim, self.precision, self.candidate)
    self.compress = nn.Dense(self.latent)  # W_1, b_1.
    self.decompress = nn.Dense(2 * self.word_dim)  # W_2, b_2.
    self.output = nn.Dense(self.n_words + 2)  # W_g, b_g over words, ⟨unk⟩, ⟨$⟩.
    if self.learn_pool:
      self.log_a = self.param("log_a", nn.initializers.constant(math.log(self.pool_a)), ())
      self.log_b = self.param("log_b", nn.initializers.constant(math.log(self.pool_b)), ())

  @property
  def ids(self) -> dict[str, int]:
    return special_ids(self.n_words)

  def beta_parameters(self):
    """(a, b) of beta-pooling: learned ones through exp of their logs, else Python floats."""
    if self.learn_pool:
      return jnp.exp(self.log_a), jnp.exp(self.log_b)
    return float(self.pool_a), float(self.pool_b)

  def _run(self, cell_name: str, init, tokens, lengths):
    """The named RRN over [B, L] tokens from `init`: (last (h, s), states (h, s) [B, L, K_W]).

    The embeddings and their input projections Y x_t + b are computed for all
    L steps at once (one [B·L, E] x [E, 4 K_W] product); only the recurrent
    product and the gates run step by step (a rolled scan: unrolling it compiles
    slower and runs no faster on CPU).
    """
    cell = getattr(self, cell_name)
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    zx = cell.project(self.embed(tokens))  # [B, L, 4 K_W].

    def body(mdl, carry, zm):
      return _masked_step(getattr(mdl, cell_name).step, carry, *zm)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    return scan(self, init, (zx, mask))

  def encode(self, tokens: jax.Array, lengths: jax.Array):
    """Encoder over (corrupted) tokens [B, L] with `lengths` [B].

    Returns:
      (θ [B, K], last state (h, s) each [B, K_W], states (h, s) each [B, L, K_W]).
    """
    zeros = jnp.zeros((tokens.shape[0], self.word_dim), self.embed.embedding.dtype)
    last, states = self._run("encoder", (zeros, zeros), tokens, lengths)
    theta = self.compress(jnp.concatenate(last, axis=-1))
    return theta, last, states

  def initial_decoder_state(self, z: jax.Array):
    """(h, s)_0 = split(W_2 z + b_2) for z [B, K] standing for E[tanh(θ_j)] (Eq. 4)."""
    hs = self.decompress(z)
    return hs[:, :self.word_dim], hs[:, self.word_dim:]

  def __call__(self, enc_tokens: jax.Array, enc_lengths: jax.Array, words: jax.Array,
               lengths: jax.Array, with_logits: bool = True) -> dict:
    """Encodes the (corrupted) title and decodes the clean one.

    Args:
      enc_tokens: int [B, L'] encoder input (the corrupted title).
      enc_lengths: int [B] its lengths T'.
      words: int [B, L] the clean title (word or ⟨unk⟩ ids; anything on padding).
      lengths: int [B] T.
      with_logits: also compute the [B, L + 1, S + 2] output logits (training);
        False skips the softmax layer (γ alone, for the block step).

    Returns:
      {"theta": [B, K], "gamma": [B, K], "logits": [B, L + 1, S + 2] or None,
       "targets": int [B, L + 1], "target_mask": bool [B, L + 1]}.
    """
    theta, last, enc_states = self.encode(enc_tokens, enc_lengths)
    init = self.initial_decoder_state(robust_tanh(theta, self.precision))
    dec_in, targets = decoder_io(words, lengths, self.ids["eos"])
    _, dec_states = self._run("decoder", init, dec_in, lengths + 1)
    if self.pooling == "last":
      gamma = jnp.tanh(theta)
    else:
      a, b = self.beta_parameters()
      w_enc, w_dec = beta_pooling_weights(enc_lengths, lengths, enc_tokens.shape[1],
                                          dec_in.shape[1], a, b)
      pool = lambda w, st: jnp.einsum("bt,btk->bk", w, jnp.concatenate(st, axis=-1))
      gamma = jnp.tanh(self.compress(pool(w_enc, enc_states) + pool(w_dec, dec_states)))
    logits = None
    if with_logits:  # One [B·(L + 1), K_W] x [K_W, S + 2] product (a 3-D one is slower to
      h = dec_states[0]  # differentiate on CPU).
      logits = self.output(h.reshape(-1, h.shape[-1])).reshape(h.shape[:-1] + (-1,))
    target_mask = jnp.arange(dec_in.shape[1])[None, :] <= lengths[:, None]
    return {"theta": theta, "gamma": gamma, "logits": logits, "targets": targets,
            "target_mask": target_mask}

  def generate(self, z: jax.Array, max_length: int) -> jax.Array:
    """Greedy decoding from z [B, K] in place of E[tanh(θ_j)] (sequence generation, §4.2).

    Returns:
      int [B, max_length] generated ids (words or ⟨unk⟩), -1 from the first
      ⟨$⟩ on (and after `max_length` words without one).
    """
    eos = self.ids["eos"]
    init = self.initial_decoder_state(z)
    start = jnp.full((z.shape[0],), eos, jnp.int32)
    done = jnp.zeros((z.shape[0],), bool)

    def body(mdl, carry, _):
      state, token, finished = carry
      state, _ = mdl.decoder(state, mdl.embed(token))
      nxt = jnp.argmax(mdl.output(state[0]), axis=-1).astype(jnp.int32)
      finished = finished | (nxt == eos)
      return (state, nxt, finished), jnp.where(finished, -1, nxt)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                   length=max_length, out_axes=1)
    _, out = scan(self, (init, start, done), None)
    return out


@jax.custom_vjp
def _row_nll(rows: jax.Array, targets: jax.Array) -> jax.Array:
  """−log softmax(rows)[targets] per row: [N, C], int [N] -> [N]."""
  return (jax.nn.logsumexp(rows, axis=-1)
          - jnp.take_along_axis(rows, targets[:, None], axis=-1)[:, 0])


def _row_nll_fwd(rows, targets):
  lse = jax.nn.logsumexp(rows, axis=-1)
  picked = jnp.take_along_axis(rows, targets[:, None], axis=-1)[:, 0]
  return lse - picked, (rows, lse, targets)


def _row_nll_bwd(res, g):
  rows, lse, targets = res
  onehot = jnp.arange(rows.shape[-1])[None, :] == targets[:, None]
  d = (jnp.exp(rows - lse[:, None]) - onehot.astype(rows.dtype)) * g[:, None]
  return d, None


_row_nll.defvjp(_row_nll_fwd, _row_nll_bwd)


def sequence_nll(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """−Σ_t log softmax(logits_t)[target_t] over the real steps, [B]: the DRAE's likelihood.

  The softmax runs on [B·T, classes] rows (its gradient is markedly slower on
  the 3-D array on CPU).
  """
  rows = logits.reshape(-1, logits.shape[-1])
  nll = _row_nll(rows, targets.reshape(-1)).reshape(targets.shape)
  return jnp.sum(jnp.where(mask, nll, 0.0), axis=-1)
