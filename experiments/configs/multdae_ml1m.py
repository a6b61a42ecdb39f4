"""mult-dae on ml-1m-lightgcn: [I → 200 → I], dropout 0.5, λ = 0.001, Adam 1e-3, 500 users/batch, 200 epochs, best epoch by validation NDCG@100.

Architecture and λ chosen on validation NDCG@100 (best epoch of 200), as the paper does (§4.3):

| architecture | λ | users/batch | validation NDCG@100 |
|---|---|---|---|
| [I → 200 → I] | 0.001 | 500 | **0.4618** (this config) |
| [I → 200 → I] | 0.001 | 100 | 0.4596 |
| [I → 200 → I] | 0.01 (the paper's) | 500 | 0.4158 |
| [I → 200 → I] | 0.0001 | 500 | 0.4467 (stopped at epoch 67) |
| [I → 600 → 200 → 600 → I] | 0.01 | 500 | 0.4379 |
| [I → 600 → 200 → 600 → I] | 0.001 | 100 | 0.4250 (stopped at epoch 85) |

ML-1M has 4,833 training users against ML-20M's 116,677: the paper's λ = 0.01 over-regularizes.
"""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.001, "learning_rate": 1e-3},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
