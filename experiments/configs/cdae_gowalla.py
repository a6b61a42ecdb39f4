"""cdae on gowalla (40,981 items) under strong generalization; the ml-1m-lightgcn settings (see cdae_ml1m.py).

The per-user table has one row per training user (23,888 x 200) and the network 2 x 41k x 200
weights; one epoch is 48 batches of 500 dense [500, 41k] rows.  30 epochs (not 200), best of every 5th by
validation NDCG@100: the 2-core CPU budget.
"""


def get_config():
  return {
      "model": "cdae",
      "dataset": "gowalla",
      "model_config": {"hidden": (200,), "dropout": 0.5, "click_weight": 5.0, "l2": 0.1,
                       "learning_rate": 1e-3, "fold_in_steps": 50},
      "data": {"protocol": "strong"},
      "train": {"epochs": 30, "batch_size": 500, "eval_every": 5,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
