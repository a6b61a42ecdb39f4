"""Table 4 row: Logistic-VAE^PR on ml-1m-lightgcn: multvae_ml1m.py's network, β schedule and cap ([I → 200 → I], 100 users/batch, β* = 0.2799, not reselected for this likelihood) with the logistic (Bernoulli) likelihood, Eq. 4."""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 9800, "anneal_cap": 0.2799,
                       "likelihood": "logistic"},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 100,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
