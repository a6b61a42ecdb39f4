"""Table 4 row: Logistic-DAE on ml-1m-lightgcn: multdae_ml1m.py's network and training ([I → 200 → I], λ = 0.001, 500 users/batch) with the logistic (Bernoulli) likelihood, Eq. 4 (λ not reselected for this likelihood)."""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.001, "learning_rate": 1e-3,
                       "likelihood": "logistic"},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
