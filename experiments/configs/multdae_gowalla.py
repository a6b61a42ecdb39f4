"""mult-dae on gowalla: [I → 600 → 200 → 600 → I] (the paper's choice for its larger datasets), dropout 0.5, λ = 0.01, Adam 1e-3, 500 users/batch, 200 epochs, best epoch by validation NDCG@100."""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "gowalla",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.01, "learning_rate": 1e-3},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
