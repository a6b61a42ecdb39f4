"""cdae on gowalla (40,981 items) under strong generalization; the ml-1m-lightgcn settings (see cdae_ml1m.py).

The per-user table has one row per training user (23,888 x 200) and the network 2 x 41k x 200
weights; one epoch is 48 batches of 500 dense [500, 41k] rows.  30 epochs (not 200), best of every 5th by
validation NDCG@100: the 2-core CPU budget.
"""

from experiments.configs import cdae_ml1m


def get_config():
  config = cdae_ml1m.get_config()
  config["dataset"] = "gowalla"
  config["train"].update(epochs=30, eval_every=5)
  return config
