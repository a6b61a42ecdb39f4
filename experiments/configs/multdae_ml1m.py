"""mult-dae on ml-1m-lightgcn: [I → 600 → 200 → 600 → I], dropout 0.5, λ = 0.01, Adam 1e-3, 500 users/batch, 200 epochs, best epoch by validation NDCG@100.

Architecture chosen on validation NDCG@100 as in the paper (§4.3): 1 hidden layer 0.4379,
0 hidden layers ([I → 200 → I], `--set hidden_dims=`) 0.4158.
"""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.01, "learning_rate": 1e-3},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
