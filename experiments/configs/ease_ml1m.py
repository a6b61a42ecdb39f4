"""ease on ml-1m-lightgcn (ratings >= 3, merged) under strong generalization, 10% validation/test users."""


def get_config():
  return {
      "model": "ease",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"l2": 500.0},
      "data": {"protocol": "strong"},
      "train": {"metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
