"""cvae on citeulike-t: content = mult.dat (20,000 words), the CVAE authors' P=10 split.

CVAE (Li & She 2017): K=50, tied 200-100 / 100-200 sigmoid networks, Bernoulli likelihood on
word-max-scaled counts, a=1, b=0.01, λ_u=0.1, λ_v=10, λ_r=1 (the authors' code), Adam 1e-3 on
128 items/batch.  Pretraining: 3 epochs per layerwise stage (layer-1 DAE, layer-2 DAE, latent
VAE), then 3 epochs of the whole VAE; then 18 epochs of the MAP alternation (30 epochs in all;
the authors: 50 per stage, 100 VAE, 100 CVAE).

Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "cvae",
      "dataset": "citeulike-t",
      "model_config": {'factors': 50, 'hidden': (200, 100), 'a': 1.0, 'b': 0.01, 'reg_u': 0.1, 'reg_v': 10.0, 'reg_r': 1.0, 'likelihood': 'bernoulli', 'learning_rate': 0.001, 'layerwise_epochs': 3, 'pretrain_epochs': 3},
      "data": {"protocol": "P10"},
      "train": {'epochs': 30, 'eval_every': 30, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
