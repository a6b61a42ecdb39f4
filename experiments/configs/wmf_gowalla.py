"""wmf on gowalla under strong generalization; ml-1m-lightgcn's choice from the paper's grid (K = 100, a = 5, λ = 0.01), not reselected on gowalla; best of 10 sweeps by validation NDCG@100."""


def get_config():
  return {
      "model": "wmf",
      "dataset": "gowalla",
      "model_config": {"dim": 100, "a": 5.0, "reg": 0.01},
      "data": {"protocol": "strong"},
      "train": {"epochs": 10, "metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
