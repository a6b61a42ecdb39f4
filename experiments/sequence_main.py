r"""Collaborative-RNN experiments (Ko et al. 2016): next-item NLL of each user's test tail.

  python -m experiments.sequence_main --model=c-gru --dataset=lastfm-s3rec \
      --data_dir=../shared/data --workdir=/tmp/seq/c-gru

Models: uniform, unigram, bigram (Laplace ε), mf (log-count MF, softmax over
items per user), hmm (Baum–Welch, pooled), c-gru, p-gru, c-tanh.  Writes
results.json (test error E of Eq. 3, per-user errors, the user's training-
sequence entropy, timings) in --workdir.  ``--figure=dir1,dir2,...`` instead
draws the paper's Figure 2 (per-user error by entropy tercile) from finished
workdirs into --workdir/figure2.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
MODELS = ("uniform", "unigram", "bigram", "mf", "hmm", "c-gru", "p-gru", "c-tanh")
flags.DEFINE_enum("model", None, MODELS, "Sequence model.")
flags.DEFINE_string("dataset", None, "Dataset name (registry) or path.")
flags.DEFINE_string("data_dir", None, "Where datasets are looked up first.")
flags.DEFINE_string("workdir", None, "Output directory (results.json).")
flags.DEFINE_integer("seed", 0, "Seed of initialization and user order.", lower_bound=0)
flags.DEFINE_integer("max_length", None, "Keep each user's last N events (paper: 5120 on LFM).",
                     lower_bound=2)
flags.DEFINE_float("eps", 0.1, "n-gram Laplace smoothing ε.")
flags.DEFINE_integer("mf_factors", 32, "MF latent dimension.", lower_bound=1)
flags.DEFINE_float("mf_reg", 0.05, "MF weighted-λ.", lower_bound=0.0)
flags.DEFINE_integer("mf_sweeps", 10, "MF ALS sweeps.", lower_bound=1)
flags.DEFINE_integer("hmm_states", 32, "HMM hidden states.", lower_bound=1)
flags.DEFINE_integer("hmm_iters", 20, "Baum–Welch iterations.", lower_bound=1)
flags.DEFINE_float("hmm_smoothing", 1e-3, "Pseudo-count added to every expected count.",
                   lower_bound=0.0)
flags.DEFINE_integer("dim", 32, "RNN hidden units D.", lower_bound=1)
flags.DEFINE_float("dropout", 0.2, "RNN dropout rate.")
flags.DEFINE_float("lr", 3e-3, "RMSprop learning rate.")
flags.DEFINE_integer("batch_users", 64, "Users per jitted RNN step.", lower_bound=1)
flags.DEFINE_integer("window", 128, "Truncated-BPTT window.", lower_bound=1)
flags.DEFINE_integer("epochs", 20, "Most RNN epochs.", lower_bound=1)
flags.DEFINE_integer("patience", 3, "Early stopping: epochs without validation gain.",
                     lower_bound=0)
flags.DEFINE_integer("sampled", 0, "RNN training softmax: 0 full, S > 0 sampled with S negatives.",
                     lower_bound=0)
flags.DEFINE_list("figure", None, "Workdirs of finished runs: draw Figure 2 instead of training.")
# Strict bounds absl's inclusive lower_bound cannot say (checked when the flags are parsed).
flags.register_validator("eps", lambda v: v > 0, "--eps must be > 0 (Laplace smoothing)")
flags.register_validator("lr", lambda v: v > 0, "--lr must be > 0")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")


def _tails_by_positions(logp_rows, history, tail):
  """Per user, the log-probs at the tail positions of rows scored over history + tail."""
  return [row[len(h):len(h) + len(t)] for row, h, t in zip(logp_rows, history, tail)]


def _ngram(split, order):
  from recjax.models import ngram
  model = ngram.fit(split.train(), split.n_items, ngram.Config(order=order, eps=FLAGS.eps))
  history, tail = split.history_and_tail("test")
  return {"test": ngram.tail_log_probs(model, history, tail)}


def _mf(split):
  import jax
  import numpy as np
  from recjax.data.sequences import count_matrix
  from recjax.models import logmf
  counts = count_matrix(split.train(), split.n_items)
  model = logmf.make(logmf.Config(factors=FLAGS.mf_factors, reg=FLAGS.mf_reg))
  key = jax.random.key(FLAGS.seed)
  params, factors = model.init(key, counts)
  buckets = model.prepare(counts)
  for sweep in range(FLAGS.mf_sweeps):
    factors = model.block_step(params, factors, buckets, jax.random.fold_in(key, sweep))
    print(f"mf sweep {sweep + 1}/{FLAGS.mf_sweeps}", flush=True)
  u, v = np.asarray(factors["U"]), np.asarray(factors["V"])
  _, tail = split.history_and_tail("test")
  out = []
  for start in range(0, split.n_users, 1024):
    z = u[start:start + 1024] @ v.T  # Eq. 9
    logz = z - (z.max(1, keepdims=True) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1,
                                                                                       keepdims=True)))
    out += [logz[k][tail[start + k]] for k in range(len(z))]
  return {"test": out}


def _padded_batches(seqs, batch, multiple=64):
  import numpy as np
  from recjax.data.sequences import pad_sequences
  order = np.argsort([-len(s) for s in seqs], kind="stable")
  for start in range(0, len(order), batch):
    ids = order[start:start + batch]
    items, lengths = pad_sequences([seqs[i] for i in ids], multiple)
    if len(ids) < batch:  # fixed batch shape: pad with empty rows.
      items = np.concatenate([items, np.zeros((batch - len(ids), items.shape[1]), np.int32)])
      lengths = np.concatenate([lengths, np.zeros(batch - len(ids), np.int32)])
    mask = (np.arange(items.shape[1])[None] < lengths[:, None]).astype(np.float32)
    yield ids, items, mask


def _hmm(split):
  import jax
  import numpy as np
  from recjax.ops import hmm
  train = split.train()
  counts = np.bincount(np.concatenate(train), minlength=split.n_items)
  params = hmm.init(jax.random.key(FLAGS.seed), FLAGS.hmm_states, split.n_items, counts)
  batch = 256
  for it in range(FLAGS.hmm_iters):
    total = None
    for _, items, mask in _padded_batches(train, batch):
      total = hmm.add_counts(total, hmm.e_step(params, items, mask))
    params = hmm.m_step(total, FLAGS.hmm_smoothing)
    n = sum(map(len, train))
    print(f"hmm iter {it + 1}/{FLAGS.hmm_iters}: train NLL/event {-float(total['loglik']) / n:.4f}",
          flush=True)
  history, tail = split.history_and_tail("test")
  full = [np.concatenate([h, t]) for h, t in zip(history, tail)]
  rows = [None] * len(full)
  for ids, items, mask in _padded_batches(full, batch):
    lp = np.asarray(hmm.predictive_log_probs(params, items, mask))
    for k, u in enumerate(ids):
      rows[u] = lp[k]
  return {"test": _tails_by_positions(rows, history, tail)}


def _rnn(split, cell, pooled):
  import jax
  import numpy as np
  from recjax.data.sequences import next_item_pairs
  from recjax.eval import sequence as seq_eval
  from recjax.models import crnn
  config = crnn.Config(cell=cell, pooled=pooled, dim=FLAGS.dim, dropout=FLAGS.dropout,
                       learning_rate=FLAGS.lr, batch_users=FLAGS.batch_users,
                       window=FLAGS.window, sampled=FLAGS.sampled)
  empty = [np.zeros(0, np.int32)] * split.n_users
  fit_pairs = next_item_pairs(split.fit, empty, config.window)
  valid_pairs = next_item_pairs(*split.history_and_tail("valid"), config.window)
  test_pairs = next_item_pairs(*split.history_and_tail("test"), config.window)
  key = jax.random.key(FLAGS.seed)
  params = crnn.init(key, split.n_users, split.n_items, config)
  state = crnn.init_state(params, config)
  rng = np.random.default_rng(FLAGS.seed)

  def error(p, pairs):
    lp = crnn.score_pairs(p, pairs, config, batch_users=256)
    return seq_eval.tails_from_pairs(lp, pairs["tail_mask"])

  best, best_err, bad, step, curve = None, np.inf, 0, 0, []
  for epoch in range(FLAGS.epochs):
    t0 = time.time()
    params, state, loss, step, n_ev = crnn.train_epoch(
        params, state, fit_pairs, config, jax.random.fold_in(key, 1), rng, step)
    train_s = time.time() - t0
    val, _ = seq_eval.sequence_error(error(params, valid_pairs))
    curve.append({"epoch": epoch + 1, "train_nll": loss, "valid_error": val,
                  "train_seconds": train_s, "events_per_second": n_ev / train_s})
    print(f"epoch {epoch + 1}: train NLL {loss:.4f}  valid E {val:.4f}  "
          f"({train_s:.1f}s, {n_ev / train_s:.0f} events/s)", flush=True)
    if not np.isfinite(loss):
      raise FloatingPointError(f"training NLL is {loss} at epoch {epoch + 1}")
    if val < best_err:
      best, best_err, bad = jax.tree.map(np.asarray, params), val, 0
    else:
      bad += 1
      if bad >= FLAGS.patience:
        break
  return {"test": error(best, test_pairs), "valid_error": best_err, "curve": curve,
          "config": dataclasses.asdict(config)}


def _figure(workdirs, out):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  runs = []
  for d in workdirs:
    with open(os.path.join(d, "results.json")) as f:
      runs.append(json.load(f))
  from recjax.eval.sequence import entropy_terciles
  bins = entropy_terciles(runs[0]["user_entropy"])
  fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
  for b, ax in enumerate(axes):
    data = []
    for r in runs:
      e = np.array([np.nan if x is None else x for x in r["per_user_error"]], dtype=float)
      data.append(e[(bins == b) & np.isfinite(e)])
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(runs) + 1), [r["model"] for r in runs])
    for k, r in enumerate(runs):
      ax.plot([k + 0.7, k + 1.3], [r["test_error"]] * 2, "k-", lw=1)
    ax.axhline(runs[0]["uniform_error"], ls="--", color="gray")
    ax.set_title(["low", "medium", "high"][b] + " entropy")
  axes[0].set_ylabel("per-user error (NLL/event)")
  fig.suptitle(f"{runs[0]['dataset']}: error by entropy tercile (solid: mean over all users)")
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  print(f"wrote {out}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  if FLAGS.figure:
    _figure(FLAGS.figure, os.path.join(FLAGS.workdir, "figure2.png"))
    return
  if not FLAGS.model or not FLAGS.dataset:
    raise app.UsageError("--model and --dataset are required")
  import numpy as np
  from recjax.data import registry
  from recjax.data.sequences import empirical_entropy, sequence_split
  from recjax.eval import sequence as seq_eval
  t0 = time.time()
  inter = registry.load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir).interactions
  split = sequence_split(inter, max_length=FLAGS.max_length)
  n_train = sum(map(len, split.train()))
  print(f"{FLAGS.dataset}: {split.n_users} users, {split.n_items} items, {n_train} training "
        f"events, {sum(map(len, split.test))} test events (dropped unseen: {split.dropped})",
        flush=True)
  runners = {"uniform": lambda s: _ngram(s, 0), "unigram": lambda s: _ngram(s, 1),
             "bigram": lambda s: _ngram(s, 2), "mf": _mf, "hmm": _hmm,
             "c-gru": lambda s: _rnn(s, "gru", False), "p-gru": lambda s: _rnn(s, "gru", True),
             "c-tanh": lambda s: _rnn(s, "tanh", False)}
  out = runners[FLAGS.model](split)
  err, per_user = seq_eval.sequence_error(out.pop("test"))
  seconds = time.time() - t0
  results = {"model": FLAGS.model, "dataset": FLAGS.dataset, "test_error": err,
             "uniform_error": seq_eval.uniform_error(split.n_items), "n_users": split.n_users,
             "n_items": split.n_items, "n_train_events": n_train, "seconds": seconds,
             "flags": {k: FLAGS[k].value for k in ("seed", "max_length", "eps", "mf_factors",
                                                   "mf_reg", "mf_sweeps", "hmm_states",
                                                   "hmm_iters", "dim", "dropout", "lr",
                                                   "batch_users", "window", "epochs", "sampled")},
             "per_user_error": [None if np.isnan(e) else float(e) for e in per_user],
             "user_entropy": empirical_entropy(split.train()).tolist(), **out}
  tmp = os.path.join(FLAGS.workdir, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump(results, f)
  os.replace(tmp, os.path.join(FLAGS.workdir, "results.json"))
  print(f"{FLAGS.model} on {FLAGS.dataset}: test E = {err:.4f} (uniform {results['uniform_error']:.4f})"
        f" in {seconds:.1f}s")


if __name__ == "__main__":
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
