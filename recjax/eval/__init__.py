"""Evaluation protocols.  `evaluate` picks the protocol from the eval set's type.

Each protocol is a function
``(score_fn, state, eval_set, *, metrics, batch_size, item_chunk, sharding, on_batch) -> dict``
returning lower-case metric names (plus ``"users"``, the rows counted).  A new
protocol (say, ratings scored by RMSE) adds its eval-set class and one line to
`EVALUATORS`: the class -> its protocol function.
"""

from __future__ import annotations

from typing import Any, Callable

from recjax.data.loo import SampledEvalSet
from recjax.data.ratings import RatingEvalSet
from recjax.data.sequences import SequenceEvalSet
from recjax.data.splits import EvalSet
from recjax.eval.ranking import evaluate_ranking
from recjax.eval.rating import evaluate_rating
from recjax.eval.sampled import evaluate_sampled
from recjax.eval.sequence import evaluate_sequence

EVALUATORS: dict[type, Callable[..., dict]] = {
    SampledEvalSet: evaluate_sampled,
    EvalSet: evaluate_ranking,
    RatingEvalSet: evaluate_rating,
    SequenceEvalSet: evaluate_sequence,
}


def evaluator(eval_set: Any) -> Callable[..., dict]:
  """The protocol function for `eval_set`, by its class."""
  cls = type(eval_set)
  if cls not in EVALUATORS:
    known = sorted(c.__name__ for c in EVALUATORS)
    raise TypeError(f"no evaluation protocol for {cls.__name__}; known: {known}")
  return EVALUATORS[cls]


def evaluate(score_fn, state, eval_set, **kwargs) -> dict:
  """Evaluates `state` on `eval_set` with the protocol its type names."""
  return evaluator(eval_set)(score_fn, state, eval_set, **kwargs)
