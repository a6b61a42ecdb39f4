"""wmf on citeulike-a: content = bag of words of the titles over the 8,000-word vocabulary
(the abstracts are not in ../shared/data), the CVAE authors' P=10 split.

WMF (implicit ALS) with the hybrids' a=1, b=0.01, K=50 and λ=0.1 on U and V, 10 sweeps.

Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "wmf",
      "dataset": "citeulike-a",
      "model_config": {'factors': 50, 'a': 1.0, 'b': 0.01, 'reg': 0.1},
      "data": {"protocol": "P10"},
      "train": {'epochs': 10, 'eval_every': 10, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300'},
  }
