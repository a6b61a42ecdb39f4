"""Evaluation protocols.  `evaluate` picks the protocol from the eval set's type.

Each protocol is a function
``(score_fn, state, eval_set, *, metrics, batch_size, item_chunk, sharding, on_batch) -> dict``
returning lower-case metric names (plus ``"users"``, the rows counted).  A new
protocol (say, ratings scored by RMSE) adds its eval-set class and one line to
`EVALUATORS`: the class name -> "module:function", imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

EVALUATORS: dict[str, str] = {
    "SampledEvalSet": "recjax.eval.sampled:evaluate_sampled",
    "EvalSet": "recjax.eval.ranking:evaluate_ranking",
    "RatingEvalSet": "recjax.eval.rating:evaluate_rating",
}


def evaluator(eval_set: Any) -> Callable[..., dict]:
  """The protocol function for `eval_set`, by its class name."""
  name = type(eval_set).__name__
  if name not in EVALUATORS:
    raise TypeError(f"no evaluation protocol for {name}; known: {sorted(EVALUATORS)}")
  module, fn = EVALUATORS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def evaluate(score_fn, state, eval_set, **kwargs) -> dict:
  """Evaluates `state` on `eval_set` with the protocol its type names."""
  return evaluator(eval_set)(score_fn, state, eval_set, **kwargs)
