"""TrainState: everything a run needs to continue, as one pytree.

Array leaves (params, optimizer state, closed-form factors, the RNG key and the
step) live on device; host bookkeeping (epoch, best metric, early-stopping
counter) rides along as static fields.  The best state seen so far is kept in
``best_params``/``best_factors``; while the current state *is* the best one
they are the same arrays (JAX arrays are immutable, so sharing costs nothing).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optax steps taken so far.
  params: Any
  opt_state: Any
  factors: Any
  rng: jax.Array  # rng_loop, a raw uint32 key; step keys are fold_in(rng, step).
  best_params: Any
  best_factors: Any
  epoch: int = flax.struct.field(pytree_node=False, default=0)  # epochs completed.
  best_metric: float = flax.struct.field(pytree_node=False, default=float("-inf"))
  best_epoch: int = flax.struct.field(pytree_node=False, default=0)
  bad_epochs: int = flax.struct.field(pytree_node=False, default=0)
  best_is_current: bool = flax.struct.field(pytree_node=False, default=True)

  @classmethod
  def create(cls, params, opt_state, factors, seed: int | None = None,
             rng: jax.Array | None = None) -> "TrainState":
    """A state at step 0 whose loop key is `rng` (the runner's rng_loop), or PRNGKey(seed)."""
    if rng is None:
      rng = jax.random.PRNGKey(seed)
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
               factors=factors, rng=rng, best_params=params, best_factors=factors)

  def step_key(self) -> jax.Array:
    return jax.random.fold_in(self.rng, self.step)

  def meta(self) -> dict:
    """JSON-safe host bookkeeping (no metric yet is written as null, not -inf)."""
    best = self.best_metric if self.best_metric != float("-inf") else None
    return {"epoch": self.epoch, "best_metric": best, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "best_is_current": self.best_is_current}
