"""The runner's sequence models give the error E the old experiments/sequence_main.py gave.

Written while sequence_main still existed (it is then deleted with this file):
the old binary's own functions (`_ngram`, `_mf`, `_hmm`, `_rnn`) run against
the model modules as they were at HEAD (loaded from git), from the initial
state the runner drew, with the runner's user order and step keys for the RNN.
"""

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

import recjax.models
from experiments import train as exp_train
from recjax.data import registry
from recjax.data import sequences
from recjax.eval import sequence as seq_eval
from recjax.ops import als
from recjax.ops import hmm as hmm_ops

ROOT = Path(__file__).resolve().parents[1]
BASE = "3a81b79"  # The commit before the sequence models moved under the runner.


def _old(module: str, path: str):
  source = subprocess.run(["git", "show", f"{BASE}:{path}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
  mod = types.ModuleType(module)
  mod.__file__ = str(ROOT / path)
  sys.modules[module] = mod  # dataclasses look their module up.
  exec(compile(source, path, "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod


def _write(tmp_path):
  rng = np.random.default_rng(0)
  lines = ["user,item,rating,timestamp"]
  for u in range(30):
    base = rng.integers(0, 25, 4)
    for t in range(int(rng.integers(8, 60))):
      i = base[t % 4] if rng.random() < 0.7 else rng.integers(0, 25)
      lines.append(f"u{u},i{i},1,{1000 + t}")
  path = tmp_path / "seq.csv"
  path.write_text("\n".join(lines) + "\n")
  return path


def _runner(tmp_path, data, model, protocol, overrides):
  exp = exp_train.build_experiment(model=model, dataset=str(data), overrides=[
      f"protocol={protocol}", "binarize_threshold=none", "min_user_count=none",
      "metrics=error,neg_error", "progress=false", *overrides])
  return exp_train.run_experiment(exp, str(tmp_path / model), log=lambda s: None)


@pytest.fixture
def old_main():
  from experiments import sequence_main
  return sequence_main


def _flags(old_main, data, *flags):
  old_main.FLAGS.unparse_flags()
  old_main.FLAGS(["sequence_main", f"--dataset={data}", "--workdir=/tmp/unused", *flags])


def _old_split(data):
  inter = registry.load_dataset(str(data)).interactions
  return sequences.sequence_split(inter)


@pytest.mark.parametrize("name,order", [("uniform", 0), ("unigram", 1), ("bigram", 2)])
def test_ngrams_match(tmp_path, monkeypatch, old_main, name, order):
  data = _write(tmp_path)
  new = _runner(tmp_path, data, name, "sequence-tail-novalid", ["eps=0.3"])
  _flags(old_main, data, "--eps=0.3")
  monkeypatch.setattr(recjax.models, "ngram", _old("old_ngram", "recjax/models/ngram.py"))
  old, _ = seq_eval.sequence_error(old_main._ngram(_old_split(data), order)["test"])
  assert new["test"]["error"] == pytest.approx(old, rel=1e-6)


def test_hmm_matches(tmp_path, monkeypatch, old_main):
  data = _write(tmp_path)
  drawn = {}
  init = hmm_ops.init
  monkeypatch.setattr(hmm_ops, "init", lambda *a, **k: drawn.setdefault("p", init(*a, **k)))
  new = _runner(tmp_path, data, "hmm", "sequence-tail-novalid", ["epochs=4", "states=5"])
  _flags(old_main, data, "--hmm_iters=4", "--hmm_states=5")
  old, _ = seq_eval.sequence_error(old_main._hmm(_old_split(data))["test"])
  assert new["test"]["error"] == pytest.approx(old, rel=1e-5)


def test_logcount_mf_matches(tmp_path, monkeypatch, old_main):
  data = _write(tmp_path)
  drawn = {}
  init = als.init_factors
  monkeypatch.setattr(als, "init_factors", lambda *a, **k: drawn.setdefault("f", init(*a, **k)))
  new = _runner(tmp_path, data, "mf-logcount", "sequence-tail-novalid",
                ["epochs=3", "dim=4", "reg=0.05"])
  _flags(old_main, data, "--mf_sweeps=3", "--mf_factors=4", "--mf_reg=0.05")
  monkeypatch.setattr(recjax.models, "logmf", _old("old_logmf", "recjax/models/logmf.py"))
  old, _ = seq_eval.sequence_error(old_main._mf(_old_split(data))["test"])
  assert new["test"]["error"] == pytest.approx(old, rel=1e-5)


def test_cgru_matches(tmp_path, monkeypatch, old_main):
  data = _write(tmp_path)
  from recjax.models import crnn
  drawn = {}
  init = crnn.init

  def record(*a, **k):
    params = init(*a, **k)
    drawn["p"] = jax.tree.map(np.array, params)  # A copy: the runner donates its buffers.
    return params

  monkeypatch.setattr(crnn, "init", record)
  new = _runner(tmp_path, data, "c-gru", "sequence-tail",
                ["epochs=3", "dim=8", "window=16", "batch_size=8", "patience=4", "seed=3"])
  old_crnn = _old("old_crnn", "recjax/models/crnn.py")
  # The runner's initial parameters, user order (by epoch) and loop key.
  old_params = {k: drawn["p"][k] for k in ("shared", "user")}  # Not the carried state.
  monkeypatch.setattr(old_crnn, "init", lambda *a, **k: jax.tree.map(jax.numpy.asarray, old_params))
  epoch = {"n": 0}

  def order(rng, lengths, batch_users):
    epoch["n"] += 1
    from recjax.data import batching
    return batching.length_grouped_order(lengths, batch_users, 3, epoch["n"], group_batches=8)

  monkeypatch.setattr(old_crnn, "batch_order", order)
  rng_loop = jax.random.split(jax.random.PRNGKey(3))[1]
  train_epoch = old_crnn.train_epoch
  monkeypatch.setattr(old_crnn, "train_epoch",
                      lambda p, s, pairs, c, key, rng, step: train_epoch(p, s, pairs, c, rng_loop,
                                                                         rng, step))
  monkeypatch.setattr(recjax.models, "crnn", old_crnn)
  _flags(old_main, data, "--epochs=3", "--dim=8", "--window=16", "--batch_users=8",
         "--patience=4", "--seed=3")
  out = old_main._rnn(_old_split(data), "gru", False)
  old, _ = seq_eval.sequence_error(out["test"])
  assert new["validation"]["error"] == pytest.approx(out["valid_error"], rel=1e-5)
  assert new["test"]["error"] == pytest.approx(old, rel=1e-5)
  curve = [json.loads(l) for l in (tmp_path / "c-gru" / "metrics.jsonl").read_text().splitlines()]
  for rec, old_rec in zip(curve, out["curve"]):
    assert rec["train"]["loss"] == pytest.approx(old_rec["train_nll"], rel=1e-5)
