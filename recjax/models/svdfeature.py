"""SVDFeature-style feature-based MF (Chen et al. 2012), the CRAE paper's baseline.

SVDFeature builds each side's factor from the factors of its features.  As in
the CRAE paper, items are described by their bag of words (plus their id) and
users by their id:

  v_j = Σ_w x̃_jw e_w + d_j,      score_ij = u_iᵀ v_j,

where x̃_j is the item's word-count row normalized (`content_norm`, default
unit l2 norm, so long and short documents weigh alike), e_w a factor per word
and d_j a free per-item offset (the item-id feature; `item_offset=False` drops
it).  Training minimizes the weighted implicit loss of WMF/CTR,

  Σ_ij C_ij (p_ij − u_iᵀv_j)² + λ_u ||U||² + λ_e ||E||² + λ_d ||D||²,

(C = a on clicks, b elsewhere) by alternating exact block updates instead of
SVDFeature's SGD over sampled entries:

* U ← implicit half sweep against V (exact, as WMF);
* (E, D) ← the least-squares problem given U.  Its normal equations are
  linear in (E, D) but couple every word with every item (W·K + I·K unknowns:
  2.3M for citeulike-t), so they are solved matrix-free by `word_cg_steps`
  conjugate-gradient steps warm-started at the current (E, D), one jitted call
  (`solve_word_factors`).  Each product costs O(nnz(X)·K + nnz(R)·K + I·K²)
  through sparse gathers and segment sums; CG from a warm start never raises
  the objective, so the loss falls from step to step, and with enough steps
  this is the exact block update.

Items with no training clicks get their factor from their words: at the
optimum d_j = −(b UᵀU + λ_d I)⁻¹ b UᵀU x̃_jᵀE, so v_j = (b UᵀU + λ_d I)⁻¹ λ_d x̃_jᵀE,
the content part slightly shrunk by the b-weighted zeros.
Users are folded in at scoring time by one exact solve against V.  The word
factors' table is sized by `n_words`, a config field, so that a run's factor
shapes are set by its config: it must be at least the vocabulary size
(`init` and `prepare` check it; rows beyond the vocabulary are never fitted).  Global and per-item biases of SVDFeature are not modeled.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.ops import als, als_core


@dataclasses.dataclass(frozen=True)
class Config(als_core.ALSConfig):
  """SVDFeature's fields; the U half sweep's solver fields (``cg_steps`` among them) and the
  fold-in come from `als_core.ALSConfig`."""

  dim: int = 50  # K (the CRAE paper's setting).
  a: float = 1.0  # Confidence on clicks (CRAE: α = 1).
  b: float = 0.01  # Confidence elsewhere (CRAE: β = 0.01).
  reg_u: float = 0.1  # λ_u.
  reg_words: float = 1.0  # λ_e on the word factors.
  reg_offset: float = 10.0  # λ_d on the per-item offsets.
  item_offset: bool = True  # Add the free per-item offset d_j (SVDFeature's item-id feature).
  content_norm: str = "l2"  # Item rows scaled to unit "l2" or "l1" norm, "sqrt" (1/√nnz), or "none".
  n_words: int = 20_000  # Rows of the word-factor table (>= the vocabulary; citeulike-t: 20,000).
  word_cg_steps: int = 20  # CG steps on (E, D) per block step.

  def __post_init__(self):
    check_config(self, "svdfeature", **als_core.merge_rules(als_core.ALS_RULES, {
        "at_least": {"dim": 1, "b": 0.0, "reg_u": 0.0, "reg_words": 0.0, "reg_offset": 0.0,
                     "n_words": 1, "word_cg_steps": 1},
        "above": {"a": 0.0},
        "choices": {"content_norm": ("l2", "l1", "sqrt", "none")}}))


def normalize_content(content: sp.spmatrix, how: str) -> sp.csr_matrix:
  """Rows of the item-word matrix as feature weights x̃_j (float32 csr)."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  x.eliminate_zeros()
  lengths = np.diff(x.indptr)
  if how == "l2":
    norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
  elif how == "l1":
    norm = np.asarray(abs(x).sum(axis=1)).ravel()
  elif how == "sqrt":
    x.data[:] = 1.0
    norm = np.sqrt(lengths.astype(np.float64))
  elif how == "none":
    return x
  else:
    raise ValueError(f"svdfeature: content_norm must be 'l2', 'l1', 'sqrt' or 'none', got {how!r}")
  scale = np.where(norm > 0, 1.0 / np.maximum(norm, 1e-30), 0.0).astype(np.float32)
  x.data *= np.repeat(scale, lengths)
  return x


def _coo(matrix: sp.spmatrix) -> dict:
  m = sp.coo_matrix(matrix)
  return {"row": jnp.asarray(m.row, jnp.int32), "col": jnp.asarray(m.col, jnp.int32),
          "val": jnp.asarray(m.data, jnp.float32)}


def item_factors(words: jax.Array, offsets: jax.Array, content: dict) -> jax.Array:
  """V = X̃E + D from the content's COO arrays (row = item, col = word, val = x̃)."""
  gathered = content["val"][:, None] * jnp.take(words, content["col"], axis=0)
  return offsets + jax.ops.segment_sum(gathered, content["row"], num_segments=offsets.shape[0])


def _words_transpose(y: jax.Array, content: dict, n_words: int) -> jax.Array:
  """X̃ᵀY [W, K]."""
  gathered = content["val"][:, None] * jnp.take(y, content["row"], axis=0)
  return jax.ops.segment_sum(gathered, content["col"], num_segments=n_words)


@functools.partial(jax.jit, static_argnames=("steps", "use_offset"))
def solve_word_factors(u, words, offsets, clicks, content, *, a, b, reg_words, reg_offset,
                       steps, use_offset=True):
  """`steps` CG steps on the normal equations of (E, D) given U (pure; warm start (E, D)).

  With A_j = b UᵀU + (a − b) Σ_{i∈obs(j)} u_i u_iᵀ and B_j = a Σ_{i∈obs(j)} u_i,
  the gradient of the loss in v_j is 2(A_j v_j − B_j), so the equations are

    X̃ᵀ A(X̃E + D) + λ_e E = X̃ᵀ B,     A(X̃E + D) + λ_d D = B.

  Args:
    u: [n_users, K] user factors.
    words: [W, K] current word factors E.
    offsets: [I, K] current item offsets D (ignored and returned as-is when
      `use_offset` is False).
    clicks: COO dict of the click matrix (row = user, col = item).
    content: COO dict of x̃ (row = item, col = word, val = weight).
    a, b: confidences; reg_words, reg_offset: λ_e, λ_d.
    steps: CG iterations (static).
    use_offset: whether D is a variable.

  Returns:
    (E, D) after `steps` CG iterations.
  """
  n_words, n_items = words.shape[0], offsets.shape[0]
  gram = b * (u.T @ u)
  uc = jnp.take(u, clicks["row"], axis=0)  # [nnz, K] factors of each click's user.
  rhs_items = a * jax.ops.segment_sum(uc, clicks["col"], num_segments=n_items)

  def apply_a(v):
    along = jnp.sum(uc * jnp.take(v, clicks["col"], axis=0), axis=-1)
    return v @ gram + (a - b) * jax.ops.segment_sum(uc * along[:, None], clicks["col"],
                                                    num_segments=n_items)

  def hess(x):
    e, d = x
    y = apply_a(item_factors(e, d if use_offset else jnp.zeros_like(d), content))
    he = _words_transpose(y, content, n_words) + reg_words * e
    hd = y + reg_offset * d if use_offset else jnp.zeros_like(d)
    return he, hd

  rhs = (_words_transpose(rhs_items, content, n_words),
         rhs_items if use_offset else jnp.zeros_like(offsets))
  dot = lambda p, q: sum(jnp.vdot(s, t) for s, t in zip(p, q))
  x0 = (words, offsets if use_offset else jnp.zeros_like(offsets))
  r0 = jax.tree.map(jnp.subtract, rhs, hess(x0))
  tiny = jnp.finfo(words.dtype).tiny

  def body(_, carry):
    x, r, p, rs = carry
    hp = hess(p)
    php = dot(p, hp)
    alpha = jnp.where(php > tiny, rs / jnp.where(php > tiny, php, 1.0), 0.0)
    x = jax.tree.map(lambda s, t: s + alpha * t, x, p)
    r = jax.tree.map(lambda s, t: s - alpha * t, r, hp)
    rs_new = dot(r, r)
    beta = jnp.where(rs > tiny, rs_new / jnp.where(rs > tiny, rs, 1.0), 0.0)
    p = jax.tree.map(lambda s, t: s + beta * t, r, p)
    return x, r, p, rs_new

  x, *_ = jax.lax.fori_loop(0, steps, body, (x0, r0, r0, dot(r0, r0)))
  e, d = x
  return e, (d if use_offset else offsets)


def make(config: Config) -> Model:

  def check_content(item_content: sp.spmatrix, n_items: int) -> None:
    if item_content.shape[0] != n_items:
      raise ValueError(f"svdfeature: item_content has {item_content.shape[0]} rows for "
                       f"{n_items} items")
    if item_content.shape[1] > config.n_words:
      raise ValueError(f"svdfeature: the content has {item_content.shape[1]} words but "
                       f"n_words={config.n_words}; set n_words >= {item_content.shape[1]}")

  def init(key, train: sp.csr_matrix, item_content: sp.spmatrix | None = None):
    if item_content is not None:
      check_content(item_content, train.shape[1])
    ku, ke = jax.random.split(key)
    k = config.dim
    u = config.init_scale * jax.random.normal(ku, (train.shape[0], k), jnp.float32)
    e = config.init_scale * jax.random.normal(ke, (config.n_words, k), jnp.float32)
    zeros = jnp.zeros((train.shape[1], k), jnp.float32)
    # V starts at 0 (the first block step sets V = X̃E + D); U is re-solved first.
    return {}, {"U": u, "E": e, "D": zeros, "V": zeros}

  def prepare(train: sp.csr_matrix, item_content: sp.csr_matrix, mesh=None):
    check_content(item_content, train.shape[1])
    x = normalize_content(item_content, config.content_norm)
    return {**als_core.prepare(train, config, mesh), "clicks": _coo(train), "content": _coo(x)}

  def block_step(params, factors, aux, key):
    del params, key
    v = item_factors(factors["E"], factors["D"], aux["content"])
    u = als.half_sweep(factors["U"], v, aux["users"], reg=config.reg_u, mesh=aux["mesh"],
                       **als_core.sweep_kwargs(config))
    e, d = solve_word_factors(u, factors["E"], factors["D"], aux["clicks"], aux["content"],
                              a=config.a, b=config.b, reg_words=config.reg_words,
                              reg_offset=config.reg_offset, steps=config.word_cg_steps,
                              use_offset=config.item_offset)
    return {"U": u, "E": e, "D": d, "V": item_factors(e, d, aux["content"])}

  score, score_padded, serving_factors = als_core.scorers(config)
  return Model(name="svdfeature", config=config, init=init, prepare=prepare,
               block_step=block_step, score=score, score_padded=score_padded,
               serving_factors=serving_factors, train_defaults={"epochs": 20},
               side_keys=("item_content",), item_vectors=als_core.factor_v,
               item_vectors_doc="SVDFeature item factors V = X̃E + D")
