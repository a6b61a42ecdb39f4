"""mult-dae on ml-1m-lightgcn: [I → 200 → I] (the paper's ML-1M architecture, Table 3), dropout 0.5, λ = 0.01, Adam 1e-3, 500 users/batch, 200 epochs, best epoch by validation NDCG@100."""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.01, "learning_rate": 1e-3},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
