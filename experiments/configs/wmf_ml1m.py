"""wmf on ml-1m-lightgcn (ratings >= 3, merged) under strong generalization, 10% validation/test users."""


def get_config():
  return {
      "model": "wmf",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"factors": 100, "a": 10.0, "reg": 0.01},
      "data": {"protocol": "strong"},
      "train": {"epochs": 10, "metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
