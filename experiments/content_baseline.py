r"""Content alone, no training: how far the items' words get on a hybrid split.

  python -m experiments.content_baseline --dataset=citeulike-t --protocol=P1 --data_dir=../shared/data

A user's profile is the sum of the unit-length word vectors of their fold-in
(training) items; every item is scored by its cosine with that profile, and
ranked under the runner's protocol (`recjax.eval.ranking.evaluate_ranking`:
fold-in items excluded, the same recall code).  It is the reference the hybrid
models (CTR, CDL, CVAE, CRAE, SVDFeature, DeepMusic) should beat: they see the
same words plus the clicks.  ``--weighting`` picks the word vectors: ``tfidf``
(counts x log(I / document frequency), the default), ``counts``, ``binary``.
``--cold_start`` also reports the metrics on the items no training row touched.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from absl import app, flags

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a program: the test suite imports this module beside
  other experiment binaries that define flags of the same names (absl's registry is global)."""
  flags.DEFINE_string("dataset", "citeulike-a", "A dataset with item content (citeulike-a / -t).")
  flags.DEFINE_string("protocol", "P1", "Split protocol: P1, P10 (published), random-P1..P10.")
  flags.DEFINE_integer("split_seed", 98765, "Seed of the random-P splits.")
  flags.DEFINE_string("data_dir", None, "Where datasets are looked up first.")
  flags.DEFINE_enum("weighting", "tfidf", ["tfidf", "counts", "binary"], "Word weights.")
  flags.DEFINE_bool("cold_start", False, "Also evaluate on the cold items only.")
  flags.DEFINE_integer("batch_size", 250, "Users per evaluation batch.")


METRICS = (tuple(f"recall@{m}" for m in range(50, 301, 50))
           + tuple(f"recall_cdl@{m}" for m in range(50, 301, 50))
           + tuple(f"recall_train_test@{m}" for m in range(50, 301, 50)) + ("map@500",))


def item_vectors(content: sp.spmatrix, weighting: str = "tfidf") -> sp.csr_matrix:
  """Unit-length rows of `content` [I, W] under `weighting` (empty rows stay 0)."""
  x = sp.csr_matrix(content, dtype=np.float32, copy=True)
  if weighting == "binary":
    x.data[:] = 1.0
  elif weighting == "tfidf":
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    x = sp.csr_matrix(x @ sp.diags(np.log(x.shape[0] / np.maximum(df, 1)).astype(np.float32)))
  elif weighting != "counts":
    raise ValueError(f"weighting must be tfidf, counts or binary, got {weighting!r}")
  norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
  return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x, dtype=np.float32)


def score(state, inputs):
  """Scores [B, I]: each item's cosine with the sum of the user's fold-in items' vectors."""
  x = state  # BCOO [I, W]
  profile = (x.T @ inputs.T).T  # [B, W]
  return (x @ profile.T).T


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from jax.experimental import sparse as jsp  # pylint: disable=import-outside-toplevel
  from recjax.data import content, pipeline  # pylint: disable=import-outside-toplevel
  from recjax.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  from recjax.eval.ranking import evaluate_ranking  # pylint: disable=import-outside-toplevel
  from recjax.eval.cold_start import cold_items  # pylint: disable=import-outside-toplevel

  t0 = time.perf_counter()
  try:
    dataset = load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir)
    split, info = pipeline.ranking_split(dataset, pipeline.DataConfig(
        protocol=FLAGS.protocol, split_seed=FLAGS.split_seed))
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if dataset.item_content is not None:
    words = dataset.item_content[split.items]
  elif dataset.item_text is not None and dataset.vocabulary is not None:
    words = content.bag_of_words(dataset.item_text, dataset.vocabulary)[split.items]
  else:
    raise app.UsageError(f"dataset {dataset.name!r} has no item content")
  print(f"data {dataset.name}: {info['summary']}; {words.shape[1]} words, "
        f"{int((np.diff(sp.csr_matrix(words).indptr) == 0).sum())} items without any")
  state = jsp.BCOO.from_scipy_sparse(item_vectors(words, FLAGS.weighting))
  fmt = lambda r: " ".join(f"{m}={r[m]:.4f}" for m in METRICS)
  res = evaluate_ranking(score, state, split.test, metrics=METRICS, batch_size=FLAGS.batch_size)
  print(f"test ({res['users']} users, {FLAGS.weighting}): {fmt(res)}")
  if FLAGS.cold_start:
    cold = cold_items(split)
    res = evaluate_ranking(score, state, split.test, metrics=METRICS,
                           batch_size=FLAGS.batch_size, candidates=cold)
    print(f"test, cold items only ({int(cold.sum())} items, {res['users']} users): {fmt(res)}")
  print(f"({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
  define_flags()
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
