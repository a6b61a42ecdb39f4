"""Neural collaborative filtering (He et al., WWW 2017): GMF, MLP and NeuMF.

Registered as ``ncf-gmf``, ``ncf-mlp`` and ``ncf-neumf`` (one `Config`); the
towers are `recjax.nn.ncf.NCF`.  Training follows the paper: pointwise log
loss on (user, item, label) instances, every positive with ``negatives = 4``
items the user never interacted with, drawn afresh each epoch, Adam (lr
0.001) for GMF/MLP and plain SGD for NeuMF initialized from trained GMF and
MLP (α = 0.5: the prediction weights are ``[α h_GMF; (1 − α) h_MLP]``).

The runner feeds user rows, so the instances are built inside the loss: for a
batch of users the towers score every item (dense [B, I] logits), positives
(the row's items) get weight 1 and each other item j of user u gets a count
of negative draws ~ Poisson(negatives · n_u / (I − n_u)), i.e. the NCF
sampler (``negatives · n_u`` uniform draws with replacement among the user's
non-items) with its per-item counts Poissonized so that all items draw
independently under one key.  The loss is the mean over the drawn instances,
as in a Keras minibatch.  (Scoring all items costs ~I / (5 n̄_u) times the
instances' compute; it keeps the runner's batches and the shapes fixed.)

Scoring.  `score(params, factors, inputs)` takes either

* a query ``{"rows", "index", "items"}`` (`recjax.eval.sampled`: training-row
  ids and [B, C] candidates), returning [B, C] logits from the users' trained
  embeddings -- NCF's own (weak generalization) protocol; or
* dense rows [B, I] of users training never saw, returning [B, I] logits after
  folding them in: their user vectors start at the mean training user vector
  and take ``fold_in_steps`` Adam steps on the expected training objective of
  the row (positives weight 1, every other item negatives · n / (I − n)) with
  the item side fixed.  Query rows with index -1 are folded in the same way.

Pre-training: ``ncf-neumf`` with ``gmf_workdir`` and ``mlp_workdir`` set loads
the best (validation-selected) parameters of finished ``ncf-gmf`` / ``ncf-mlp``
runs from their workdirs' checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from recjax.models.base import Model, check_config
from recjax.nn.ncf import NCF

OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Config:
  dim: int = 8  # GMF embedding size K (its predictive factors).
  mlp_layers: tuple[int, ...] = (64, 32, 16, 8)  # Concatenated embedding width, then hidden widths.
  negatives: int = 4  # Negative instances per positive, redrawn every epoch.
  optimizer: str = "adam"  # "adam", or "sgd" (the paper's choice for pre-trained NeuMF).
  learning_rate: float = 0.001  # Step size.
  l2: float = 0.0  # λ Σ‖θ‖² over the embedding tables (the authors' reg_mf / reg_layers; 0 on ML-1M).
  alpha: float = 0.5  # NeuMF pre-training: weight of GMF's prediction vector (1 − α: MLP's).
  gmf_workdir: str = ""  # NeuMF: workdir of a finished ncf-gmf run to initialize from ("" = random).
  mlp_workdir: str = ""  # NeuMF: workdir of a finished ncf-mlp run to initialize from ("" = random).
  fold_in_steps: int = 50  # Adam steps on an unseen user's vectors (dense-row scoring only).
  fold_in_lr: float = 0.05  # Their step size.

  def __post_init__(self):
    check_config(self, "ncf", at_least={"dim": 1, "negatives": 1, "l2": 0.0, "alpha": 0.0,
                                       "fold_in_steps": 0},
                 at_most={"alpha": 1.0}, above={"learning_rate": 0.0, "fold_in_lr": 0.0},
                 nonempty=("mlp_layers",), choices={"optimizer": OPTIMIZERS})


def load_best_params(workdir: str | Path):
  """The validation-selected parameters saved by the runner under ``workdir/checkpoints``.

  Args:
    workdir: a finished run's workdir.

  Returns:
    The params pytree (numpy arrays) of the best epoch.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel  # Only pre-training needs it.
  directory = (Path(workdir) / "checkpoints").absolute()
  if not directory.is_dir():
    raise FileNotFoundError(f"no checkpoints under {directory}: train that model first "
                            f"(with checkpoint=True)")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      create=False, read_only=True))
  try:
    epoch = manager.latest_step()
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint under {directory}")
    meta = manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    item = "state" if meta["best_is_current"] else "best"
    restored = manager.restore(epoch, args=ocp.args.Composite(
        **{item: ocp.args.StandardRestore()}))[item]
  finally:
    manager.close()
  return jax.tree.map(np.asarray, restored["params"])


def _model_of(workdir: str | Path) -> str:
  path = Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: is {workdir} a recjax workdir?")
  return json.loads(path.read_text()).get("model", "?")


def neumf_from_pretrained(neumf_params, gmf_params, mlp_params, alpha: float):
  """NeuMF parameters from trained GMF and MLP ones (He et al. §3.4.1).

  Embeddings and MLP layers are copied; the prediction vector becomes
  ``[α h_GMF; (1 − α) h_MLP]`` and the bias ``α b_GMF + (1 − α) b_MLP`` (the
  authors' code uses 0.5 · the sum, i.e. α = 0.5).

  Args:
    neumf_params: a freshly initialized NeuMF variables dict (gives the shapes).
    gmf_params: trained GMF variables (None: keep NeuMF's GMF part).
    mlp_params: trained MLP variables (None: keep NeuMF's MLP part).
    alpha: the trade-off α.

  Returns:
    NeuMF variables.
  """
  p = jax.tree.map(jnp.asarray, dict(neumf_params["params"]))
  f = p["gmf_user"].shape[1]
  kernel, bias = p["predict_kernel"], jnp.zeros_like(p["predict_bias"])
  for name, src, part in (("GMF", gmf_params, slice(0, f)), ("MLP", mlp_params, slice(f, None))):
    weight = alpha if name == "GMF" else 1.0 - alpha
    if src is None:  # This half keeps its random init; the bias its (zero) init share.
      bias = bias + weight * p["predict_bias"]
      continue
    src = dict(src["params"])
    for key, value in src.items():
      if key.startswith("predict"):
        continue
      want = jax.tree.map(jnp.shape, p[key]) if key in p else None
      got = jax.tree.map(jnp.shape, value)
      if want != got:
        raise ValueError(f"pre-trained {name} parameter {key!r} has shape {got}, NeuMF wants "
                         f"{want}: train {name} with the same dim / mlp_layers / data")
      p[key] = jax.tree.map(jnp.asarray, value)
    if kernel[part].shape != np.shape(src["predict_kernel"]):
      raise ValueError(f"pre-trained {name} prediction vector has shape "
                       f"{np.shape(src['predict_kernel'])}, NeuMF's {name} part {kernel[part].shape}")
    kernel = kernel.at[part].set(weight * jnp.asarray(src["predict_kernel"]))
    bias = bias + weight * jnp.asarray(src["predict_bias"])
  p["predict_kernel"], p["predict_bias"] = kernel, bias
  return {"params": p}


def _expected_objective(net, params, vectors, rows, negatives: int, l2_scale: float):
  """Per-user log loss with the expected negative counts (fold-in objective), summed over users."""
  logits = net.apply(params, vectors, None, method=NCF.score_vectors)
  n_items = rows.shape[1]
  n_pos = jnp.sum(rows, axis=1, keepdims=True)
  w = rows + (1.0 - rows) * negatives * n_pos / jnp.maximum(n_items - n_pos, 1.0)
  nll = jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, rows))
  reg = sum(jnp.sum(v ** 2) for v in jax.tree.leaves(vectors))
  return nll + l2_scale * reg


def make(config: Config, kind: str = "neumf") -> Model:
  """Builds GMF, MLP or NeuMF ("gmf" / "mlp" / "neumf") as a recjax Model."""
  if kind not in ("gmf", "mlp", "neumf"):
    raise ValueError(f"ncf: kind must be 'gmf', 'mlp' or 'neumf', got {kind!r}")
  if kind != "neumf" and (config.gmf_workdir or config.mlp_workdir):
    raise ValueError(f"ncf-{kind}: gmf_workdir / mlp_workdir apply to ncf-neumf only")
  layers = tuple(int(w) for w in config.mlp_layers)

  def net_for(n_users, n_items):
    return NCF(n_users=n_users, n_items=n_items, kind=kind, dim=config.dim,
               mlp_layers=layers)

  def init(key, train: sp.csr_matrix):
    n_users, n_items = train.shape
    net = net_for(n_users, n_items)
    params = net.init(key, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 1), jnp.int32))
    if kind == "neumf" and (config.gmf_workdir or config.mlp_workdir):
      loaded = {}
      for name, workdir in (("ncf-gmf", config.gmf_workdir), ("ncf-mlp", config.mlp_workdir)):
        if workdir:
          if _model_of(workdir) != name:
            raise ValueError(f"{workdir} holds a {_model_of(workdir)!r} run, expected {name!r}")
          loaded[name] = load_best_params(workdir)
      params = neumf_from_pretrained(params, loaded.get("ncf-gmf"), loaded.get("ncf-mlp"),
                                     config.alpha)
    return params, {}

  def net_of(params):
    n_users = params["params"][("gmf_user" if kind != "mlp" else "mlp_user")].shape[0]
    n_items = params["params"][("gmf_item" if kind != "mlp" else "mlp_item")].shape[0]
    return net_for(n_users, n_items)

  def l2_term(params):
    p = params["params"]
    return sum(jnp.sum(p[k] ** 2) for k in ("gmf_user", "gmf_item", "mlp_user", "mlp_item")
               if k in p)

  def loss(params, factors, batch, key, phase):
    del factors, phase
    net = net_of(params)
    rows = (batch["rows"] > 0).astype(jnp.float32)
    mask = batch["mask"].astype(jnp.float32)[:, None]
    users = jnp.maximum(batch["index"], 0)
    logits = net.apply(params, users, None)
    n_items = rows.shape[1]
    n_pos = jnp.sum(rows, axis=1, keepdims=True)
    rate = config.negatives * n_pos / jnp.maximum(n_items - n_pos, 1.0)
    draws = jax.random.poisson(key, rate * (1.0 - rows), rows.shape).astype(jnp.float32)
    weights = (rows + draws * (1.0 - rows)) * mask
    ce = optax.sigmoid_binary_cross_entropy(logits, rows)
    n_instances = jnp.maximum(jnp.sum(weights), 1.0)
    log_loss = jnp.sum(weights * ce) / n_instances
    total = log_loss + config.l2 * l2_term(params) if config.l2 else log_loss
    return total, {"log_loss": log_loss, "instances": jnp.sum(weights) / jnp.maximum(
        jnp.sum(mask), 1.0)}

  def fold_in(params, rows):
    """User vectors for rows of unseen users: Adam steps from the mean training user."""
    net = net_of(params)
    p = params["params"]
    b = rows.shape[0]
    init_vec = {}
    if kind != "mlp":
      init_vec["gmf"] = jnp.broadcast_to(jnp.mean(p["gmf_user"], axis=0)[None, :],
                                         (b, p["gmf_user"].shape[1]))
    if kind != "gmf":
      init_vec["mlp"] = jnp.broadcast_to(jnp.mean(p["mlp_user"], axis=0)[None, :],
                                         (b, p["mlp_user"].shape[1]))
    objective = lambda v: _expected_objective(net, params, v, rows, config.negatives, config.l2)
    opt = optax.adam(config.fold_in_lr)

    def step(carry, _):
      v, s = carry
      g = jax.grad(objective)(v)
      upd, s = opt.update(g, s, v)
      return (optax.apply_updates(v, upd), s), None

    (vectors, _), _ = jax.lax.scan(step, (init_vec, opt.init(init_vec)), None,
                                   length=config.fold_in_steps)
    return vectors

  def score(params, factors, inputs):
    del factors
    net = net_of(params)
    if isinstance(inputs, dict):
      index, items = inputs["index"], inputs["items"]
      known = net.apply(params, jnp.maximum(index, 0), method=NCF.user_vectors)
      rows = (inputs["rows"] > 0).astype(jnp.float32)
      if config.fold_in_steps > 0:
        # Padding rows (index -1, empty) need no fold-in; skip it when no real row is unseen.
        needed = jnp.any((index < 0) & (jnp.sum(rows, axis=1) > 0))
        unseen = jax.lax.cond(needed, lambda: fold_in(params, rows), lambda: known)
        vectors = jax.tree.map(lambda k, u: jnp.where((index >= 0)[:, None], k, u), known, unseen)
      else:
        vectors = known
      return net.apply(params, vectors, items, method=NCF.score_vectors)
    rows = (jnp.asarray(inputs) > 0).astype(jnp.float32)
    return net.apply(params, fold_in(params, rows), None, method=NCF.score_vectors)

  def item_vectors(params, factors):
    """The item embedding tables: GMF's q_i, MLP's q'_i, NeuMF's [q_i; q'_i]."""
    del factors
    p = params["params"]
    return jnp.concatenate([p[k] for k in ("gmf_item", "mlp_item") if k in p], axis=1)

  if config.optimizer == "adam":
    optimizer = optax.adam(config.learning_rate)
  else:
    optimizer = optax.sgd(config.learning_rate)
  return Model(name=f"ncf-{kind}", config=config, init=init, score=score, loss=loss,
               optimizer=optimizer,
               train_defaults={"epochs": 20}, item_vectors=item_vectors,
               item_vectors_doc={"gmf": "GMF item embeddings q_i",
                                 "mlp": "MLP item embeddings q'_i",
                                 "neumf": "NeuMF item embeddings [GMF q_i; MLP q'_i]"}[kind])


def make_gmf(config: Config) -> Model:
  return make(config, "gmf")


def make_mlp(config: Config) -> Model:
  return make(config, "mlp")


def make_neumf(config: Config) -> Model:
  return make(config, "neumf")
