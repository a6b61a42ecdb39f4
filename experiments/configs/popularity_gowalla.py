"""popularity on gowalla (LightGCN train+test merged) under strong generalization, 10% validation/test users."""


def get_config():
  return {
      "model": "popularity",
      "dataset": "gowalla",
      "model_config": {},
      "data": {"protocol": "strong"},
      "train": {"metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
