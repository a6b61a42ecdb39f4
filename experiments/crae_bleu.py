r"""CRAE's sequence generation on the fly (Wang, Shi & Yeung 2016, §4.2, Table 3): BLEU of titles
generated for items whose content training never saw.

  python experiments/crae_bleu.py --config=experiments/configs/crae_bleu_citeulike_a.py \
      --data_dir=../shared/data --workdir=workdirs/crae-bleu-a

1. Trains CRAE with ``hidden_content_fraction`` (0.2 in the paper: 20% of the
   items never show their title to the network) through
   `experiments.train.run_experiment` into ``--workdir`` (config.json,
   metrics.jsonl, results.json with the recommendation metrics, checkpoints;
   the same command again resumes, like experiments/main.py).
2. Restores the *best* state (params and factors) from the checkpoint.
3. For the hidden items with a non-empty title, produces a title two ways
   (`experiments.crae_titles.hidden_item_titles`):
   * ``decoder``: CRAE's decoder run greedily from the learned v_j;
   * ``decoder_rescaled``: the same from v_j rescaled to the visible items'
     mean γ_j norm (a hidden item's v_j is learned with prior mean 0, and λ_v
     shrinks it far below the codes the decoder was trained on);
   * ``nearest``: the nearest-neighbour baseline the paper uses for models that
     cannot generate (CDL, CTR, PMF): the title of the visible item whose v is
     nearest to v_j (here CRAE's own v, so it isolates decoding vs borrowing),
     among the visible items with a non-empty title (bleu.json's
     ``nearest_including_empty_titles`` keeps them: an item with no vocabulary
     word has γ_j = 0 like a hidden item, and is then often the nearest);
   * ``nearest_cosine``: the same by cosine, so a hidden v_j shrunk towards 0
     is not matched to the visible item of smallest norm.
   Two diagnostics go with them: ``visible_autoencoding``, the BLEU of titles
   decoded from E[tanh(θ_j)] of visible items' own clean titles (the
   decoder's ceiling), and the mean cosine between those codes and γ_j (which
   v_j tracks): decoding from v_j only makes sense when it is near 1, as with
   ``pooling="last"`` (γ_j = tanh(θ_j), the paper's degenerate CRAE, and
   ``configs/crae_bleu_citeulike_a_last.py``).
4. Scores each against the true titles with corpus BLEU-1..4
   (`recjax.eval.bleu.corpus_bleu`, no smoothing; BLEU-4 also with "floor"
   smoothing), prints them (x100, as the paper's Table 3) with a few example
   titles in words beside the true ones, and writes ``workdir/bleu.json``.

References are the true titles only (one reference per item).  The paper
also uses the sentences of the abstracts as references, which citeulike-a as
shipped here does not have, so its BLEU is not directly comparable (more
references can only raise BLEU).  Titles are the ids of their vocabulary words
(`recjax.data.titles`, stop words dropped), so BLEU counts content words only.

Flags as in experiments/main.py (`experiments/experiment_flags.py`: --config,
--model (crae only), --dataset, --data_dir, --cache_dir, --download, --set),
plus --max_length, --baselines and --examples.  Only this file reads flags.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

if __name__ == "__main__" and __package__ in (None, ""):  # `python experiments/crae_bleu.py`
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import experiment_flags  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
experiment_flags.define(
    config_help="experiments/configs/*.py file of a crae run with hidden_content_fraction > 0 "
                "(default: configs/crae_bleu_citeulike_a.py).",
    workdir_help="Output directory: results, metrics, checkpoints, bleu.json.",
    model_help="Model name (default the config's; must be crae).")
flags.DEFINE_integer("max_length", 20, "Longest generated title, in words.")
flags.DEFINE_list("baselines", [], "Config files of models that cannot generate (e.g. "
                  "experiments/configs/cdl_citeulike_a_p1.py, ctr_..., wmf_...): each is trained "
                  "on the CRAE run's split with the same items' content emptied, into "
                  "<workdir>/baselines/<model>, and scored by nearest-neighbour titles from its "
                  "item factors V (the paper's Table 3 rows).")
flags.DEFINE_integer("examples", 3, "Example titles printed (and stored in bleu.json).")

MAX_ORDER = 4


def restore_best(experiment: dict, workdir: str | Path, data_dir: str | None = None,
                 cache_dir: str | None = None, download: bool = True) -> dict:
  """The best (params, factors) of a finished crae run in `workdir`, with what scoring needs.

  Rebuilds the dataset, split, titles and model exactly as
  `experiments.train.run_experiment` does, initialises a state of the same
  structure and restores the checkpoint's best params/factors into it.

  Returns:
    {"model", "params", "factors", "aux" (the model's `prepare` output),
     "dataset", "split", "best_epoch", "epoch"}.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from recjax.data import pipeline, titles  # pylint: disable=import-outside-toplevel
  from recjax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  from recjax.models import registry  # pylint: disable=import-outside-toplevel
  from recjax.train import sharding as shd  # pylint: disable=import-outside-toplevel
  from recjax.train.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  from recjax.train.runner import TrainConfig  # pylint: disable=import-outside-toplevel
  from recjax.train.state import TrainState  # pylint: disable=import-outside-toplevel

  model = registry.get_model(experiment["model"], experiment.get("model_config", {}))
  train_config = TrainConfig(**experiment.get("train", {}))
  dataset = load_dataset(experiment["dataset"], data_dir=data_dir, cache_dir=cache_dir,
                         download=download)
  split, _ = pipeline.ranking_split(dataset, pipeline.DataConfig(**experiment.get("data", {})))
  item_titles = titles.title_sequences(dataset.item_text, dataset.vocabulary)[split.items]
  rep = shd.replicated(shd.make_mesh(train_config.n_devices))
  key = jax.random.PRNGKey(train_config.seed)
  params, factors = model.init(jax.random.fold_in(key, 0), split.train, item_titles=item_titles)
  template = TrainState.create(params, model.optimizer.init(params), factors, train_config.seed)
  ckpt = Checkpointer(Path(workdir), train_config.keep_checkpoints)
  try:
    if ckpt.latest_epoch() is None:
      raise FileNotFoundError(f"no checkpoint under {ckpt.directory}")
    state = ckpt.restore(template, rep)
  finally:
    ckpt.close()
  return {"model": model, "params": state.best_params, "factors": state.best_factors,
          "aux": model.prepare(split.train, item_titles), "dataset": dataset, "split": split,
          "best_epoch": state.best_epoch, "epoch": state.epoch}


def bleu_scores(candidates, references) -> dict:
  """Corpus BLEU-1..4 (no smoothing), BLEU-4 with floor smoothing, and BLEU-4's parts."""
  from recjax.eval.bleu import corpus_bleu  # pylint: disable=import-outside-toplevel
  out = {f"bleu_{n}": corpus_bleu(candidates, references, max_order=n)["bleu"]
         for n in range(1, MAX_ORDER + 1)}
  full = corpus_bleu(candidates, references, max_order=MAX_ORDER)
  out["bleu_4_floor"] = corpus_bleu(candidates, references, max_order=MAX_ORDER,
                                    smoothing="floor")["bleu"]
  out.update({k: full[k] for k in ("precisions", "brevity_penalty", "candidate_length",
                                   "reference_length")})
  out["items"] = len(candidates)
  return out


def run(experiment: dict, workdir: str | Path, data_dir: str | None = None,
        cache_dir: str | None = None, download: bool = True, max_length: int = 20,
        n_examples: int = 3, log=print, baselines=()) -> dict:
  """Trains (or resumes) the crae run, then scores generated titles; returns bleu.json's dict."""
  from experiments import crae_titles, train  # pylint: disable=import-outside-toplevel
  from recjax.data import titles as titles_lib  # pylint: disable=import-outside-toplevel
  from recjax.models import crae  # pylint: disable=import-outside-toplevel
  from recjax.train.writer import write_json  # pylint: disable=import-outside-toplevel

  if experiment.get("model") != "crae":
    raise ValueError(f"crae_bleu needs model 'crae', got {experiment.get('model')!r}")
  fraction = experiment.get("model_config", {}).get("hidden_content_fraction", 0.0)
  if not fraction > 0:
    raise ValueError("crae_bleu needs hidden_content_fraction > 0 (the paper: 0.2); "
                     f"got {fraction}")
  if not experiment.get("train", {}).get("checkpoint", True):
    raise ValueError("crae_bleu restores the best state from the checkpoint: "
                     "train.checkpoint must be true")
  workdir = Path(workdir)
  results = train.run_experiment(experiment, str(workdir), data_dir=data_dir,
                                 cache_dir=cache_dir, download=download, log=log)
  best = restore_best(experiment, workdir, data_dir, cache_dir, download)
  dataset, split, aux = best["dataset"], best["split"], best["aux"]
  config = best["model"].config
  vocab = dataset.vocabulary
  out = {"dataset": dataset.name, "best_epoch": best["best_epoch"], "epochs_run": best["epoch"],
         "hidden_content_fraction": config.hidden_content_fraction,
         "hidden_items": int(aux["hidden"].sum()),
         "hidden_items_with_title": int((aux["hidden"] & (aux["lengths"] > 0)).sum()),
         "max_length": max_length, "references": "true title only (one per item)",
         "recommendation_test": results["test"], "methods": {}, "examples": []}
  rated = np.asarray(best["factors"]["rated"])
  out["hidden_items_with_training_clicks"] = int((aux["hidden"] & (aux["lengths"] > 0)
                                                  & rated).sum())
  # The nearest-neighbour baseline borrows only non-empty titles: marking the empty-title
  # items hidden too removes them from the keys (they have no title to generate, so the
  # scored items do not change).  Unfiltered, an item with no vocabulary word has γ_j = 0,
  # the same prior as a hidden item, and is often the nearest (an empty candidate).
  aux_keys = {**aux, "hidden": aux["hidden"] | (aux["lengths"] == 0)}
  produced = {}
  for method in crae_titles.TITLE_METHODS:
    res = crae_titles.hidden_item_titles(config, best["params"], best["factors"],
                                  aux if method.startswith("decoder") else aux_keys, method=method,
                                  max_length=max_length)
    produced[method] = res
    out["methods"][method] = bleu_scores(res["candidates"], res["references"])
  unfiltered = crae_titles.hidden_item_titles(config, best["params"], best["factors"], aux,
                                       method="nearest")
  out["nearest_including_empty_titles"] = bleu_scores(unfiltered["candidates"],
                                                      unfiltered["references"])
  out["baselines"] = {}
  for path in baselines:
    base = train.load_config_file(path)
    base["dataset"], base["data"] = experiment["dataset"], dict(experiment.get("data", {}))
    name = base["model"]
    log(f"baseline {name} ({path}) on the same split, the hidden items' content emptied:")
    base_results, (_, base_factors) = train.run_experiment(
        base, str(workdir / "baselines" / name), data_dir=data_dir, cache_dir=cache_dir,
        download=download, log=log, return_state=True,
        hidden_content=lambda n: crae.hidden_items(config, n))
    if "V" not in base_factors:
      raise ValueError(f"{path}: model {name!r} has no item factors 'V' to take the nearest "
                       f"neighbours of (it has {sorted(base_factors)})")
    out["baselines"][name] = {"config": str(path), "recommendation_test": base_results["test"]}
    for method in ("nearest", "nearest_cosine"):
      res = crae_titles.hidden_item_titles(config, None, {"V": base_factors["V"]}, aux_keys,
                                    method=method, max_length=max_length)
      out["baselines"][name][method] = bleu_scores(res["candidates"], res["references"])
  recon = crae_titles.visible_title_reconstruction(config, best["params"], aux, max_length=max_length)
  out["visible_autoencoding"] = bleu_scores(recon["candidates"], recon["references"])
  v = np.asarray(best["factors"]["V"])
  hidden_titled = aux["hidden"] & (aux["lengths"] > 0)
  out["codes"] = {k: recon[k] for k in ("cosine_gamma_decoder_input", "norm_gamma",
                                        "norm_decoder_input")}
  out["codes"]["norm_v_hidden"] = float(np.linalg.norm(v[hidden_titled], axis=1).mean())
  out["codes"]["norm_v_visible"] = float(np.linalg.norm(v[~aux["hidden"] & (aux["lengths"] > 0)],
                                                        axis=1).mean())
  items = produced["decoder"]["items"]
  for k in range(min(n_examples, len(items))):
    j = int(items[k])
    out["examples"].append({
        "item": int(split.items[j]),
        "title": dataset.item_text[int(split.items[j])],
        "true_words": titles_lib.decode(produced["decoder"]["references"][k][0], vocab),
        **{m: titles_lib.decode(produced[m]["candidates"][k], vocab)
           for m in crae_titles.TITLE_METHODS}})
  write_json(workdir / "bleu.json", out)

  log(f"BLEU (x100) of titles for {out['hidden_items_with_title']} hidden-content items "
      f"({out['hidden_items_with_training_clicks']} with a training click; best epoch "
      f"{out['best_epoch']}; references: true titles):")
  for method in crae_titles.TITLE_METHODS:
    s = out["methods"][method]
    log(f"  {method:8s} " + " ".join(f"BLEU-{n}={100 * s[f'bleu_{n}']:.2f}"
                                     for n in range(1, MAX_ORDER + 1))
        + f" (BLEU-4 floor-smoothed {100 * s['bleu_4_floor']:.2f}, BP {s['brevity_penalty']:.3f})")
  s = out["nearest_including_empty_titles"]
  log(f"  (nearest among all visible items, empty titles included: BLEU-1="
      f"{100 * s['bleu_1']:.2f} BLEU-4={100 * s['bleu_4']:.2f})")
  for name, base in out["baselines"].items():
    for method in ("nearest", "nearest_cosine"):
      s = base[method]
      log(f"  {name:8s} ({method}, its own V) " + " ".join(
          f"BLEU-{n}={100 * s[f'bleu_{n}']:.2f}" for n in range(1, MAX_ORDER + 1)))
  s = out["visible_autoencoding"]
  log(f"  (decoder ceiling: {s['items']} visible items decoded from their own titles' "
      f"E[tanh θ]: BLEU-1={100 * s['bleu_1']:.2f} BLEU-4={100 * s['bleu_4']:.2f})")
  c = out["codes"]
  log(f"  codes: cos(γ_j, E[tanh θ_j]) = {c['cosine_gamma_decoder_input']:.3f} (generation from "
      f"v_j needs ~1); mean norms: v hidden {c['norm_v_hidden']:.3f}, v visible "
      f"{c['norm_v_visible']:.3f}, γ {c['norm_gamma']:.3f}, E[tanh θ] "
      f"{c['norm_decoder_input']:.3f}")
  for ex in out["examples"]:
    log(f"  item {ex['item']}: {ex['title']!r}")
    log(f"    true words: {ex['true_words']}")
    log(f"    decoder:    {ex['decoder']}")
    log(f"    rescaled:   {ex['decoder_rescaled']}")
    log(f"    regressed:  {ex['decoder_regressed']}")
    log(f"    nearest:    {ex['nearest']}")
    log(f"    cosine nn:  {ex['nearest_cosine']}")
  log(f"wrote {workdir / 'bleu.json'}")
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO.
  experiment_flags.join_processes()  # Multi-process runs and the compilation cache.
  from experiments import train  # pylint: disable=import-outside-toplevel

  config_file = FLAGS.config or str(Path(__file__).resolve().parent / "configs"
                                    / "crae_bleu_citeulike_a.py")
  try:
    experiment = train.build_experiment(config_file, FLAGS.model, FLAGS.dataset, FLAGS.set,
                                        default_model="crae", only_model="crae")
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from None
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  try:
    run(experiment, FLAGS.workdir, data_dir=FLAGS.data_dir, cache_dir=FLAGS.cache_dir,
        download=FLAGS.download, max_length=FLAGS.max_length, n_examples=FLAGS.examples,
        baselines=FLAGS.baselines)
  except (FileNotFoundError, ValueError) as e:
    if FLAGS["verbosity"].present:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
