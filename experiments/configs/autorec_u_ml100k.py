"""U-AutoRec on ml-100k ratings: users as rows; a random 90/10 split of the ratings.

5% of the 90 validates (data protocol "ratings").

The paper's network (500 sigmoid units, identity output) and full-batch Rprop;
lambda = 100 chosen on validation RMSE from {30, 100, 300}.
"""


def get_config():
  return {
      "model": "autorec",
      "dataset": "ml-100k",
      "model_config": {"hidden": (500,), "l2": 100.0, "optimizer": "rprop", "learning_rate": 1e-3},
      "data": {"protocol": "ratings"},
      "train": {"epochs": 300, "batch_size": 2000, "eval_every": 10,
                "metrics": ("rmse", "mae", "neg_rmse"), "select_metric": "neg_rmse",
                "progress": False},
  }
