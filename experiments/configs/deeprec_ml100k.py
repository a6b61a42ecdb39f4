"""DeepRec on ml-100k ratings: users as rows; a random 90/10 split of the ratings.

5% of the 90 validates (data protocol "ratings").

The paper's network and training: SELU, encoder 512-512-1024 mirrored, dropout 0.8
on the code, one dense re-feeding step, SGD with momentum 0.9, learning rate 0.005
and batch 128 (its Netflix command); 400 epochs, as validation RMSE still falls at 200.
"""


def get_config():
  return {
      "model": "deeprec",
      "dataset": "ml-100k",
      "model_config": {"hidden": (512, 512, 1024), "dropout": 0.8, "refeed_steps": 1,
                       "optimizer": "momentum", "learning_rate": 0.005, "momentum": 0.9},
      "data": {"protocol": "ratings"},
      "train": {"epochs": 400, "batch_size": 128, "eval_every": 5,
                "metrics": ("rmse", "mae", "neg_rmse"), "select_metric": "neg_rmse",
                "progress": False},
  }
