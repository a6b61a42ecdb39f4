r"""Scores a finished run's exported model again, under other metrics or scoring options.

  python -m experiments.rescore --workdir=workdirs/cvae-t-p1 --data_dir=../shared/data \
      --metrics=recall_cdl@300,recall_train_test@300 [--set user_gram=clicked] \
      [--cold_start] [--out=rescored.json]

What it reads: the workdir's ``config.json`` (dataset, resolved data settings:
the same split is drawn again) and its exported model (``model/``: the state
the run chose).  Nothing is trained and nothing in the workdir is changed; the
metrics are printed (and written to ``--out``) beside what produced them.

``--set key=value`` changes fields of the model's config before scoring.  Only
fields that act at scoring time mean anything here (CVAE's ``user_gram`` and
``score_unclicked``; ALS's ``fold_in_chunk``): the trained state stays the
one the run produced, so e.g. ``--set user_gram=clicked`` folds users in as
the CVAE authors' code solves them, against factors trained the paper's way.
Every override is printed and recorded in the output.

Metric conventions (`recjax.ops.ranking`): ``recall@M`` (Liang et al.),
``recall_cdl@M`` (the CDL/CVAE/CRAE papers' text and the CVAE authors'
evaluateCorrect.m) and ``recall_train_test@M`` (the CVAE authors'
evaluatePaper.m, which produced the CVAE paper's figures).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from absl import app, flags, logging

from experiments import errors

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a program (absl's flag registry is global)."""
  flags.DEFINE_string("workdir", None, "A finished run's workdir (it holds config.json and model/).")
  flags.DEFINE_string("data_dir", None, "Where datasets are looked up first.")
  flags.DEFINE_string("cache_dir", None, "Dataset cache directory.")
  flags.DEFINE_list("metrics", ["recall_cdl@300", "recall_train_test@300"],
                    "Metric names, comma-separated (kinds: recall, recall_cdl, recall_train_test, "
                    "ndcg, precision, map, hr).")
  flags.DEFINE_multi_string("set", [], "key=value: a model config field changed before scoring "
                            "(scoring-time fields only, e.g. user_gram=clicked); repeatable.")
  flags.DEFINE_bool("cold_start", False, "Rank and count only the items with no training click.")
  flags.DEFINE_bool("exclude_fold_in", True, "Remove the training items from the ranking "
                    "(recall_train_test always ranks them).")
  flags.DEFINE_integer("batch_size", 500, "Users per evaluation batch.")
  flags.DEFINE_string("out", None, "Also write the result as JSON here.")


def rescore(workdir: str, metrics: tuple[str, ...], overrides: list[str] = (),
            data_dir: str | None = None, cache_dir: str | None = None, cold_start: bool = False,
            exclude_fold_in: bool = True, batch_size: int = 500, log=print) -> dict:
  """The test metrics of `workdir`'s exported model (see the module doc)."""
  from experiments import train  # pylint: disable=import-outside-toplevel
  from recjax.data import pipeline  # pylint: disable=import-outside-toplevel
  from recjax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  from recjax.eval import cold_start as cold_lib  # pylint: disable=import-outside-toplevel
  from recjax.eval.ranking import evaluate_ranking  # pylint: disable=import-outside-toplevel
  from recjax.models import registry  # pylint: disable=import-outside-toplevel
  from recjax.train import artifact  # pylint: disable=import-outside-toplevel

  path = Path(workdir)
  config_path = path / "config.json"
  if not config_path.is_file():
    raise FileNotFoundError(f"{config_path}: no config.json (not a recjax workdir)")
  run = json.loads(config_path.read_text())
  trained = artifact.load(path)
  name = trained.info["model"]
  changes = train.split_overrides(name, list(overrides))
  if changes["data"] or changes["train"]:
    bad = sorted(changes["data"]) + sorted(changes["train"])
    raise ValueError(f"--set {bad[0]}: only model config fields can change when rescoring")
  model_config = {**trained.model.config.__dict__, **changes["model"]}
  model = registry.get_model(name, model_config)
  for key, value in changes["model"].items():
    log(f"rescore: {name} {key}={value!r} (trained with "
        f"{trained.model.config.__dict__.get(key)!r})")
  data_config = pipeline.DataConfig(**run["data_config"])
  dataset = load_dataset(run["dataset"], data_dir=data_dir, cache_dir=cache_dir, download=False)
  split, info = pipeline.ranking_split(dataset, data_config)
  log(f"data {dataset.name}: {info['summary']}")
  if split.train.shape != trained.train.shape or (split.train != trained.train).nnz:
    raise ValueError(f"{path}: the split drawn from config.json does not reproduce the "
                     f"model's training matrix ({split.train.shape} vs {trained.train.shape})")
  factors = {k: v for k, v in trained.factors.items() if k != "serving"}
  state = (trained.params, factors)
  score = lambda s, x: model.score(s[0], s[1], x)
  candidates = cold_lib.cold_items(split) if cold_start else None
  t0 = time.perf_counter()
  result = evaluate_ranking(score, state, split.test, metrics=tuple(metrics),
                            batch_size=batch_size, candidates=candidates,
                            exclude_fold_in=exclude_fold_in)
  log(f"rescore: {len(metrics)} metrics in {time.perf_counter() - t0:.1f}s")
  return {"workdir": str(path), "model": name, "overrides": changes["model"],
          "cold_start": cold_start, "exclude_fold_in": exclude_fold_in, "test": result}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO.
  with errors.one_line_errors({"workdir": FLAGS.workdir, "data_dir": FLAGS.data_dir},
                              FLAGS["verbosity"].present):
    out = rescore(FLAGS.workdir, tuple(FLAGS.metrics), FLAGS.set, FLAGS.data_dir,
                  FLAGS.cache_dir, FLAGS.cold_start, FLAGS.exclude_fold_in, FLAGS.batch_size)
    for metric, value in out["test"].items():
      print(f"{metric}: {value:.4f}" if isinstance(value, float) else f"{metric}: {value}")
    if FLAGS.out:
      Path(FLAGS.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=errors.parse_flags)
