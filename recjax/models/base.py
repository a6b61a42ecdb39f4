"""The model protocol the runner speaks.

A model is a bundle of pure functions over explicit state (see DESIGN.md):

* ``init(key, train) -> (params, factors)``: ``params`` is the pytree optax
  trains (may be empty ``{}``); ``factors`` holds closed-form state (EASE's
  item-item weights, ALS's U/V, popularity counts) that never passes through
  optax.  A model with ``side_keys`` is called ``init(key, train, **side)``:
  its network may be sized by the side information.
* ``prepare(train, **side) -> aux``: host-side, once per run (whenever it is
  set): whatever the block step or the batch source needs from the training matrix
  (a Gram matrix, bucketed rows, scaled item content).
  ``side`` carries the side information the model names in ``side_keys``
  (e.g. ``item_content``: items x words, rows aligned with the split's item
  columns).  A ``prepare`` with a keyword parameter ``mesh`` is also handed the
  run's device mesh (``mesh=run.mesh``, `recjax.ops.mesh`); the ALS models keep
  it in ``aux`` (``aux["mesh"]``, `recjax.ops.als_core.prepare`), so that their
  block step splits each chunk's rows over the mesh's ``data`` axis.  Optional.
* ``block_step(params, factors, aux, key) -> factors``: one closed-form update
  per epoch.  It is called by the runner *outside* ``jit``: a closed-form step
  may need host staging (EASE's in-place LAPACK inverse on CPU), so the model
  composes it from jitted kernels in ``recjax.ops``.  Optional.
* ``loss(params, factors, batch, key, phase) -> (loss, aux_metrics)``:
  differentiable in ``params``; ``batch`` is one dict of the model's
  ``batch_source`` (default `batching.DenseRows`: ``rows`` [B, I] float32,
  ``mask`` [B] bool, ``index`` [B] int32 training row ids, -1 on padding);
  ``phase`` says where the run stands: ``phase["step"]`` (int32, optax updates
  made so far), ``phase["epoch"]`` (int32, 1-based) and the values of the
  model's ``phase(epoch)``, all scalars traced by ``jit`` (one compiled step for
  every epoch).  The runner jits the optax step around it.  Optional.
* ``batch_source``: a `recjax.data.batching.BatchSource`: what the loss trains
  on each epoch (dense user rows, padded item lists, item content, user
  sequences), built host-side from the training matrix and ``prepare``'s
  output; never examples with a schedule copied into them.
* ``phase(epoch) -> dict[str, float | int]``: optional, host-side: the small
  per-epoch values of the model's training schedule (a pretraining stage, a KL
  weight, a prior weight); the same keys every epoch, ints become int32 and
  floats float32 scalars in the loss's ``phase``.
* ``update(params, opt_state, factors, batch, key, phase) -> (params, opt_state,
  sums, n)``: optional: the model's own optimization step, for state a plain
  ``value_and_grad`` + optax step cannot carry (the collaborative RNN's
  per-user rows); ``sums`` are the batch's metric sums (``"loss"`` and any
  other, each weighted by its examples) and ``n`` their count.  Default:
  `gradient_update` of ``loss`` and ``optimizer``.
* ``score(params, factors, inputs) -> scores``: pure and jittable; ``inputs``
  are dense fold-in rows [B, I]; returns [B, I] scores (higher is better).
  Users that training never saw are folded in here.  What ``inputs`` are is
  the evaluation protocol's to say: the sequence protocol
  (`recjax.eval.sequence`) hands the sequence models (n-grams, HMM, the
  collaborative RNNs) a batch of histories and tails and reads log P of each
  tail item; such a model cannot rank an unordered row, so serving refuses it.
* ``score_padded(params, factors, items, values, mask) -> scores``: optional,
  pure and jittable: the same [B, I] scores as ``score`` on the dense rows that
  the padded item lists spell (``items`` int32 [B, L], ``values`` [B, L],
  ``mask`` bool [B, L], False on padding).  Serving uses it so that folding a
  user in costs O(their items), not O(catalog) (ALS fold-in, EASE's x @ B).
* ``serving_factors(params, factors) -> factors``: optional: the factors plus
  arrays derived from them once when a model is loaded for serving (e.g. the
  Gram b·VᵀV every fold-in needs); ``score``/``score_padded`` must give the
  same scores with and without them.
* ``item_vectors(params, factors) -> [I, d]``: pure and jittable; one vector per
  item column, the model's own item representation (EASE's weight columns,
  ALS item factors, an autoencoder's decoder embeddings).  Similar items are
  ranked by the cosine of these vectors; ``item_vectors_doc`` says in a few
  words what they are.  Optional: a model without one (popularity) cannot
  answer similar-item queries.

* ``partition(params, factors) -> (param_specs, factor_specs)``: optional: how
  the state is laid out on the run's mesh (`recjax.ops.mesh`): each of the two is
  a tree of `jax.sharding.PartitionSpec` with the structure of ``params`` /
  ``factors`` (or a prefix of it: one spec for a subtree), or None (replicated).
  A spec names `recjax.ops.mesh.MODEL_AXIS` on the item axis of the arrays that
  grow with the catalog (`item_rows` for [I] and [I, H], `item_cols` for
  [H, I]), so ``TrainConfig.model_shards`` > 1 splits them over devices; the
  optimizer state follows its parameters.  The specs are layouts only: the
  model's functions are the same (jit inserts the collectives), and with one
  model shard they are replicas.  Default (None): everything replicated.
* ``with_run_length(train, batch_size, epochs) -> Model``: optional: the model
  with its run-length-dependent settings resolved for this run (Mult-VAE's and
  SVAE's ``total_anneal_steps=None``: β's schedule derived from the number of
  optax updates the run makes).  The runner calls it before writing
  config.json, with the configured (not device-rounded) batch size and the
  epochs of the run that started the workdir, so the resolved config is a
  deterministic function of the experiment and a resumed run derives the same.
* ``schedule_report(updates, final) -> str | None``: optional: one line on where
  the model's schedule stands after ``updates`` optax updates (β reached, and a
  warning when it stays far below its cap); the runner logs it for the planned
  run before training (``final=False``) and for the updates made at the end.

A model with only ``block_step`` trains in closed form (EASE, popularity);
one with only ``loss`` trains by gradient (Mult-VAE); hybrids have both.

Every model Config validates its fields at construction (``__post_init__``
calling `check_config`), so a bad value fails before any data is read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.data import batching

Params = Any
Factors = Any


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as the runner sees it; see the module docstring for each field."""

  name: str
  config: Any
  init: Callable[..., tuple[Params, Factors]]
  score: Callable[[Params, Factors, Any], Any]
  prepare: Callable[[sp.csr_matrix], Any] | None = None
  block_step: Callable[[Params, Factors, Any, Any], Factors] | None = None
  loss: Callable[..., tuple[Any, dict]] | None = None
  optimizer: optax.GradientTransformation | None = None
  train_defaults: dict = dataclasses.field(default_factory=dict)
  side_keys: tuple[str, ...] = ()  # Side information `init`/`prepare` need, e.g. ("item_content",).
  batch_source: batching.BatchSource = batching.DenseRows()  # What the loss trains on.
  phase: Callable[[int], dict] | None = None  # epoch -> the schedule's scalars for the loss.
  update: Callable[..., tuple] | None = None  # Own step; default gradient_update(loss, optimizer).
  score_padded: Callable[..., Any] | None = None  # score from padded item lists (serving).
  serving_factors: Callable[[Params, Factors], Factors] | None = None  # Derived once at load.
  item_vectors: Callable[[Params, Factors], Any] | None = None  # [n_items, d] for similar items.
  item_vectors_doc: str = ""  # What item_vectors are, e.g. "WMF item factors V".
  with_run_length: Callable[[sp.csr_matrix, int, int], "Model"] | None = None  # (train, batch_size, epochs) -> resolved model.
  schedule_report: Callable[[int, bool], str | None] | None = None  # (updates, final) -> a line on the schedule.
  partition: Callable[[Params, Factors], tuple[Any, Any]] | None = None  # (params, factors) -> their PartitionSpecs; None: replicated.

  def __post_init__(self):
    if self.block_step is None and self.loss is None:
      raise ValueError(f"model {self.name!r} has neither a block step nor a loss")
    if self.loss is not None and self.optimizer is None:
      raise ValueError(f"model {self.name!r} has a loss but no optimizer")
    if self.update is not None and self.loss is None:
      raise ValueError(f"model {self.name!r} has its own update step but no loss")


def gradient_update(loss: Callable[..., tuple[Any, dict]], optimizer: optax.GradientTransformation,
                    extra_args: Callable[[dict], dict] | None = None):
  """The default optimization step: ``value_and_grad`` of `loss`, then one optax update.

  Returns ``update(params, opt_state, factors, batch, key, phase) -> (params,
  opt_state, sums, n)`` (not jitted: the runner jits it and donates the
  parameters and optimizer state; a benchmark may jit it without donation).
  ``sums`` holds the loss and every aux metric times the batch's real rows
  ``n`` (rows whose ``mask`` is True), so an epoch's mean is sum / count.
  `extra_args` (phase -> keyword arguments) feeds an
  `optax.GradientTransformationExtraArgs` the schedule, e.g. which stage runs.
  """

  def update(params, opt_state, factors, batch, key, phase):
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(
        params, factors, batch, key, phase)
    extra = extra_args(phase) if extra_args is not None else {}
    updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    n = jnp.sum(batch["mask"].astype(jnp.float32))
    sums = {"loss": value * n, **{k: v * n for k, v in aux.items()}}
    return params, opt_state, sums, n

  return update


# ---------------------------------------------------------------------------
# KL annealing schedules defined in optax updates (Mult-VAE, SVAE).
# ---------------------------------------------------------------------------

# The authors' Mult-VAE^PR run on ML-20M (dawenl/vae_cf, VAE_ML20M_WWW2018.ipynb): 136,677
# users after filtering, 2 x 10,000 held out, so N = 116,677 training users; batch_size 500:
# ceil(N / 500) = 234 updates per epoch; n_epochs 200: 46,800 updates.  β = min(anneal_cap,
# updates / total_anneal_steps) with total_anneal_steps 200,000 and anneal_cap 0.2 reaches its
# cap after 0.2 x 200,000 = 40,000 updates: at 40,000 / 46,800 = 85.5% of the run.  A derived
# schedule keeps that proportion on any run.
ANNEAL_REACHES_CAP_AT = 40_000 / 46_800


def derived_anneal_steps(n_updates: int, anneal_cap: float) -> int:
  """total_anneal_steps for a run of `n_updates` updates: β reaches `anneal_cap` at 85.5% of it.

  β = min(cap, step / total) reaches the cap at step cap · total, so total =
  0.855 · n_updates / cap (the authors' 200,000 for their 46,800 updates and
  cap 0.2), never more than (n_updates - 1) / cap, so that the last update
  (step n_updates - 1) has β = cap on any run length.  0 (β = cap from the
  first update) when the cap is 0 or the run has a single update.
  """
  n_updates = int(n_updates)
  if anneal_cap <= 0 or n_updates <= 1:
    return 0
  return max(0, min(round(ANNEAL_REACHES_CAP_AT * n_updates / anneal_cap),
                    math.floor((n_updates - 1) / anneal_cap)))


def beta_after(n_updates: int, total_anneal_steps: int, anneal_cap: float) -> float:
  """β of the last of `n_updates` updates (step n_updates - 1), as `likelihoods.anneal_beta`."""
  if total_anneal_steps <= 0:
    return float(anneal_cap)
  return min(float(anneal_cap), max(n_updates - 1, 0) / total_anneal_steps)


def beta_report(model: str, n_updates: int, total_anneal_steps: int, anneal_cap: float,
                final: bool) -> str:
  """One line on the β a run reaches (or will reach), with a warning when it stays low.

  The warning fires when β at the last update is below 10% of a positive cap:
  the KL term then barely counts, an unregularized VAE.
  """
  beta = beta_after(n_updates, total_anneal_steps, anneal_cap)
  verb = "reached" if final else "will reach"
  after = f"after {n_updates} updates" if final else f"after this run's {n_updates} updates"
  line = (f"{model}: β {verb} {beta:.4f} (anneal_cap {anneal_cap:g}) {after} "
          f"(total_anneal_steps {total_anneal_steps})")
  if anneal_cap > 0 and beta < 0.1 * anneal_cap:
    line += (f"; warning: that is below 10% of anneal_cap, so the KL term barely regularizes "
             f"-- total_anneal_steps={total_anneal_steps} is too long for this run (leave it "
             f"unset to derive it from the run's length: "
             f"{derived_anneal_steps(n_updates, anneal_cap)} here)")
  return line


# ---------------------------------------------------------------------------
# Config validation, shared by every model's Config (and the runner's TrainConfig).
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _field_hints(cls) -> dict[str, Any]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}


def _split_optional(annotation) -> tuple[Any, bool]:
  """(the annotation without None, whether None is allowed)."""
  if typing.get_origin(annotation) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = len(args) < len(typing.get_args(annotation))
    return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), optional
  return annotation, False


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _fmt_bound(bound) -> str:
  return f"{bound:g}" if isinstance(bound, float) else str(bound)


def check_config(config, model: str, *, at_least: dict[str, float] | None = None,
                 above: dict[str, float] | None = None, fractions: Iterable[str] = (),
                 at_most: dict[str, float] | None = None,
                 choices: dict[str, Iterable[Any]] | None = None, nonempty: Iterable[str] = (),
                 allow_inf: Iterable[str] = ()) -> None:
  """Checks a frozen config dataclass's fields: types from the annotations, then ranges.

  Every field is checked against its annotation: ``int`` fields take integers
  (not 2.5, not True, not "x"), ``float`` fields finite real numbers (``inf``
  only for `allow_inf`), ``bool`` and ``str`` fields their type,
  ``tuple[int, ...]`` fields tuples (or lists, stored as tuples) of integers
  >= 1 (layer widths), ``tuple[str, ...]`` fields tuples of strings (a
  comma-separated string is split); ``X | None`` also takes None, which
  skips the range rules.

  Args:
    config: the dataclass instance (called from its ``__post_init__``).
    model: the name the message starts with, e.g. "wmf".
    at_least: field -> smallest allowed value (``>=``).
    above: field -> bound the value must exceed (``>``).
    at_most: field -> largest allowed value (``<=``).
    fractions: fields that must lie in [0, 1) (dropout and noise rates).
    choices: field -> the allowed values.
    nonempty: tuple fields that need at least one entry.
    allow_inf: float fields that may be +inf.

  Raises:
    ValueError: one line, ``"<model>: <field> must be <what>, got <value>"``.
  """
  at_least, above, at_most = dict(at_least or {}), dict(above or {}), dict(at_most or {})
  choices, fractions = dict(choices or {}), set(fractions)
  nonempty, allow_inf = set(nonempty), set(allow_inf)
  hints = _field_hints(type(config))
  for name in (set(at_least) | set(above) | set(at_most) | fractions | set(choices) | nonempty
               | allow_inf) - set(hints):
    raise TypeError(f"check_config({model}): no field {name!r}")  # A typo in the rules.

  for name, annotation in hints.items():
    value = getattr(config, name)
    base, optional = _split_optional(annotation)
    if value is None and optional:
      continue

    def fail(expected: str):
      raise ValueError(f"{model}: {name} must be {expected}{' (or None)' if optional else ''}, "
                       f"got {value!r}")

    def ranged(kind: str) -> str:
      if name in fractions:
        return f"{kind} in [0, 1)"
      parts = []
      if name in at_least:
        parts.append(f">= {_fmt_bound(at_least[name])}")
      if name in above:
        parts.append(f"> {_fmt_bound(above[name])}")
      if name in at_most:
        parts.append(f"<= {_fmt_bound(at_most[name])}")
      return " ".join([kind, " and ".join(parts)]) if parts else kind

    def in_range(v) -> bool:
      if name in fractions and not 0.0 <= v < 1.0:
        return False
      if name in at_least and not v >= at_least[name]:
        return False
      if name in above and not v > above[name]:
        return False
      return not (name in at_most and not v <= at_most[name])

    if base is bool:
      if not isinstance(value, (bool, np.bool_)):
        fail("true or false")
    elif base is int:
      if not _is_int(value) or not in_range(value):
        fail(ranged("an integer"))
    elif base is float:
      if (not _is_number(value) or math.isnan(value)
          or (math.isinf(value) and not (name in allow_inf and value > 0))
          or not in_range(value)):
        fail(ranged("a finite number" if name not in allow_inf else "a number"))
    elif base is str:
      if not isinstance(value, str):
        fail("a string")
    elif typing.get_origin(base) is tuple:
      inner = (typing.get_args(base) or (Any,))[0]
      items = value
      if inner is str and isinstance(value, str):
        items = tuple(v.strip() for v in value.split(",") if v.strip())
      if not isinstance(items, (tuple, list)):
        fail("a tuple")
      items = tuple(items)
      if inner is int and not all(_is_int(v) and v >= 1 for v in items):
        fail("a tuple of integers >= 1" + (" with at least one entry" if name in nonempty else ""))
      if inner is str and not all(isinstance(v, str) and v for v in items):
        fail("a tuple of non-empty strings")
      if name in nonempty and not items:
        fail("a non-empty tuple")
      if items is not value:
        object.__setattr__(config, name, items)  # Lists (JSON) and "a,b" become tuples.
    if name in choices:
      allowed = tuple(choices[name])
      if value not in allowed:
        fail("one of " + ", ".join(repr(c) for c in allowed))
