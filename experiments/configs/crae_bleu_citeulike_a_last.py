"""crae_bleu_citeulike_a.py with the degenerate pooling γ_j = tanh(θ_j) (pooling="last").

The paper (§3.5) fixes beta-pooling so that Beta(a, b) "peaks slightly to the left of
x = 0.5 ... which leads to γ_j = tanh(θ_j)".  Only then does v_j (which λ_v ties to γ_j)
live in the decoder's input space, so generating a hidden item's title from v_j means
something: with Beta(400, 311) the pooled γ_j of visible items is nearly orthogonal to
E[tanh(θ_j)] (mean cosine 0.085 on the crae_bleu_citeulike_a run, and BLEU-1 0.4 when
decoding from γ_j against 17.4 from E[tanh(θ_j)]; WORKSPACE, issue 6).  Everything else is
crae_bleu_citeulike_a.py's.
"""


def get_config():
  return {
      "model": "crae",
      "dataset": "citeulike-a",
      "model_config": {'factors': 50, 'hidden': 100, 'vocab_size': 8000, 'a': 1.0, 'b': 0.01, 'reg_u': 1.0, 'reg_v': 10.0, 'precision': 10.0, 'reg_w': 1e-4, 'noise': 'wildcard', 'noise_rate': 0.4, 'pooling': 'last', 'pool_a': 400.0, 'pool_b': 311.0, 'learning_rate': 0.001, 'length_multiple': 4, 'hidden_content_fraction': 0.2, 'hidden_content_seed': 0},
      "data": {"protocol": "random-P5", "split_seed": 1},
      "train": {'epochs': 80, 'eval_every': 80, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300', 'map@500'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
