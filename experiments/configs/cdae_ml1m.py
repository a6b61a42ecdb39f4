"""cdae on ml-1m-lightgcn under strong generalization, as the Mult-VAE paper ran CDAE (§4.4).

K = 200, tanh at bottleneck and output, weighted square loss (c_1 = 5, c_0 = 1),
dropout corruption 0.5, Adam 1e-3 on batches of 500 users, 200 epochs, best epoch by
validation NDCG@100; L2 weight λ = l2 = 0.1 chosen on validation NDCG@100 after 60 epochs
(λ = 0.001: 0.4598, 0.01: 0.4606, 0.1: 0.4692, 1: 0.4029); unseen users folded in by
50 Adam steps on their user vector with the network fixed.
"""


def get_config():
  return {
      "model": "cdae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden": (200,), "dropout": 0.5, "click_weight": 5.0, "l2": 0.1,
                       "learning_rate": 1e-3, "fold_in_steps": 50},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500, "eval_every": 10,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
