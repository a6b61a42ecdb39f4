"""ctr on citeulike-a: content = bag of words of the titles over the 8,000-word vocabulary (the abstracts are not in ../shared/data), the CVAE authors' P=1 split.

CTR (Wang & Blei 2011) with the CVAE paper's a=1, b=0.01, λ_u=0.1, λ_v=1, K=50 topics; LDA (α=50/K=1, η=0.01, 100 EM iterations of 10 warm-started E-steps) in prepare, then 20 block steps (U, V with prior θ, one θ update each).
Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "ctr",
      "dataset": "citeulike-a",
      "model_config": {'factors': 50, 'a': 1.0, 'b': 0.01, 'reg_u': 0.1, 'reg_v': 1.0, 'theta_steps': 1, 'lda_alpha': 1.0, 'lda_em_iters': 100, 'lda_e_steps': 10, 'lda_eta': 0.01},
      "data": {"protocol": "P1"},
      "train": {'epochs': 20, 'eval_every': 20, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300'},
  }
