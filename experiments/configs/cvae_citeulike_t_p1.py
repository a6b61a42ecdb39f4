"""cvae on citeulike-t: content = mult.dat (20,000 words), the CVAE authors' P=1 split.

CVAE (Li & She 2017): K=50, tied 200-100 / 100-200 sigmoid networks, Bernoulli likelihood on
word-max-scaled counts, a=1, b=0.01, λ_u=0.1, λ_v=10, λ_r=1 (the authors' code), Adam on 128
items/batch.  Pretraining (the authors' code: Adam at 1e-2, no weight decay, 50 epochs per
layerwise stage, 50 latent, 100 VAE): 5 epochs per layerwise stage (layer-1 DAE, layer-2 DAE,
latent VAE), then 3 epochs of the whole VAE; then 12 epochs of the MAP alternation (30 in all).
Adam at 1e-2 throughout (at 1e-3 the layerwise DAEs barely leave the bias-only reconstruction in
a few epochs: issue 5).  KL warm-up (a training-procedure choice the paper leaves open): in the
latent-VAE and whole-VAE pretraining stages the KL weight rises 0, 1/3, 2/3, 1 over 3 epochs;
at weight 1 from the start those stages collapse the posterior (KL -> 0, μ_j the same vector
for every item) on citeulike-a's 5-word titles, and the MAP stage cannot recover from it.  The MAP
stage always optimizes the paper's objective (KL weight 1).
The schedule was worked out on citeulike-a P=1 (issue 5) and is used unchanged here.

Evaluated only after the last epoch (eval_every = epochs): the predefined split has no
validation set of its own (weak_generalization_split makes validation = test), so no
epoch or hyperparameter is chosen on it.
"""


def get_config():
  return {
      "model": "cvae",
      "dataset": "citeulike-t",
      "model_config": {'factors': 50, 'hidden': (200, 100), 'a': 1.0, 'b': 0.01, 'reg_u': 0.1, 'reg_v': 10.0, 'reg_r': 1.0, 'likelihood': 'bernoulli', 'learning_rate': 0.01, 'layerwise_epochs': 5, 'pretrain_epochs': 3, 'kl_warmup_epochs': 3},
      "data": {"protocol": "P1"},
      "train": {'epochs': 30, 'eval_every': 30, 'metrics': ('recall@50', 'recall@100', 'recall@150', 'recall@200', 'recall@250', 'recall@300', 'recall_cdl@50', 'recall_cdl@100', 'recall_cdl@150', 'recall_cdl@200', 'recall_cdl@250', 'recall_cdl@300'), 'select_metric': 'recall_cdl@300', 'batch_size': 128},
  }
