"""U-AutoRec on ml-100k ratings: users as rows; a random 90/10 split of the ratings.

5% of the 90 validates (data protocol "ratings").

autorec_i_ml100k.py's network (500 sigmoid units, identity output) and full-batch Rprop;
lambda = 100 chosen on validation RMSE from {30, 100, 300}.
"""

from experiments.configs import autorec_i_ml100k


def get_config():
  config = autorec_i_ml100k.get_config()
  config["model_config"]["l2"] = 100.0
  config["data"]["protocol"] = "ratings"
  return config
