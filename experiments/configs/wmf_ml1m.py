"""wmf on ml-1m-lightgcn under strong generalization; K and a chosen on validation NDCG@100 from the paper's grid."""


def get_config():
  return {
      "model": "wmf",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"dim": 100, "a": 5.0, "reg": 0.01},
      "data": {"protocol": "strong"},
      "train": {"epochs": 10, "metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
