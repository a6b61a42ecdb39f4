"""deepmusic on citeulike-a: content = bag of words of the titles over the 8,000-word vocabulary (the abstracts are not in ../shared/data), the CVAE authors' P=10 split.

DeepMusic (van den Oord et al. 2013), loosely coupled: WMF (a=1, b=0.01, K=50, λ=0.1, 10 sweeps in the first block step), then an MLP W-200-50 (ReLU) regresses the WMF item factors of the clicked items from their bag of words (each word / its max), AdamW 1e-3, weight decay 1e-4, 128 items/batch, 50 epochs; every item is scored through its regressed factor.
Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.  Checkpoints are off: with eval_every > 1 the runner
saves the initial best_params after the optax steps have donated them ("Array has been
deleted"); the run takes minutes.
"""


def get_config():
  return {
      "model": "deepmusic",
      "dataset": "citeulike-a",
      "model_config": {'factors': 50, 'a': 1.0, 'b': 0.01, 'reg_u': 0.1, 'reg_v': 0.1, 'wmf_sweeps': 10, 'hidden': (200,), 'learning_rate': 0.001, 'weight_decay': 0.0001, 'score_items': 'regressed'},
      "data": {"protocol": "P10"},
      "train": {'epochs': 50, 'eval_every': 50, 'batch_size': 128, 'checkpoint': False, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300'},
  }
