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
  sweep (`recjax.ops.als.half_sweep`): u_i ← (V C_i Vᵀ + λ_u I)⁻¹ V C_i R_i and
  v_j ← (U C_j Uᵀ + λ_v I)⁻¹ (U C_j R_j + λ_v γ_j), the paper's update rules.
* ``loss`` (Adam over minibatches of items from ``batches``): the network's
  terms of J per item on the corrupted title (the paper's joint objective
  with U, V fixed), (1/|B|) Σ_{j∈B} [−log p(e_j | e'_j) + λ_v/2 ||v_j − γ_j||²]
  + λ_w/(2N) ||W⁺||², an unbiased estimate of those terms / N for N items.

Prediction R*_ij = u_iᵀ v_j for items with a training click; an item with
none is scored from its content alone, u_iᵀ γ_j (as CDL scores out-of-matrix
items).  Users are folded in by one exact implicit-ALS solve against V
(`recjax.ops.als.fold_in_dense`), the block step's update for u_i.

Sequence generation on the fly (§4.2): with ``hidden_content_fraction`` > 0
(the paper: 0.2, at P = 5) that share of the items never shows its title to
the network (no batches, and γ_j = 0, i.e. the plain PMF prior); after
training, `generate_titles` decodes a title for each of them greedily from
its learned v_j, fed to the decoder in place of E[tanh(θ_j)] (v_j ≈ γ_j, which
in the degenerate model *is* tanh(θ_j)), and `nearest_neighbour_titles` is the
baseline for models that cannot generate: the title of the visible item whose
v is nearest.  `hidden_item_titles` gives either's titles with the true ones,
for corpus BLEU (`recjax.eval.bleu`).

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
  50 batches sorted by length, batch order shuffled), as seq2seq training
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

from recjax.data import batching
from recjax.data import titles as titles_lib
from recjax.models.base import Model, als_serving, check_config
from recjax.nn import crae as crae_nn
from recjax.ops import als

NOISES = ("wildcard", "drop", "none")


@dataclasses.dataclass(frozen=True)
class Config:
  factors: int = 50  # K: dimension of u_i, v_j, θ_j and γ_j.
  hidden: int = 100  # K_W: word embeddings and both RRNs.
  vocab_size: int = 8000  # S: word ids 0..S-1 (S is ⟨unk⟩) in the item titles.
  a: float = 1.0  # α, confidence C_ij on clicks.
  b: float = 0.01  # β, confidence C_ij elsewhere.
  reg_u: float = 1.0  # λ_u.
  reg_v: float = 10.0  # λ_v.
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
  bucket_by_length: bool = True  # Batch titles of similar length (`length_bucketed_order`).
  bucket_window: int = 50  # Batches per window sorted by length when bucketing.
  solver: str = "cholesky"  # ALS solver: "cholesky" (exact) or "cg".
  cg_steps: int = 3  # CG steps per half sweep when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial U and V.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths in the ALS buckets.
  max_bytes_per_call: int = 256 << 20  # Memory of one jitted ALS solve.
  encode_batch: int = 1024  # Items per jitted call when the block step computes every γ_j.
  fold_in_chunk: int = 512  # Items per step when folding in users.

  def __post_init__(self):
    check_config(self, "crae", at_least={"factors": 1, "hidden": 1, "vocab_size": 1, "b": 0.0,
                                        "reg_u": 0.0, "reg_v": 0.0, "reg_w": 0.0,
                                        "pretrain_epochs": 0, "clip_norm": 0.0,
                                        "hidden_content_seed": 0, "length_multiple": 1,
                                        "bucket_window": 1, "cg_steps": 1, "max_bytes_per_call": 1,
                                        "encode_batch": 1, "fold_in_chunk": 1},
                 above={"a": 0.0, "precision": 0.0, "pool_a": 0.0, "pool_b": 0.0,
                        "learning_rate": 0.0, "init_scale": 0.0, "bucket_growth": 1.0},
                 fractions=("noise_rate", "hidden_content_fraction"), allow_inf=("precision",),
                 choices={"candidate": crae_nn.CANDIDATES, "noise": NOISES,
                          "pooling": crae_nn.POOLINGS, "solver": als.SOLVERS})


def network(config: Config) -> crae_nn.CRAENet:
  """The DRAE that a config describes."""
  return crae_nn.CRAENet(n_words=config.vocab_size, hidden=config.hidden, latent=config.factors,
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


def item_vectors(factors) -> jax.Array:
  """v_j for items with a training click, γ_j (content alone) for the others."""
  return jnp.where(factors["rated"][:, None], factors["V"], factors["gamma"])


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


def _round_up(n: int, multiple: int) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def length_bucketed_order(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                          window: int, seed: int, epoch: int) -> np.ndarray:
  """A shuffled item order cut into batches of similar title lengths (a bucket iterator).

  The shuffled `order` is cut into windows of `window` batches; each window is
  sorted by title length (stably) and cut into batches; the full batches are
  shuffled (seeded by seed and epoch) and the one partial batch, if any, goes
  last, so consecutive chunks of `batch_size` are the batches.  Every item
  appears once; batches are no longer uniformly random, but their padding
  (and so the softmax and recurrent work) shrinks to about the longest title
  of each batch.
  """
  span = batch_size * window
  parts = [chunk[np.argsort(lengths[chunk], kind="stable")]
           for chunk in (order[s:s + span] for s in range(0, len(order), span))]
  sorted_order = np.concatenate(parts) if parts else order
  n_full = len(sorted_order) // batch_size
  full = sorted_order[:n_full * batch_size].reshape(n_full, batch_size)
  rng = np.random.default_rng([seed, epoch, 0x5EED])
  return np.concatenate([full[rng.permutation(n_full)].ravel(),
                         sorted_order[n_full * batch_size:]])


def title_batches(tokens: np.ndarray, lengths: np.ndarray, batch_size: int, order: np.ndarray,
                  length_multiple: int, prior_weight: float = 1.0, width: int | None = None):
  """Fixed-shape batches of titles in `order`, the last one padded with empty rows.

  Yields dicts with "tokens" int32 [B, W] (W the batch's longest title rounded
  up to `length_multiple`, or `width`), "lengths" int32 [B], "index" int32 [B]
  (-1 on padding rows), "mask" bool [B] and "prior_weight" float32 [B].
  """
  for start in range(0, len(order), batch_size):
    ids = order[start:start + batch_size]
    index = np.full(batch_size, -1, np.int32)
    index[:len(ids)] = ids
    lens = np.zeros(batch_size, np.int32)
    lens[:len(ids)] = lengths[ids]
    w = width if width is not None else _round_up(int(lens.max(initial=0)), length_multiple)
    toks = np.zeros((batch_size, w), np.int32)
    cols = min(w, tokens.shape[1])
    toks[:len(ids), :cols] = tokens[ids, :cols]
    yield {"tokens": toks, "lengths": lens, "index": index, "mask": index >= 0,
           "prior_weight": np.full(batch_size, prior_weight, np.float32)}


def all_gammas(gamma_fn, params, aux, batch_size: int) -> jax.Array:
  """γ_j [n_items, K] of every clean title (0 for hidden-content items), batch by batch.

  Every call has one shape ([batch_size, the longest title]), so it compiles once.
  """
  tokens, lengths, hidden = aux["tokens"], aux["lengths"], aux["hidden"]
  n = tokens.shape[0]
  out = []
  for batch in title_batches(tokens, lengths, batch_size, np.arange(n), 1,
                             width=tokens.shape[1]):
    g = np.asarray(gamma_fn(params, batch["tokens"], batch["lengths"]))
    out.append(g[batch["mask"]])
  gamma = np.concatenate(out)
  gamma[hidden] = 0.0
  return jnp.asarray(gamma)


@functools.lru_cache(maxsize=16)
def _gamma_fn(net: crae_nn.CRAENet):
  """Jitted γ of clean titles, one per network (models that differ elsewhere share it)."""
  return jax.jit(lambda p, t, n: net.apply(p, t, n, t, n, with_logits=False)["gamma"])


def make(config: Config) -> Model:
  k = config.factors
  net = network(config)
  gamma_fn = _gamma_fn(net)

  def init(key, train: sp.csr_matrix, item_titles):
    titles = check_titles(config, item_titles, train.shape[1])
    k_net, k_fac = jax.random.split(key)
    width = max(titles.shape[1], 1)
    dummy = jnp.zeros((1, width), jnp.int32)
    params = jax.jit(net.init)(k_net, dummy, jnp.ones((1,), jnp.int32), dummy,
                               jnp.ones((1,), jnp.int32))
    inner = dict(params["params"])
    visible = titles[~hidden_items(config, titles.shape[0])]
    inner["output"] = {**inner["output"], "bias": jnp.asarray(output_bias(config, visible))}
    params = {**params, "params": inner}
    factors = als.init_factors(k_fac, train.shape, k, config.init_scale)
    factors["gamma"] = jnp.zeros((train.shape[1], k), jnp.float32)  # γ_j of the last block step.
    factors["rated"] = jnp.asarray(np.diff(sp.csc_matrix(train).indptr) > 0)
    return params, factors

  def prepare(train: sp.csr_matrix, item_titles):
    titles = check_titles(config, item_titles, train.shape[1])
    return {**als.bucketed_sides(train, config.bucket_growth),
            "titles": titles, "tokens": model_tokens(config, titles),
            "lengths": titles_lib.sequence_lengths(titles),
            "hidden": hidden_items(config, titles.shape[0]), "train": sp.csr_matrix(train)}

  def batches(aux, batch_size, epoch, seed):
    visible = np.flatnonzero(~aux["hidden"])
    order = visible[batching.shuffled_order(len(visible), seed, epoch)]
    if config.bucket_by_length:
      order = length_bucketed_order(order, aux["lengths"], batch_size, config.bucket_window,
                                    seed, epoch)
    weight = 0.0 if epoch <= config.pretrain_epochs else 1.0
    return batching.n_batches(len(visible), batch_size), title_batches(
        aux["tokens"], aux["lengths"], batch_size, order, config.length_multiple, weight)

  def loss(params, factors, batch, key):
    m = batch["mask"].astype(jnp.float32)
    v = factors["V"][jnp.maximum(batch["index"], 0)]
    nll, prior = item_terms(config, params, batch["tokens"], batch["lengths"], v, key)
    count = jnp.maximum(jnp.sum(m), 1.0)
    mean = lambda t: jnp.sum(t * m) / count
    n_items = factors["V"].shape[0]
    decay = 0.5 * config.reg_w / n_items * optax.tree_utils.tree_norm(params, squared=True)
    total = mean(nll + batch["prior_weight"] * prior) + decay
    metrics = {"neg_log_lik": mean(nll), "prior": mean(prior),
               "words": mean(batch["lengths"].astype(jnp.float32) + 1.0)}
    if config.learn_pool and config.pooling == "beta":
      metrics["pool_a"] = jnp.exp(params["params"]["log_a"])
      metrics["pool_b"] = jnp.exp(params["params"]["log_b"])
    return total, metrics

  def block_step(params, factors, aux, key):
    del key
    gamma = all_gammas(gamma_fn, params, aux, config.encode_batch)
    kw = dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call)
    u = als.half_sweep(factors["U"], factors["V"], aux["users"], reg=config.reg_u, **kw)
    v = als.half_sweep(factors["V"], u, aux["items"], reg=config.reg_v, prior=gamma, **kw)
    return {"U": u, "V": v, "gamma": gamma, "rated": factors["rated"]}

  def score(params, factors, inputs):
    del params
    u = als.fold_in_dense(factors["V"], inputs, a=config.a, b=config.b, reg=config.reg_u,
                          item_chunk=config.fold_in_chunk)
    return u @ item_vectors(factors).T

  def model_item_vectors(params, factors):
    """The item vectors score multiplies with (`item_vectors` above)."""
    del params
    return item_vectors(factors)

  score_padded, serving_factors = als_serving(a=config.a, b=config.b, reg=config.reg_u,
                                              item_vectors=model_item_vectors)

  optimizer = optax.adam(config.learning_rate)
  if config.clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer)
  return Model(name="crae", config=config, init=init, score=score, score_padded=score_padded,
               serving_factors=serving_factors, prepare=prepare,
               block_step=block_step, loss=loss, optimizer=optimizer,
               train_defaults={"epochs": 80}, side_keys=("item_titles",), batches=batches,
               item_vectors=model_item_vectors,
               item_vectors_doc="CRAE item factors: v_j if clicked in training, else the title code γ_j")


# ----------------------------------------------------------------------------- the objective


@functools.lru_cache(maxsize=8)
def _terms_fn(config: Config):
  """Jitted `item_terms` for `map_objective`, compiled once per config."""
  return jax.jit(lambda p, t, n, v, k: item_terms(config, p, t, n, v, k))


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
  terms = _terms_fn(config)
  gamma = np.asarray(all_gammas(_gamma_fn(network(config)), params, aux, config.encode_batch),
                     np.float64)
  ratings = 0.5 * als.implicit_objective(factors["U"], factors["V"], aux["train"], a=config.a,
                                         b=config.b, reg_x=config.reg_u, reg_y=config.reg_v,
                                         prior_y=gamma)
  visible = np.flatnonzero(~aux["hidden"])
  v_all = jnp.asarray(factors["V"])
  reconstruction = 0.0
  width = aux["tokens"].shape[1]
  for b, batch in enumerate(title_batches(aux["tokens"], aux["lengths"], batch_size, visible, 1,
                                          width=width)):
    nll, _ = terms(params, batch["tokens"], batch["lengths"],
                   v_all[np.maximum(batch["index"], 0)], jax.random.fold_in(key, b))
    reconstruction += float(np.sum(np.asarray(nll, np.float64)[batch["mask"]]))
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


def nearest_neighbour_titles(queries, keys, key_titles: np.ndarray,
                             metric: str = "euclidean") -> np.ndarray:
  """For each query vector, the title of the key whose vector is nearest.

  `metric` "euclidean" (the smallest distance) or "cosine" (the largest cosine:
  only directions count, so a query shrunk towards 0 by its prior is not
  matched to whichever key has the smallest norm).

  Args:
    queries: [n, K] vectors of the items to give a title to.
    keys: [m, K] vectors of items whose titles are known.
    key_titles: int [m, L] their -1-padded titles.

  Returns:
    int32 [n, L] the borrowed titles.
  """
  q = np.asarray(queries, np.float64)
  k = np.asarray(keys, np.float64)
  if metric == "euclidean":
    d = np.sum(q * q, axis=1)[:, None] - 2.0 * q @ k.T + np.sum(k * k, axis=1)[None, :]
  elif metric == "cosine":
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    d = -(unit(q) @ unit(k).T)
  else:
    raise ValueError(f"nearest_neighbour_titles: metric must be 'euclidean' or 'cosine', "
                     f"got {metric!r}")
  return np.asarray(key_titles)[np.argmin(d, axis=1)].astype(np.int32)


TITLE_METHODS = ("decoder", "decoder_rescaled", "decoder_regressed", "nearest", "nearest_cosine")
RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # Candidate ridge λ of `ratings_to_codes`.


def ratings_only_factors(config: Config, factors, aux) -> np.ndarray:
  """[n_items, K] item factors re-solved from the ratings alone (prior mean 0), U fixed.

  A hidden-content item's v_j is exactly this (its γ_j is 0); for the visible items
  it gives the collaborative code the content would otherwise pull towards γ_j.
  """
  v = als.half_sweep(factors["V"], factors["U"], aux["items"], reg=config.reg_v,
                     a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
                     max_bytes_per_call=config.max_bytes_per_call)
  return np.asarray(v)


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
  """[K+1, D] W minimising ‖[x, 1] W − y‖² + λ‖W[:-1]‖² (the bias is not penalised)."""
  x1 = _with_bias(np.asarray(x, np.float64))
  reg = lam * np.eye(x1.shape[1])
  reg[-1, -1] = 0.0
  return np.linalg.solve(x1.T @ x1 + reg, x1.T @ np.asarray(y, np.float64))


def ratings_to_codes(x: np.ndarray, y: np.ndarray, seed: int = 0,
                     grid=RIDGE_GRID) -> tuple[np.ndarray, float, float]:
  """A ridge map from ratings-only factors x to decoder inputs y, fitted on visible items.

  λ is chosen from `grid` by the squared error on a random tenth of the rows,
  then the map is refitted on all of them.

  Returns:
    (W [K+1, D], chosen λ, its held-out mean squared error per coordinate).
  """
  rng = np.random.default_rng(seed)
  perm = rng.permutation(len(x))
  held, fit = perm[:max(1, len(x) // 10)], perm[max(1, len(x) // 10):]
  apply = lambda w, rows: _with_bias(rows) @ w
  errors = [float(np.mean((apply(fit_ridge(x[fit], y[fit], lam), x[held]) - y[held]) ** 2))
            for lam in grid]
  best = int(np.argmin(errors))
  return fit_ridge(x, y, grid[best]), float(grid[best]), errors[best]


def _with_bias(x: np.ndarray) -> np.ndarray:
  """[n, K] -> [n, K+1] with a column of ones (the ridge map's bias)."""
  return np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1)


def _batched_codes(config: Config, params, aux, items, batch_size: int = 512) -> dict:
  """`decoder_codes` of the clean titles of `items`, batch by batch, as numpy arrays."""
  parts = [decoder_codes(config, params, aux["tokens"][items[s:s + batch_size]],
                         aux["lengths"][items[s:s + batch_size]])
           for s in range(0, len(items), batch_size)]
  if not parts:
    empty = np.zeros((0, config.factors), np.float32)
    return {"decoder_input": empty, "gamma": empty}
  return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ("decoder_input", "gamma")}


def decoder_codes(config: Config, params, tokens, lengths) -> dict:
  """θ_j, E[tanh(θ_j)] (the decoder's input) and γ_j of clean titles [B, L] (no noise).

  Decoding from v_j stands for decoding from E[tanh(θ_j)] only when γ_j (which v_j
  tracks) lives in the same space: exactly so for ``pooling="last"`` (γ_j =
  tanh(θ_j)), not in general for beta-pooling (γ_j = tanh(W_1 f_{a,b} + b_1)).
  """
  net = network(config)
  tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
  out = net.apply(params, tokens, lengths, tokens, lengths, with_logits=False)
  return {"theta": out["theta"], "gamma": out["gamma"],
          "decoder_input": crae_nn.robust_tanh(out["theta"], config.precision)}


def visible_title_reconstruction(config: Config, params, aux, n_items: int = 1000,
                                 max_length: int = 20, seed: int = 0,
                                 batch_size: int = 256) -> dict:
  """Titles decoded from E[tanh(θ_j)] of visible items' own clean titles (the decoder's ceiling).

  Also reports how well γ_j matches the decoder's input on those items (mean
  cosine), which is what generation from v_j relies on.

  Returns:
    {"items", "candidates", "references", "cosine_gamma_decoder_input",
     "norm_gamma", "norm_decoder_input"}.
  """
  visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
  rng = np.random.default_rng(seed)
  items = np.sort(rng.choice(visible, min(n_items, len(visible)), replace=False))
  codes = _batched_codes(config, params, aux, items, batch_size)
  code, gamma = codes["decoder_input"], codes["gamma"]
  cos = np.sum(code * gamma, 1) / np.maximum(
      np.linalg.norm(code, axis=1) * np.linalg.norm(gamma, axis=1), 1e-12)
  generated = generate_titles(config, params, code, max_length)
  return {"items": items, "candidates": titles_lib.as_lists(generated),
          "references": [[r] for r in titles_lib.as_lists(aux["titles"][items])],
          "cosine_gamma_decoder_input": float(cos.mean()),
          "norm_gamma": float(np.linalg.norm(gamma, axis=1).mean()),
          "norm_decoder_input": float(np.linalg.norm(code, axis=1).mean())}


def hidden_item_titles(config: Config, params, factors, aux, method: str = "decoder",
                       max_length: int = 20) -> dict:
  """Titles produced for the hidden-content items, with their true titles (for BLEU).

  Score them with ``recjax.eval.bleu.corpus_bleu(out["candidates"], out["references"])``
  (models sit below `recjax.eval`, so the scoring is the caller's).

  Args:
    config: the model's config (``hidden_content_fraction`` > 0).
    params, factors: a trained state.
    aux: `prepare`'s output.
    method: "decoder" (CRAE: greedy decoding from v_j), "decoder_rescaled"
      (the same from v_j rescaled to the mean norm of the visible items' γ_j:
      a hidden item's v_j has prior mean 0, so λ_v shrinks it far below the
      codes the decoder was trained on), "nearest" (the title of the
      visible item with the nearest v_j) or "nearest_cosine" (the same by
      cosine: the direction of v_j, not its shrunk norm), or "decoder_regressed"
      (decoding from a ridge map of v_j into the decoder's input space, fitted on
      the visible items between their ratings-only factors and their titles'
      E[tanh θ_j]: not in the paper; it asks whether the ratings carry the code
      at all when v_j itself is not in the decoder's space).
    max_length: longest generated title.

  Returns:
    {"items": int [n] the hidden items with a non-empty title, "candidates":
     n id lists, "references": n lists, each holding the item's true title}.
  """
  hidden = np.flatnonzero(aux["hidden"] & (aux["lengths"] > 0))
  if len(hidden) == 0:
    raise ValueError("hidden_item_titles: no hidden-content item with a title; set "
                     "hidden_content_fraction > 0")
  v = np.asarray(factors["V"])
  if method == "decoder":
    generated = generate_titles(config, params, v[hidden], max_length)
  elif method == "decoder_rescaled":
    visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
    target = np.linalg.norm(np.asarray(factors["gamma"])[visible], axis=1).mean()
    norms = np.linalg.norm(v[hidden], axis=1, keepdims=True)
    generated = generate_titles(config, params, v[hidden] * (target / np.maximum(norms, 1e-12)),
                                max_length)
  elif method == "decoder_regressed":
    visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
    x = ratings_only_factors(config, factors, aux)
    w, _, _ = ratings_to_codes(x[visible],
                               _batched_codes(config, params, aux, visible)["decoder_input"])
    z = _with_bias(x[hidden]) @ w
    generated = generate_titles(config, params, z, max_length)
  elif method in ("nearest", "nearest_cosine"):
    visible = np.flatnonzero(~aux["hidden"])
    generated = nearest_neighbour_titles(v[hidden], v[visible], aux["titles"][visible],
                                         "cosine" if method == "nearest_cosine" else "euclidean")
  else:
    raise ValueError(f"hidden_item_titles: method must be one of {TITLE_METHODS}, "
                     f"got {method!r}")
  return {"items": hidden, "candidates": titles_lib.as_lists(generated),
          "references": [[r] for r in titles_lib.as_lists(aux["titles"][hidden])]}
