"""ease on gowalla (LightGCN train+test merged) under strong generalization, 10% validation/test users."""


def get_config():
  return {
      "model": "ease",
      "dataset": "gowalla",
      "model_config": {"l2": 500.0},
      "data": {"protocol": "strong"},
      "train": {"metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
