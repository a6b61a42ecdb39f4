"""crae on citeulike-a, a fresh random "P items per user" split (protocols "random-P1" ...
"random-P10", recjax.data.psplits): P random items of every user train, the rest test (CRAE
§4.2, P ∈ {1..5}, Figure 2).  P = 1 by default; `--set protocol=random-P3` picks another.

Every other setting is crae_citeulike_a_p1.py's (the paper's α=1, β=0.01, K=50, K_W=100,
wildcards at 0.4, beta-pooling a=400, b=311; Adam 1e-3 on 128 items/batch; 80 epochs,
evaluated once after the last one: validation is the test set, so nothing is selected on it).
Metrics: recall@M (Liang et al.'s, / min(M, |I_u|)) and recall_cdl@M (the paper's recall, / |I_u|)
at M = 50..300, and mAP@500 (the paper's Table 2 cutoff).

The paper repeats each P five times with different training sets and averages: run this
config with `--set protocol=random-P${P} --set split_seed=${S}` for S = 1..5 into five
workdirs per P.
`--set epochs=1` for a smoke run.
"""


def get_config():
  return {
      "model": "crae",
      "dataset": "citeulike-a",
      "model_config": {'dim': 50, 'word_dim': 100, 'vocab_size': 8000, 'a': 1.0, 'b': 0.01, 'reg_u': 1.0, 'reg_v': 10.0, 'precision': 10.0, 'reg_w': 1e-4, 'noise': 'wildcard', 'noise_rate': 0.4, 'pooling': 'beta', 'pool_a': 400.0, 'pool_b': 311.0, 'learning_rate': 0.001, 'length_multiple': 4},
      "data": {"protocol": "random-P1", "split_seed": 1},
      "train": {'epochs': 80, 'eval_every': 80, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300', 'map@500'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
