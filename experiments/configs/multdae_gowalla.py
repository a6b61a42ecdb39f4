"""mult-dae on gowalla: [I → 200 → I], dropout 0.5, λ = 0.001, Adam 1e-3, 500 users/batch, 50 epochs, best epoch (of every 5th) by validation NDCG@100.

Architecture and λ are ml-1m-lightgcn's validation choice (multdae_ml1m.py), not reselected
here, and the run is 50 epochs instead of the paper's 100: a full-softmax epoch over 40,981
items takes ~30-60 s on one core of the 2-core CPU.  Sparse input layer (padded item lists;
the same loss as dense rows).
"""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "gowalla",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.001, "learning_rate": 1e-3, "sparse_input": True},
      "data": {"protocol": "strong"},
      "train": {"epochs": 50, "batch_size": 500, "eval_every": 5,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
