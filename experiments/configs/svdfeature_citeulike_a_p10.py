"""svdfeature on citeulike-a: content = bag of words of the titles over the 8,000-word vocabulary (the abstracts are not in ../shared/data), the CVAE authors' P=10 split.

SVDFeature-style feature MF: v_j = Σ_w x̃_jw e_w + d_j (x̃ = unit-l2 word counts), a=1, b=0.01, K=50, λ_u=0.1, λ_e=1, λ_d=10, implicit ALS on U and 20 warm-started CG steps on (E, D) per block step, 20 block steps.
Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "svdfeature",
      "dataset": "citeulike-a",
      "model_config": {'factors': 50, 'a': 1.0, 'b': 0.01, 'reg_u': 0.1, 'reg_words': 1.0, 'reg_offset': 10.0, 'n_words': 8000, 'cg_steps': 20},
      "data": {"protocol": "P10"},
      "train": {'epochs': 20, 'eval_every': 20, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300'},
  }
