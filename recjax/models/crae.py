"""CRAE: collaborative recurrent autoencoder (Wang, Shi & Yeung, NIPS 2016), MAP estimates.

Each item's title, a word sequence, goes through a denoising recurrent
autoencoder (DRAE, `recjax.nn.crae.CRAENet`: robust recurrent networks,
wildcard denoising, compression to θ_j, decoding of the clean title,
beta-pooling to γ_j), and γ_j is the prior mean of the item factors (§3.4):

  v_j ~ N(γ_j, λ_v⁻¹ I),  u_i ~ N(0, λ_u⁻¹ I),  R_ij ~ N(u_iᵀv_j, C_ij⁻¹),

C_ij = α on clicks and β elsewhere.  Training maximizes L (§3.5); with the
θ_j, h_t, s_t, γ_j at their means (MAP, the λ_s terms vanish) we minimize

  J = Σ_ij C_ij/2 (R_ij − u_iᵀv_j)² + λ_u/2 Σ_i ||u_i||² + λ_v/2 Σ_j ||v_j − γ_j||²
      + Σ_j −log p(e_j | e'_j) + λ_w/2 ||W⁺||²,

where −log p(e_j | e'_j) = −Σ_t log softmax(W_g h_t + b_g)[e_t] is the DRAE's
reconstruction of the clean title (and its end ⟨$⟩) from the corrupted one.
Block coordinate descent, one runner epoch at a time:

* ``block_step`` (closed form, never optax): γ_j of every item from the
  current network on its *clean* title (no wildcards), then one implicit-ALS
  sweep with prior mean γ (`recjax.ops.als_core.prior_step`):
  u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i and
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v γ_j), the paper's update rules.
* ``loss`` (Adam over minibatches of the visible items' titles,
  `recjax.data.item_batches.TokenRows`; ``phase["prior_weight"]`` is 0 in the
  ``pretrain_epochs`` first epochs, then 1): the network's
  terms of J per item on the corrupted title (the paper's joint objective
  with U, V fixed), (1/|B|) Σ_{j∈B} [−log p(e_j | e'_j) + λ_v/2 ||v_j − γ_j||²]
  + λ_w/(2N) ||W⁺||², an unbiased estimate of those terms / N for N items.

Prediction R*_ij = u_iᵀ v_j for items with a training click; an item with
none is scored from its content alone, u_iᵀ γ_j (as CDL scores out-of-matrix
items).  Users are folded in by one exact implicit-ALS solve against V
(`recjax.ops.als_core.scorers`), the block step's update for u_i.

Sequence generation on the fly (§4.2): with ``hidden_content_fraction`` > 0
(the paper: 0.2, at P = 5) that share of the items never shows its title to
the network (no batches, and γ_j = 0, i.e. the plain PMF prior); after
training, `generate_titles` decodes a title for each of them greedily from
its learned v_j, fed to the decoder in place of E[tanh(θ_j)] (v_j ≈ γ_j, which
in the degenerate model *is* tanh(θ_j)).  The nearest-neighbour baseline
(models that cannot generate) and the BLEU analysis live with the binary that
uses them (experiments/crae_titles.py, experiments/crae_bleu.py).

Choices the paper leaves open (it has no public code; the supplementary
material it cites is not available to us), and what recjax does:

* Titles: the 8,000-word citeulike vocabulary has no stop words; words
  outside it are dropped, not mapped to ⟨unk⟩ (`recjax.data.titles`; "unk" is
  available there).  ``vocab_size`` must match the id space.
* λ_u, λ_v, λ_s, λ_w are not given in the main text: λ_u = 1, λ_v = 10,
  λ_w = 1e-4 (CDL's citeulike-a values, same authors, same α, β, K), and
  λ_s = 10 (κ(λ_s) = 0.98; it only enters through κ in this deterministic
  forward pass).
* The cell input of Eq. 2 is σ(a) as printed (``candidate="sigmoid"``, the
  Deep Learning book's LSTM); "tanh" gives the usual LSTM.
* E[tanh(x)] uses κ(λ_s/4) (2x has variance 4/λ_s); Eq. 7's variance
  approximation D(x) ≈ λ_s⁻¹ means every variable's variance is λ_s⁻¹, so
  only means are propagated.  γ_j = tanh(W_1 f + b_1) uses the plain tanh
  (Eq. 5 puts the noise outside the tanh); the decompression uses E[tanh(θ_j)].
* The decoder reads ⟨$⟩ then the clean words (teacher forcing) and predicts
  the words then ⟨$⟩ (T + 1 steps); beta-pooling pools the T encoder states
  and the T decoder states that emit words (2T_j, as Eq. 5 counts them).
  Under word dropping the encoder has T' ≤ T states and N = T' + T.
* Beta-pooling: a = 400, b = 311 by default, the best setting of Table 1
  (recall@300 12.71); ``pooling="last"`` is the degenerate γ_j = tanh(θ_j);
  ``learn_pool`` learns log a, log b with the network (dF/da, dF/db by central
  differences: JAX's betainc has no derivative in a, b).
* Wildcards replace each real word independently with probability 0.4
  (``noise_rate``); the block step and prediction read clean titles.
* Optimizer: Adam, learning rate 1e-3, global-norm clipping at 5 (RNN
  practice; not in the paper); no DRAE pretraining by default
  (``pretrain_epochs`` epochs without the λ_v term are available).
  Minibatches group titles of similar length (``bucket_by_length``, windows of
  50 batches sorted by length, batch order shuffled:
  `recjax.data.item_batches.window_sorted_order`), as seq2seq training
  usually does: on citeulike-a (batches of 128) 115 of 133 batches are then 8
  words wide instead of 16, and the padded slots fall from 2.9x to 1.6x the
  real words.
* The output bias starts at the log frequency of each target (as CDL/CVAE
  start theirs at the marginal), embeddings ~ N(0, 0.1²), recurrent kernels
  orthogonal, other kernels LeCun normal, biases 0.
* Titles with no vocabulary word (71 on citeulike-a) have T = 0: γ_j =
  tanh(b_1) and the decoder learns to emit ⟨$⟩ at once.
* Generation: greedy, at most ``max_length`` words; hidden items whose title is
  empty are left out of BLEU (nothing to generate).  Nearest neighbour is
  Euclidean in v.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import item_batches
from recjax.data import titles as titles_lib
from recjax.models.base import Model, check_config
from recjax.nn import content as content_nn
from recjax.nn import crae as crae_nn
from recjax.ops import als, als_core

NOISES = ("wildcard", "drop", "none")


@dataclasses.dataclass(frozen=True)
class Config(als_core.PriorALSConfig):
  """CRAE's fields; α (a), β (b), λ_u, λ_v and the solver fields: `als_core.PriorALSConfig`."""

  dim: int = 50  # K: dimension of u_i, v_j, θ_j and γ_j.
  word_dim: int = 100  # K_W: word embeddings and both RRNs.
  vocab_size: int = 8000  # S: word ids 0..S-1 (S is ⟨unk⟩) in the item titles.
  reg_u: float = 1.0  # λ_u.
  reg_v: float = 10.0  # λ_v, the pull of v_j toward the pooled title code γ_j.
  precision: float = 10.0  # λ_s, the RRN's noise precision (inf: a plain LSTM).
  reg_w: float = 1e-4  # λ_w on all network weights and biases, in J's units (summed over items).
  candidate: str = "sigmoid"  # Cell input nonlinearity: "sigmoid" (Eq. 2) or "tanh" (usual LSTM).
  noise: str = "wildcard"  # Encoder corruption: "wildcard" (§3.2), "drop" (naive) or "none".
  noise_rate: float = 0.4  # Probability that a word is replaced (or dropped).
  pooling: str = "beta"  # "beta" (§3.3) or "last" (γ_j = tanh(θ_j), the degenerate model).
  pool_a: float = 400.0  # a of Beta(a, b) (Table 1's best: a = 400, b = 311).
  pool_b: float = 311.0  # b of Beta(a, b).
  learn_pool: bool = False  # Learn a and b with the network.
  pretrain_epochs: int = 0  # First epochs train the DRAE alone (no λ_v term).
  learning_rate: float = 1e-3  # Adam.
  clip_norm: float = 5.0  # Global gradient-norm clipping (0: none).
  hidden_content_fraction: float = 0.0  # Items whose titles training never sees (§4.2: 0.2).
  hidden_content_seed: int = 0  # Seeds which items are hidden.
  length_multiple: int = 8  # Batch width: its longest title rounded up to a multiple of this.
  bucket_by_length: bool = True  # Batch titles of similar length (window_sorted_order).
  bucket_window: int = 50  # Batches per window sorted by length when bucketing.
  encode_batch: int = 1024  # Items per jitted call when the block step computes every γ_j.

  def __post_init__(self):
    check_config(self, "crae", **als_core.merge_rules(als_core.PRIOR_ALS_RULES, {
        "at_least": {"dim": 1, "word_dim": 1, "vocab_size": 1, "reg_w": 0.0,
                     "pretrain_epochs": 0, "clip_norm": 0.0, "hidden_content_seed": 0,
                     "length_multiple": 1, "bucket_window": 1, "encode_batch": 1},
        "above": {"precision": 0.0, "pool_a": 0.0, "pool_b": 0.0, "learning_rate": 0.0},
        "fractions": ("noise_rate", "hidden_content_fraction"), "allow_inf": ("precision",),
        "choices": {"candidate": crae_nn.CANDIDATES, "noise": NOISES,
                    "pooling": crae_nn.POOLINGS}}))


def network(config: Config) -> crae_nn.CRAENet:
  """The DRAE that a config describes."""
  return crae_nn.CRAENet(n_words=config.vocab_size, word_dim=config.word_dim, latent=config.dim,
                         precision=config.precision, candidate=config.candidate,
                         pooling=config.pooling, pool_a=config.pool_a, pool_b=config.pool_b,
                         learn_pool=config.learn_pool)


def _eos(config: Config) -> int:
  return crae_nn.special_ids(config.vocab_size)["eos"]


def model_tokens(config: Config, titles: np.ndarray) -> np.ndarray:
  """-1-padded title ids with the padding set to ⟨$⟩ (a valid id; the lengths mask it)."""
  t = np.asarray(titles, np.int32)
  return np.where(t >= 0, t, _eos(config)).astype(np.int32)


def corrupt(config: Config, key: jax.Array, tokens: jax.Array, lengths: jax.Array):
  """The encoder input: (tokens, lengths) after the configured noise."""
  if config.noise == "wildcard" and config.noise_rate > 0:
    wildcard = crae_nn.special_ids(config.vocab_size)["wildcard"]
    return crae_nn.wildcard_noise(key, tokens, lengths, config.noise_rate, wildcard), lengths
  if config.noise == "drop" and config.noise_rate > 0:
    return crae_nn.drop_words(key, tokens, lengths, config.noise_rate)
  return tokens, lengths


def item_terms(config: Config, params, tokens: jax.Array, lengths: jax.Array, v: jax.Array,
               key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The per-item network terms of J on a corrupted title, each [B].

  Returns:
    (−log p(e_j | e'_j), λ_v/2 ||v_j − γ_j||²) with e'_j drawn from `key`.
  """
  enc_tokens, enc_lengths = corrupt(config, key, tokens, lengths)
  out = network(config).apply(params, enc_tokens, enc_lengths, tokens, lengths)
  nll = crae_nn.sequence_nll(out["logits"], out["targets"], out["target_mask"])
  prior = 0.5 * config.reg_v * jnp.sum(jnp.square(v - out["gamma"]), axis=-1)
  return nll, prior


def clean_gamma(config: Config, params, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
  """γ_j [B, K] of uncorrupted titles (the ALS prior mean)."""
  out = network(config).apply(params, tokens, lengths, tokens, lengths, with_logits=False)
  return out["gamma"]


def check_titles(config: Config, item_titles, n_items: int) -> np.ndarray:
  """`item_titles` as int32 [n_items, L]: ids in [0, S], then -1 padding; else ValueError."""
  t = np.asarray(item_titles)
  if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
    raise ValueError(f"crae: item_titles must be an integer [items, length] array "
                     f"(recjax.data.titles.title_sequences), got {t.dtype} {t.shape}")
  if t.shape[0] != n_items:
    raise ValueError(f"crae: item_titles has {t.shape[0]} rows for {n_items} items")
  if t.size and (t.min() < -1 or t.max() > config.vocab_size):
    raise ValueError(f"crae: item_titles ids must be in [-1, vocab_size={config.vocab_size}], "
                     f"got [{t.min()}, {t.max()}]; set vocab_size to the vocabulary's size")
  lengths = titles_lib.sequence_lengths(t)
  if np.any((t >= 0) != (np.arange(t.shape[1])[None, :] < lengths[:, None])):
    raise ValueError("crae: item_titles rows must hold their ids first and -1 padding after")
  return t.astype(np.int32)


def hidden_items(config: Config, n_items: int) -> np.ndarray:
  """bool [n_items]: the items whose titles training never sees (a seeded exact share)."""
  hidden = np.zeros(n_items, bool)
  n_hidden = int(round(config.hidden_content_fraction * n_items))
  if n_hidden:
    rng = np.random.default_rng(config.hidden_content_seed)
    hidden[rng.permutation(n_items)[:n_hidden]] = True
  return hidden


def output_bias(config: Config, titles: np.ndarray) -> np.ndarray:
  """Log frequency of each output class (words, ⟨unk⟩, ⟨$⟩) over the titles, +1 smoothed."""
  counts = np.bincount(titles[titles >= 0], minlength=config.vocab_size + 2).astype(np.float64)
  counts[_eos(config)] += titles.shape[0]
  counts += 1.0
  return np.log(counts / counts.sum()).astype(np.float32)


def phase(config: Config, epoch: int) -> dict:
  """{"prior_weight"} of runner epoch `epoch` (1-based): 0 while pretraining the DRAE, then 1."""
  return {"prior_weight": 0.0 if epoch <= config.pretrain_epochs else 1.0}


@functools.lru_cache(maxsize=16)
def _gamma_fn(net: crae_nn.CRAENet):
  """Jitted γ of a batch of clean titles, one per network (configs alike in it share it)."""
  return jax.jit(lambda p, b: net.apply(p, b["tokens"], b["lengths"], b["tokens"], b["lengths"],
                                        with_logits=False)["gamma"])


def all_gammas(config: Config, params, aux) -> jax.Array:
  """γ_j [n_items, K] of every clean title (0 for hidden-content items), `encode_batch` per call.

  Every call has one shape ([encode_batch, the longest title]), so it compiles once.
  """
  tokens, lengths = aux["tokens"], aux["lengths"]
  gamma = np.array(content_nn.encode_all(
      _gamma_fn(network(config)), params,
      item_batches.token_batches(tokens, lengths, config.encode_batch, np.arange(len(tokens)),
                             width=tokens.shape[1])))
  gamma[aux["hidden"]] = 0.0
  return jnp.asarray(gamma)


def make(config: Config) -> Model:
  net = network(config)

  def init(key, train: sp.csr_matrix, item_titles):
    titles = check_titles(config, item_titles, train.shape[1])
    k_net, k_fac = jax.random.split(key)
    width = max(titles.shape[1], 1)
    dummy = jnp.zeros((1, width), jnp.int32)
    params = jax.jit(net.init)(k_net, dummy, jnp.ones((1,), jnp.int32), dummy,
                               jnp.ones((1,), jnp.int32))
    visible = titles[~hidden_items(config, titles.shape[0])]
    params = content_nn.with_param(params, ("output", "bias"), output_bias(config, visible))
    return params, als_core.init_factors(k_fac, train, config, prior="gamma")

  def prepare(train: sp.csr_matrix, item_titles, mesh=None):
    titles = check_titles(config, item_titles, train.shape[1])
    hidden = hidden_items(config, titles.shape[0])
    return {**als_core.prepare(train, config, mesh),
            "titles": titles, "tokens": model_tokens(config, titles),
            "lengths": titles_lib.sequence_lengths(titles), "hidden": hidden,
            "visible": np.flatnonzero(~hidden), "train": sp.csr_matrix(train)}

  def loss(params, factors, batch, key, phase):
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    nll, prior = item_terms(config, params, batch["tokens"], batch["lengths"], v, key)
    mean = lambda t: content_nn.masked_mean(t, batch["mask"])
    decay = content_nn.weight_decay(params, config.reg_w, factors["V"].shape[0])
    total = mean(nll + phase["prior_weight"] * prior) + decay
    metrics = {"neg_log_lik": mean(nll), "prior": mean(prior),
               "words": mean(batch["lengths"].astype(jnp.float32) + 1.0)}
    if config.learn_pool and config.pooling == "beta":
      metrics["pool_a"] = jnp.exp(params["params"]["log_a"])
      metrics["pool_b"] = jnp.exp(params["params"]["log_b"])
    return total, metrics

  optimizer = optax.adam(config.learning_rate)
  if config.clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer)
  batch_source = item_batches.TokenRows(rows="visible", length_multiple=config.length_multiple,
                                    window=config.bucket_window if config.bucket_by_length else 0)
  return Model(name="crae", config=config, init=init, prepare=prepare, loss=loss,
               optimizer=optimizer, train_defaults={"epochs": 80}, side_keys=("item_titles",),
               batch_source=batch_source, phase=functools.partial(phase, config),
               item_vectors_doc="CRAE item factors: v_j if clicked in training, else the title "
                                "code γ_j",
               **content_nn.prior_mean_parts(
                   config, functools.partial(all_gammas, config), "gamma"))


# ----------------------------------------------------------------------------- the objective


@functools.lru_cache(maxsize=8)
def _terms_fn(config: Config):
  """Jitted `item_terms` of a `item_batches.token_batches` batch for `map_objective`."""
  return jax.jit(lambda p, b, v, k: item_terms(config, p, b["tokens"], b["lengths"], v, k))


def map_objective(config: Config, params, factors, aux, key, batch_size: int = 256) -> dict:
  """J at (params, U, V) with its parts, summed in float64 on the host.

  The rating part is exact (`recjax.ops.als.implicit_objective`, halved to
  J's C/2 and λ/2 convention, with the clean-title γ as V's prior mean); the
  network part is Σ_j −log p(e_j | e'_j) over the items whose titles training
  sees, with the corruption drawn from `key` (a fixed key gives a
  deterministic value).

  Returns:
    {"total", "ratings", "reconstruction", "weights"} as floats.
  """
  gamma = np.asarray(all_gammas(config, params, aux), np.float64)
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=gamma)
  reconstruction = content_nn.item_sum(
      _terms_fn(config), params, factors["V"],
      item_batches.token_batches(aux["tokens"], aux["lengths"], batch_size, aux["visible"],
                             width=aux["tokens"].shape[1]), key, 1)
  weights = 0.5 * config.reg_w * float(optax.tree_utils.tree_norm(params, squared=True))
  return {"total": ratings + reconstruction + weights, "ratings": ratings,
          "reconstruction": reconstruction, "weights": weights}


# ----------------------------------------------------------------------------- generation


@functools.lru_cache(maxsize=8)
def _generate_fn(net: crae_nn.CRAENet, max_length: int):
  return jax.jit(lambda p, z: net.apply(p, z, max_length, method=crae_nn.CRAENet.generate))


def generate_titles(config: Config, params, z, max_length: int = 20,
                    batch_size: int = 1024) -> np.ndarray:
  """Greedy titles decoded from z [n, K] (e.g. learned v_j) in place of E[tanh(θ_j)].

  Returns:
    int32 [n, max_length] ids, -1 after each title's end.
  """
  z = np.asarray(z, np.float32)
  fn = _generate_fn(network(config), int(max_length))
  out = []
  for start in range(0, len(z), batch_size):
    chunk = z[start:start + batch_size]
    pad = batch_size - len(chunk) if len(z) > batch_size else 0
    padded = np.concatenate([chunk, np.zeros((pad, z.shape[1]), np.float32)]) if pad else chunk
    out.append(np.asarray(fn(params, jnp.asarray(padded)))[:len(chunk)])
  if not out:
    return np.zeros((0, max_length), np.int32)
  return np.concatenate(out).astype(np.int32)


def decoder_codes(config: Config, params, tokens, lengths) -> dict:
  """θ_j, E[tanh(θ_j)] (the decoder's input) and γ_j of clean titles [B, L] (no noise).

  Decoding from v_j stands for decoding from E[tanh(θ_j)] only when γ_j (which v_j
  tracks) lives in the same space: exactly so for ``pooling="last"`` (γ_j =
  tanh(θ_j)), not in general for beta-pooling (γ_j = tanh(W_1 f_{a,b} + b_1)).
  """
  tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
  out = network(config).apply(params, tokens, lengths, tokens, lengths, with_logits=False)
  return {"theta": out["theta"], "gamma": out["gamma"],
          "decoder_input": crae_nn.robust_tanh(out["theta"], config.precision)}
