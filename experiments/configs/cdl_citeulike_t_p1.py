"""cdl on citeulike-t: content = mult.dat (20,000 words), the CVAE authors' P=1 split.

CDL (Wang, Wang & Yeung 2015) with the CVAE paper's settings: two-layer SDAE W-200-50-200-W,
masking noise 0.3, dropout 0.1, a=1, b=0.01, K=50, λ_u=1, λ_v=10, λ_n=1000, λ_w=1e-4, Adam 1e-3
on 128 items/batch.  Pretraining: 5 epochs per greedy layerwise stage (2 stages), then 4 epochs
of the whole SDAE; then 16 epochs of the MAP alternation (30 in all; the paper fine-tunes 200).
Weight decay in a layerwise stage covers only the layers that stage trains (issue 5: decaying
the "fixed" layers through Adam erased them between stages).  Adam stays at 1e-3: at 1e-2 the
whole-SDAE stage saturates every code unit within an epoch (one code for every item).
The schedule was worked out on citeulike-a P=1 (issue 5) and is used unchanged here.

Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "cdl",
      "dataset": "citeulike-t",
      "model_config": {'factors': 50, 'hidden': (200,), 'a': 1.0, 'b': 0.01, 'reg_u': 1.0, 'reg_v': 10.0, 'reg_n': 1000.0, 'reg_w': 0.0001, 'noise': 0.3, 'dropout': 0.1, 'learning_rate': 0.001, 'layerwise_epochs': 5, 'pretrain_epochs': 4},
      "data": {"protocol": "P1"},
      "train": {'epochs': 30, 'eval_every': 30, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
