"""crae on citeulike-a: each item's title as a word sequence over the 8,000-word vocabulary
(words outside it, mostly stop words, dropped; recjax.data.titles), the CVAE authors' P=1 split.

CRAE (Wang, Shi & Yeung, NIPS 2016, §4.3): α=1, β=0.01, K=50, K_W=100, wildcard denoising
at rate 0.4; beta-pooling with a=400, b=311 (Table 1's best); λ_u=1, λ_v=10, λ_s=10, λ_w=1e-4
(not in the paper's main text; see recjax/models/crae.py for every choice it leaves open).
Adam 1e-3 on 128 items/batch, batch widths padded to a multiple of 4 words (the loss does
not depend on the padding; 8 would run the softmax on ~1.5x the real positions); 80 epochs ("CRAE needs about 80 epochs", §4.4).

Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.  `--set epochs=1` for a smoke run.
"""


def get_config():
  return {
      "model": "crae",
      "dataset": "citeulike-a",
      "model_config": {'dim': 50, 'word_dim': 100, 'vocab_size': 8000, 'a': 1.0, 'b': 0.01, 'reg_u': 1.0, 'reg_v': 10.0, 'precision': 10.0, 'reg_w': 1e-4, 'noise': 'wildcard', 'noise_rate': 0.4, 'pooling': 'beta', 'pool_a': 400.0, 'pool_b': 311.0, 'learning_rate': 0.001, 'length_multiple': 4},
      "data": {"protocol": "P1"},
      "train": {'epochs': 80, 'eval_every': 80, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
