"""The ALS model core: what every factor model trained by implicit ALS shares.

WMF, CMF, CTR and SVDFeature, and the hybrids CDL, CVAE, CRAE and DeepMusic,
all keep user factors U [n_users, K] and item factors V [n_items, K], solve
them by the half sweeps of `recjax.ops.als` and fold users in by one exact
solve against V.  The hybrids add a prior mean m_j on each item factor (CTR's
topic proportions θ_j, CDL's SDAE code, CVAE's encoder mean μ_j, CRAE's title
code γ_j, CMF's content term), so one block step minimizes

  Σ_ij C_ij (p_ij − u_iᵀv_j)² + λ_u Σ_i ||u_i||² + λ_v Σ_j ||v_j − m_j||²

exactly in U (no prior) and then in V (prior mean m), with C_ij = a on clicks
and b elsewhere.  This module holds that core once; a model keeps only its own
terms (the network that gives m, the word factors, the LDA step).

Config.  A model's frozen ``Config`` inherits the fields (flat, so ``--set
solver=cg`` still names them directly):

* `ALSConfig`: solver, cg_steps, init_scale, bucket_growth, max_buckets,
  max_bytes_per_call, fold_in_chunk (every ALS model);
* `PriorALSConfig(ALSConfig)`: adds a, b, reg_u (λ_u), reg_v (λ_v), for the
  models with the objective above (a subclass redeclares a field to change
  its default, e.g. CDL's ``reg_u: float = 1.0``);
* `ConfidenceConfig`: confidence, alpha, epsilon (Hu et al.'s confidence from
  counts; WMF and CMF), mixed in beside one of the above.

Ops never import models, so the validation rules are plain dicts of
`recjax.models.base.check_config`'s keyword arguments (`ALS_RULES`,
`PRIOR_ALS_RULES`, `CONFIDENCE_RULES`); a Config merges them with its own:

  def __post_init__(self):
    check_config(self, "ctr", **als_core.merge_rules(
        als_core.PRIOR_ALS_RULES, {"at_least": {"dim": 1, "theta_steps": 0}}))

Functions (a ``config`` is an instance of one of the classes above, with an
integer ``dim``, the latent dimension K, and the confidences ``a`` and ``b``;
a model on plain `ALSConfig` declares a and b itself, and, without reg_u /
reg_v, passes its λ to `sweep` and `scorers`, as WMF does with its one
``reg``):

* `init_factors(key, train, config, prior=None)`: U, V ~ N(0, init_scale²);
  with ``prior="mu"`` (the factor's name) also the prior mean (zeros) and
  ``rated`` (`rated_items`).
* `prepare(train, config, mesh=None)`: ``{"users", "items", "mesh"}``, the
  length-bucketed rows of the click matrix and of its transpose
  (`als.bucketed_sides`) and the run's mesh, which `sweep` splits rows over.
* `sweep(u, v, sides, config, prior=None, extra_gram=None)`: one block step,
  U then V, returning (U, V); `prior_step` wraps it for a factors dict that
  stores the prior mean it used.
* `objective(factors, train, config, prior)`: that objective, exactly (float64).
* `item_vectors(v, prior, rated)`: v_j for items with a training click, m_j
  for the others: the hybrids' v†_j + m_j (v†_j = v_j − m_j, or 0 for an item
  training never clicked: "out-of-matrix" items are scored by their content).
* `scorers(config, item_vectors)`: the model's ``(score, score_padded,
  serving_factors)``: fold each user in against V by one exact solve, score
  against ``item_vectors(params, factors)`` (dense rows, or padded item lists
  for serving, with ``als.fold_in_constants`` computed once at load).
  `factor_v` (V itself: WMF, CMF, CTR, SVDFeature, whose unclicked items
  already solve to their content) and `prior_item_vectors` (`item_vectors`
  of the hybrids that keep their prior mean in the factors) are the usual ones.

Everything that runs per user is pure and jittable (``score``,
``score_padded``, `item_vectors`); `sweep` and `prepare` are host drivers that
call the jitted kernels of `recjax.ops.als`, as a block step does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from recjax.ops import als

ItemVectors = Callable[[Any, dict], jax.Array]  # (params, factors) -> [n_items, K]


@dataclasses.dataclass(frozen=True)
class ALSConfig:
  """The solver fields of every model trained by implicit ALS."""

  solver: str = "cholesky"  # "cholesky" (exact) or "cg" (conjugate gradient warm-started at the current factors).
  cg_steps: int = 3  # CG steps per row and half sweep when solver == "cg".
  init_scale: float = 0.01  # Standard deviation of the random initial factors.
  bucket_growth: float = 1.25  # Ratio of successive padded row lengths (finer: less padding, more compiles).
  max_buckets: int | None = None  # At most this many of those lengths per side, the least padding (fewer compiles); None: all.
  max_bytes_per_call: int = 8 << 20  # Memory of one jitted solve (sets the rows per call of each bucket); 8 MB: K=200 exact sweeps ~2x faster than 256 MB on gowalla, 0.3 GB lower peak, same factors.
  fold_in_chunk: int = 512  # Items per step when folding users in (bounds a [batch, chunk, K] temporary).


@dataclasses.dataclass(frozen=True)
class PriorALSConfig(ALSConfig):
  """`ALSConfig` plus the weights of the implicit objective with a prior mean on V."""

  a: float = 1.0  # Confidence C_ij on clicks (the CVAE/CRAE papers' a = 1).
  b: float = 0.01  # Confidence C_ij elsewhere (0.01).
  reg_u: float = 0.1  # λ_u on the user factors.
  reg_v: float = 10.0  # λ_v, the pull of v_j toward its prior mean.


@dataclasses.dataclass(frozen=True)
class ConfidenceConfig:
  """Confidence from the stored counts r (Hu et al. §4), as `als.confidence_of` reads it."""

  confidence: str = "constant"  # "constant" (a on stored entries), "linear" (b + α r) or "log" (b + α log(1 + r/ε)).
  alpha: float = 40.0  # α of "linear"/"log" confidence (> 0; Hu et al.'s 40); unused by "constant".
  epsilon: float = 1.0  # ε of "log" confidence (> 0); unused otherwise.


# Options of the hybrids whose authors' code departs from their paper (CVAE, issue 20):
# the user solve's b VᵀV over every item ("all", the paper's objective) or only over items
# with a training click ("clicked", eelxpeng/CollaborativeVAE lib/cvae.py pmf_estimate);
# items without a click scored by their prior mean ("prior", §2.4 of the CVAE paper) or by
# their ALS factor v_j = (b UᵀU + λ_v I)⁻¹ λ_v m_j ("factor", the authors' code).
USER_GRAMS = ("all", "clicked")
UNCLICKED_SCORES = ("prior", "factor")

ALS_RULES = {"at_least": {"cg_steps": 1, "max_bytes_per_call": 1, "fold_in_chunk": 1,
                          "max_buckets": 1},
             "above": {"init_scale": 0.0, "bucket_growth": 1.0},
             "choices": {"solver": als.SOLVERS}}
# α and ε are checked per confidence by `als.check_confidence` (they only matter off "constant").
CONFIDENCE_RULES = {"choices": {"confidence": als.CONFIDENCES}}


def merge_rules(*rules: dict) -> dict:
  """`check_config` keyword arguments merged left to right (dicts joined, sequences chained)."""
  out: dict = {}
  for rule in rules:
    for name, value in rule.items():
      if isinstance(value, dict):
        out[name] = {**out.get(name, {}), **value}
      else:
        out[name] = (*out.get(name, ()), *value)
  return out


PRIOR_ALS_RULES = merge_rules(ALS_RULES, {"at_least": {"b": 0.0, "reg_u": 0.0, "reg_v": 0.0},
                                          "above": {"a": 0.0}})


def confidence_kwargs(config) -> dict:
  """``confidence``, ``alpha``, ``epsilon`` of a `ConfidenceConfig`; {} for any other config."""
  if not isinstance(config, ConfidenceConfig):
    return {}
  return dict(confidence=config.confidence, alpha=config.alpha, epsilon=config.epsilon)


def sweep_kwargs(config) -> dict:
  """The keyword arguments of `als.half_sweep` that a config fixes (all but ``reg`` and ``prior``)."""
  return dict(a=config.a, b=config.b, solver=config.solver, cg_steps=config.cg_steps,
              max_bytes_per_call=config.max_bytes_per_call, **confidence_kwargs(config))


def rated_items(train: sp.spmatrix) -> jax.Array:
  """bool [n_items]: whether each item (column) has at least one training click."""
  return jnp.asarray(np.diff(sp.csc_matrix(train).indptr) > 0)


def init_factors(key: jax.Array, train: sp.spmatrix, config, prior: str | None = None) -> dict:
  """Random U [n_users, K] and V [n_items, K], N(0, init_scale²), K = ``config.dim``.

  With ``prior`` (the name a model keeps its prior mean under, e.g. "mu"),
  also ``factors[prior]`` = zeros [n_items, K] (the last block step's prior
  mean) and ``factors["rated"]`` = `rated_items` (fixed for the run).
  """
  factors = als.init_factors(key, train.shape, config.dim, config.init_scale)
  if prior is not None:
    factors[prior] = jnp.zeros((train.shape[1], config.dim), jnp.float32)
    factors["rated"] = rated_items(train)
  return factors


def prepare(train: sp.spmatrix, config, mesh=None) -> dict:
  """{"users", "items", "mesh"}: length buckets of the click matrix's rows and columns.

  ``mesh`` is the run's device mesh (the runner hands it to a model's
  ``prepare``; None: one device); `sweep` splits each chunk's rows over its
  "data" axis.
  """
  return {**als.bucketed_sides(train, config.bucket_growth, config.max_buckets), "mesh": mesh}


def user_side(v: jax.Array, clicked: jax.Array | None) -> jax.Array:
  """V as the user solve sees it: unchanged, or with the rows of items outside `clicked`
  (bool [n_items]) zeroed, so b VᵀV covers only the clicked items (``user_gram="clicked"``).

  A user's own terms Σ_{j∈x} (c_j − b) v_j v_jᵀ and Σ_{j∈x} c_j v_j read only the user's
  items; in training those all have a click, so only the shared Gram changes.
  """
  return v if clicked is None else jnp.where(clicked[:, None], v, jnp.zeros_like(v))


def sweep(u, v, sides: dict, config, *, prior=None, extra_gram=None, reg_u: float | None = None,
          reg_v: float | None = None, user_items: jax.Array | None = None
          ) -> tuple[jax.Array, jax.Array]:
  """One block step of implicit ALS: U against V (no prior), then V against the new U.

  Args:
    u: [n_users, K] current user factors (CG's starting point).
    v: [n_items, K] current item factors.
    sides: `prepare`'s buckets (and its ``"mesh"``, over which the rows of
      each chunk are split; absent or None: one device).
    config: the model's config (a, b, the solver fields, any confidence).
    prior: [n_items, K] prior mean of the item factors, or None for 0.
    extra_gram: optional [K, K] added to every item's system (CMF's μ ZᵀZ).
    reg_u, reg_v: λ of each side; default ``config.reg_u`` / ``config.reg_v``
      (WMF passes its one ``reg`` as both).
    user_items: optional bool [n_items]: the U half sweep's b VᵀV covers only these
      items (`user_side`); None: all (the objective above).

  Returns:
    (U, V), each half sweep exact in its block (or `cg_steps` CG steps).
  """
  kw = sweep_kwargs(config)
  reg_u = config.reg_u if reg_u is None else reg_u
  reg_v = config.reg_v if reg_v is None else reg_v
  kw["mesh"] = sides.get("mesh")
  u = als.half_sweep(u, user_side(v, user_items), sides["users"], reg=reg_u, **kw)
  v = als.half_sweep(v, u, sides["items"], reg=reg_v, prior=prior, extra_gram=extra_gram, **kw)
  return u, v


def prior_step(factors: dict, sides: dict, config, prior: jax.Array, key: str = "mu") -> dict:
  """`sweep` with item prior mean `prior`, kept as ``factors[key]`` beside the new U and V.

  The other entries of `factors` (``rated``) pass through unchanged, so the
  scores always pair V with the prior mean it was solved against.  A config
  with ``user_gram="clicked"`` solves U against the clicked items' Gram only.
  """
  clicked = factors["rated"] if getattr(config, "user_gram", "all") == "clicked" else None
  u, v = sweep(factors["U"], factors["V"], sides, config, prior=prior, user_items=clicked)
  return {**factors, "U": u, "V": v, key: prior}


def objective(factors: dict, train: sp.spmatrix, config, prior=None) -> float:
  """The objective a block step minimizes, at ``factors["U"]``, ``factors["V"]``, exactly.

  Σ_ij C_ij (p_ij − u_iᵀv_j)² + λ_u Σ_i ||u_i||² + λ_v Σ_j ||v_j − m_j||² with
  m = `prior` (None: 0), in float64 on the host (`als.implicit_objective`).
  The papers write it with C/2 and λ/2: halve it to compare.
  """
  return als.implicit_objective(factors["U"], factors["V"], train, a=config.a, b=config.b,
                                reg_x=config.reg_u, reg_y=config.reg_v, prior_y=prior,
                                **confidence_kwargs(config))


def item_vectors(v: jax.Array, prior: jax.Array, rated: jax.Array) -> jax.Array:
  """v_j where ``rated[j]`` (v†_j + m_j with v†_j = v_j − m_j), else the prior mean m_j.

  Pure and jittable.  An item without a training click has no offset v†_j in
  the hybrids' generative models, so it is scored from its content alone.
  """
  return jnp.where(rated[:, None], v, prior)


def factor_v(params, factors: dict) -> jax.Array:
  """``item_vectors`` of a plain factor model: the item factors V."""
  del params
  return factors["V"]


def prior_item_vectors(key: str = "mu") -> ItemVectors:
  """``item_vectors(params, factors)`` of a hybrid keeping its prior mean as ``factors[key]``."""

  def vectors(params, factors):
    del params
    return item_vectors(factors["V"], factors[key], factors["rated"])

  return vectors


def scorers(config, vectors: ItemVectors = factor_v, *, reg: float | None = None,
            clicked_gram: bool = False):
  """``(score, score_padded, serving_factors)`` of a model that folds users in against V.

  A user x (a dense row [I], or a padded item list for serving) is solved
  exactly against ``factors["V"]`` with confidences a (or the config's
  per-entry form), b and λ = `reg` (default ``config.reg_u``):
  u = (b VᵀV + Σ_{j∈x} (c_j − b) v_j v_jᵀ + λI)⁻¹ Σ_{j∈x} c_j v_j, then scored
  u @ vectors(params, factors)ᵀ.  ``serving_factors`` adds
  `als.fold_in_constants` under ``factors["serving"]`` once at load, which
  ``score_padded`` then uses (the same scores with or without it).

  Args:
    config: the model's config (a, b, fold_in_chunk, any confidence; reg_u
      unless `reg` is given).
    vectors: ``(params, factors) -> [I, K]``, what the user factor multiplies.
    reg: λ of the fold-in; default ``config.reg_u``.
    clicked_gram: fold in against `user_side` (V with the rows of items
      without a training click, ``factors["rated"]``, zeroed), as a block step
      with ``user_gram="clicked"`` solves U; such an item in a served user's
      list then adds nothing to the user's factor.

  Returns:
    score(params, factors, inputs [B, I]) -> [B, I] (pure, jittable);
    score_padded(params, factors, items, values, mask) -> [B, I] (pure, jittable);
    serving_factors(params, factors) -> factors.
  """
  reg = config.reg_u if reg is None else reg
  conf = confidence_kwargs(config)
  a, b = config.a, config.b

  def against(factors):
    return user_side(factors["V"], factors["rated"] if clicked_gram else None)

  def score(params, factors, inputs):
    u = als.fold_in_dense(against(factors), inputs, a=a, b=b, reg=reg,
                          item_chunk=config.fold_in_chunk, **conf)
    return u @ vectors(params, factors).T

  def score_padded(params, factors, items, values, mask):
    u = als.fold_in_padded(against(factors), items, values, mask, a=a, b=b, reg=reg,
                           constants=factors.get("serving"), **conf)
    return u @ vectors(params, factors).T

  def serving_factors(params, factors):
    del params
    return {**factors, "serving": als.fold_in_constants(against(factors), b, reg)}

  return score, score_padded, serving_factors
