"""mult-dae on gowalla: [I → 200 → I], dropout 0.5, λ = 1e-5, Adam 1e-3, 500 users/batch, 50 epochs, best epoch (of every 5th) by validation NDCG@100.

The architecture is ml-1m-lightgcn's validation choice (multdae_ml1m.py); λ is reselected on
gowalla's validation users, because ml-1m's λ = 0.001 (λ Σ‖W‖² over 2 x 41k x 200 weights)
over-regularizes the larger catalog.  Validation NDCG@100 of the best (= last) epoch:

    λ = 0.001: 0.1406    λ = 1e-4: 0.2189    λ = 1e-5: 0.2250 (chosen)

(`--set l2=...`; every run still rising at epoch 50).  50 epochs instead of the
paper's 100: a full-softmax epoch over 40,981 items takes ~33 s on one core of the 2-core CPU.
Sparse input layer (padded item lists; the same loss as dense rows).
"""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "gowalla",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 1e-5, "learning_rate": 1e-3, "sparse_input": True},
      "data": {"protocol": "strong"},
      "train": {"epochs": 50, "batch_size": 500, "eval_every": 5,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
