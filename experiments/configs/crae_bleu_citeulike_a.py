"""crae sequence generation on the fly on citeulike-a (CRAE §4.2, Table 3), for experiments/crae_bleu.py.

As the paper reads: P = 5 ("For the sequence generation task, we set P = 5"; here a fresh
random P=5 split, protocol "random-P5", split_seed 1), 20% of the items chosen at random never
show their title to the network (hidden_content_fraction 0.2, hidden_content_seed 0), and
after training the titles of those items are generated from their learned v_j and scored by
BLEU against the true titles; the nearest-neighbour baseline (the title of the visible item
with the nearest v) stands in for the models that cannot generate (CDL, CTR, PMF).
The paper also uses abstract sentences as references; citeulike-a has no abstracts here,
so references are the titles only (see experiments/crae_bleu.py).

Every other setting is crae_citeulike_a_p1.py's (α=1, β=0.01, K=50, K_W=100, wildcards at 0.4,
beta-pooling a=400, b=311, Adam 1e-3 on 128 items/batch, 80 epochs, one evaluation after the
last epoch).  The recommendation metrics of this run (results.json) are those of a P=5
split with 20% of the items content-free, not the P=5 point of Figure 2.
`--set epochs=1` for a smoke run.
"""


def get_config():
  return {
      "model": "crae",
      "dataset": "citeulike-a",
      "model_config": {'dim': 50, 'word_dim': 100, 'vocab_size': 8000, 'a': 1.0, 'b': 0.01, 'reg_u': 1.0, 'reg_v': 10.0, 'precision': 10.0, 'reg_w': 1e-4, 'noise': 'wildcard', 'noise_rate': 0.4, 'pooling': 'beta', 'pool_a': 400.0, 'pool_b': 311.0, 'learning_rate': 0.001, 'length_multiple': 4, 'hidden_content_fraction': 0.2, 'hidden_content_seed': 0},
      "data": {"protocol": "random-P5", "split_seed": 1},
      "train": {'epochs': 80, 'eval_every': 80, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300', 'map@500'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
