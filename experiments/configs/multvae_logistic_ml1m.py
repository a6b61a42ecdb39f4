"""Table 4 row: Logistic-VAE^PR on ml-1m-lightgcn, multvae_ml1m.py with the logistic (Bernoulli) likelihood, Eq. 4 (β schedule and cap as Mult-VAE^PR's, not reselected)."""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 2000, "anneal_cap": 0.5245,
                       "likelihood": "logistic"},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
