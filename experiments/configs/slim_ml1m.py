"""slim on ml-1m-lightgcn (ratings >= 3, merged), strong generalization, 10% validation/test users.

l1 = l2 = 5 is the best validation NDCG@100 of the Mult-VAE grid (both over
{0.1, 0.5, 1, 5}); 200 and 1000 ADMM iterations give the same metrics to 3 decimals.
"""


def get_config():
  return {
      "model": "slim",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"l1": 5.0, "l2": 5.0, "n_iters": 200},
      "data": {"protocol": "strong"},
      "train": {"metrics": ("recall@20", "recall@50", "ndcg@100")},
  }
