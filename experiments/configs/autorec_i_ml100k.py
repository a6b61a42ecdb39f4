"""I-AutoRec on ml-100k ratings: items as rows; a random 90/10 split of the ratings.

5% of the 90 validates (data protocol "ratings-items").

The paper's network (500 sigmoid units, identity output) and full-batch Rprop;
lambda = 300 chosen on validation RMSE from {100, 200, 300, 1000}.
"""


def get_config():
  return {
      "model": "autorec",
      "dataset": "ml-100k",
      "model_config": {"hidden": (500,), "l2": 300.0, "optimizer": "rprop", "learning_rate": 1e-3},
      "data": {"protocol": "ratings-items"},
      "train": {"epochs": 300, "batch_size": 2000, "eval_every": 10,
                "metrics": ("rmse", "mae", "neg_rmse"), "select_metric": "neg_rmse",
                "progress": False},
  }
