"""popularity on ml-1m-lightgcn (ratings >= 3, merged) under strong generalization, 10% validation/test users."""


def get_config():
  return {
      "model": "popularity",
      "dataset": "ml-1m-lightgcn",
      "model_config": {},
      "data": {"protocol": "strong"},
      "train": {"metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
