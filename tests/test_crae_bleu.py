"""experiments/crae_bleu.py end to end on a tiny citeulike-style dataset with titles (seconds)."""

import json

import numpy as np
import pytest

from experiments import crae_bleu
from experiments import train as exp_train
from recjax.data import registry

N_USERS, N_ITEMS, N_TOPICS, WORDS_PER_TOPIC = 40, 30, 3, 8
VOCAB = [f"w{k}" for k in range(N_TOPICS * WORDS_PER_TOPIC)]


def _write_dataset(root):
  """users.dat + vocabulary.dat + titles whose words follow the items' topics, like citeulike-a."""
  rng = np.random.default_rng(0)
  item_topic = rng.integers(0, N_TOPICS, N_ITEMS)
  user_topic = rng.integers(0, N_TOPICS, N_USERS)
  lines, n_events = [], 0
  for u in range(N_USERS):
    p = np.where(item_topic == user_topic[u], 0.4, 0.05)
    items = np.flatnonzero(rng.random(N_ITEMS) < p)
    if len(items) < 3:
      items = np.union1d(items, rng.choice(N_ITEMS, 3, replace=False))
    lines.append(" ".join(map(str, [len(items), *items])))
    n_events += len(items)
  titles = []
  for j in range(N_ITEMS):
    words = rng.integers(0, WORDS_PER_TOPIC, rng.integers(2, 7)) + WORDS_PER_TOPIC * item_topic[j]
    titles.append("The " + " of ".join(VOCAB[w] for w in words))  # "the", "of": out of vocabulary.
  titles[-1] = "On the of"  # No vocabulary word at all.
  (root / "tiny-cite").mkdir(parents=True)
  (root / "tiny-cite" / "users.dat").write_text("\n".join(lines) + "\n")
  (root / "tiny-cite" / "vocabulary.dat").write_text("\n".join(VOCAB) + "\n")
  (root / "tiny-cite-titles").mkdir()
  (root / "tiny-cite-titles" / "titles.txt").write_text("\n".join(titles) + "\n")
  return registry.DatasetSpec("tiny-cite", "test data", ("tiny-cite",), "citeulike", ("users.dat",),
                              "implicit", N_USERS, N_ITEMS, n_events,
                              titles=("tiny-cite-titles", "titles.txt"))


CONFIG = '''
def get_config():
  return {
      "model": "crae",
      "dataset": "tiny-cite",
      "model_config": {"dim": 4, "word_dim": 8, "vocab_size": 24, "learning_rate": 1e-2,
                       "encode_batch": 16, "hidden_content_fraction": 0.2},
      "data": {"protocol": "random-P2", "split_seed": 3},
      "train": {"epochs": 2, "eval_every": 2, "batch_size": 8, "n_devices": 1, "progress": False,
                "metrics": ("recall_cdl@10", "map@20"), "select_metric": "recall_cdl@10"},
  }
'''


WMF_CONFIG = '''
def get_config():
  return {"model": "wmf", "dataset": "citeulike-a", "data": {"protocol": "P1"},
          "model_config": {"dim": 4},
          "train": {"epochs": 2, "n_devices": 1, "progress": False, "metrics": ("recall_cdl@10",)}}
'''


@pytest.fixture
def flags_parsed():
  """Parses crae_bleu's absl flags from a list; unparsed again afterwards."""
  def parse(args):
    crae_bleu.FLAGS(["crae_bleu", *args])
  yield parse
  crae_bleu.FLAGS.unparse_flags()


def test_main_trains_restores_and_writes_bleu_for_both_methods(tmp_path, monkeypatch, capsys,
                                                               flags_parsed):
  data = tmp_path / "data"
  monkeypatch.setitem(registry.DATASETS, "tiny-cite", _write_dataset(data))
  config = tmp_path / "tiny_config.py"
  config.write_text(CONFIG)
  workdir = tmp_path / "run"
  wmf = tmp_path / "wmf_config.py"
  wmf.write_text(WMF_CONFIG)
  flags_parsed([f"--config={config}", f"--workdir={workdir}", f"--data_dir={data}",
                "--nodownload", "--max_length=6", "--examples=3", "--set", "seed=1",
                f"--baselines={wmf}"])
  crae_bleu.main(["crae_bleu"])
  printed = capsys.readouterr().out

  out = json.loads((workdir / "bleu.json").read_text())
  assert set(out["methods"]) == {"decoder", "decoder_rescaled", "decoder_regressed", "nearest",
                                 "nearest_cosine"}
  ceiling = out["visible_autoencoding"]
  assert ceiling["items"] == 30 - 6 - 1  # Visible items with a title (item 29 has none).
  assert 0.0 <= ceiling["bleu_1"] <= 1.0
  assert -1.0 <= out["codes"]["cosine_gamma_decoder_input"] <= 1.0
  assert out["codes"]["norm_v_hidden"] >= 0 and out["codes"]["norm_gamma"] > 0
  for scores in out["methods"].values():
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "bleu_4_floor", "brevity_penalty"):
      assert 0.0 <= scores[key] <= 1.0, (key, scores[key])
    assert scores["items"] == out["hidden_items_with_title"] > 0
  assert out["hidden_items"] == 6  # 20% of 30 items.
  assert out["epochs_run"] == 2 and out["best_epoch"] == 2
  assert len(out["examples"]) == 3
  for ex in out["examples"]:
    assert ex["true_words"] and set(ex["true_words"].split()) <= set(VOCAB)
    assert set(ex["nearest"].split()) <= set(VOCAB) and set(ex["decoder"].split()) <= set(VOCAB) | {"<unk>"}
  results = json.loads((workdir / "results.json").read_text())
  assert 0.0 <= results["test"]["recall_cdl@10"] <= 1.0
  assert results["run"]["data"]["resolved"]["protocol"] == "random-P2"
  assert "decoder" in printed and "nearest" in printed and "BLEU-4" in printed
  assert "decoder ceiling" in printed and "rescaled:" in printed
  # The baseline ran on the CRAE run's dataset and split (not its config's), then borrowed titles.
  base = out["baselines"]["wmf"]
  for method in ("nearest", "nearest_cosine"):
    assert base[method]["items"] == out["hidden_items_with_title"]
  base_run = json.loads((workdir / "baselines" / "wmf" / "results.json").read_text())["run"]
  assert base_run["dataset"] == "tiny-cite"
  assert base_run["data"]["resolved"]["protocol"] == "random-P2"
  assert "wmf" in printed and "nearest, its own V" in printed
  assert out["examples"][0]["title"] in printed


def test_run_experiment_empties_hidden_items_content(tmp_path, monkeypatch):
  data = tmp_path / "data"
  monkeypatch.setitem(registry.DATASETS, "tiny-cite", _write_dataset(data))
  seen = {}

  def fake_train(model, split, config, workdir, run_info=None, log=print, side=None,
                 return_state=False, ids=None, overwrite=False):
    seen.update(side=side, run_info=run_info, n_items=len(split.items))
    return {}

  monkeypatch.setattr(exp_train, "train_and_evaluate", fake_train)
  experiment = {"model": "cdl", "dataset": "tiny-cite", "data": {"protocol": "random-P2"}}
  hidden = lambda n: np.arange(n) % 3 == 0
  exp_train.run_experiment(experiment, str(tmp_path / "run"), data_dir=str(data), download=False,
                           log=lambda s: None, hidden_content=hidden)
  x = seen["side"]["item_content"]
  rows = np.diff(x.indptr)
  mask = hidden(seen["n_items"])
  assert np.all(rows[mask] == 0) and np.all(rows[~mask][:-1] > 0)  # Last item: no vocabulary word.
  assert seen["run_info"]["hidden_content_items"] == int(mask.sum())
