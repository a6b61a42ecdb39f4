"""Checkpoints with orbax's CheckpointManager, saved after completed epochs (the runner says which).

A checkpoint holds three items:

* ``state`` -- step, params, optimizer state, factors and RNG key;
* ``best`` -- the best params/factors, written only when they differ from the
  current ones (for EASE-sized factors that halves the disk written);
* ``meta`` -- JSON host bookkeeping (epoch, best metric, patience counter).

Saves are synchronous and orbax writes each one to a temporary directory that
is renamed when complete, so a run killed mid-save resumes from the previous
finished checkpoint and never from a partial one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from recjax.train.state import TrainState


def _core(state: TrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "factors": state.factors, "rng": state.rng}


def _abstract(tree, sharding):
  def leaf(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves and restores `TrainState` under ``workdir/checkpoints``."""

  def __init__(self, workdir: Path, max_to_keep: int = 2):
    self.directory = (Path(workdir) / "checkpoints").absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState) -> None:
    items = {"state": ocp.args.StandardSave(_core(state)),
             "meta": ocp.args.JsonSave(state.meta())}
    if not state.best_is_current:
      items["best"] = ocp.args.StandardSave(
          {"params": state.best_params, "factors": state.best_factors})
    self.manager.save(state.epoch, args=ocp.args.Composite(**items), force=True)
    self.manager.wait_until_finished()

  def restore(self, template: TrainState, sharding) -> TrainState:
    """Restores the latest checkpoint into the structure of `template`.

    Args:
      template: a freshly initialised state (its leaves may be arrays or
        ShapeDtypeStructs); gives tree structure, shapes and dtypes.
      sharding: where restored arrays are placed (replicated on the mesh).
    """
    epoch = self.manager.latest_step()
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint under {self.directory}")
    meta = self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    items = {"state": ocp.args.StandardRestore(_abstract(_core(template), sharding))}
    if not meta["best_is_current"]:
      items["best"] = ocp.args.StandardRestore(_abstract(
          {"params": template.params, "factors": template.factors}, sharding))
    restored = self.manager.restore(epoch, args=ocp.args.Composite(**items))
    core = restored["state"]
    best = restored["best"] if not meta["best_is_current"] else {
        "params": core["params"], "factors": core["factors"]}
    return dataclasses.replace(
        template, step=core["step"], params=core["params"], opt_state=core["opt_state"],
        factors=core["factors"], rng=core["rng"], best_params=best["params"],
        best_factors=best["factors"], epoch=int(meta["epoch"]),
        best_metric=float("-inf") if meta["best_metric"] is None else float(meta["best_metric"]), best_epoch=int(meta["best_epoch"]),
        bad_epochs=int(meta["bad_epochs"]), best_is_current=bool(meta["best_is_current"]))

  def close(self) -> None:
    self.manager.close()
