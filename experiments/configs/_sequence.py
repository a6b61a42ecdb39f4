"""The sequence-model runs of Ko et al. 2016 (WORKSPACE "Sequence models"), one builder for all.

`sequence_run(model, dataset, ...)` is the experiment dict of one model on one
dataset under the paper's protocol: each user's time-ordered events, the last
2.5% (clipped to [3, 500]) held out as the test tail, every event kept (no
binarization, no min-count filter: users with >= 3 events).  The error E is the
mean over users of the per-event NLL of the tail (Eq. 3; "error" in
results.json, lower is better; the runner selects on "neg_error").

* The recurrent models (c-gru, p-gru, c-tanh) use protocol "sequence-tail": a
  validation tail cut from the training prefix picks the epoch (RMSprop, 40
  epochs at most, stop after 4 without a gain; the P-GRU needs up to 150).
* The baselines (uniform, unigram, bigram, hmm, mf-logcount) run a fixed
  number of sweeps on the whole prefix: protocol "sequence-tail-novalid".
"""

RECURRENT = ("c-gru", "p-gru", "c-tanh")


def sequence_run(model: str, dataset: str, model_config: dict | None = None, **train) -> dict:
  recurrent = model in RECURRENT
  return {
      "model": model,
      "dataset": dataset,
      "model_config": dict(model_config or {}),
      "data": {"protocol": "sequence-tail" if recurrent else "sequence-tail-novalid",
               "binarize_threshold": None, "min_user_count": None, "min_item_count": None},
      "train": {"metrics": ("error", "neg_error"), "select_metric": "neg_error",
                "eval_batch_size": 256, **train},
  }
