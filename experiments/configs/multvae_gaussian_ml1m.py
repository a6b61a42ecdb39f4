"""Table 4 row: Gaussian-VAE^PR on ml-1m-lightgcn: multvae_ml1m.py's network, β schedule and cap ([I → 200 → I], 100 users/batch, β* = 0.2799, not reselected for this likelihood) with the Gaussian likelihood, Eq. 3, confidence c_1 = 5 on clicks and c_0 = 1 elsewhere."""

from experiments.configs import multvae_ml1m


def get_config():
  config = multvae_ml1m.get_config()
  config["model_config"].update(likelihood="gaussian", pos_weight=5.0, neg_weight=1.0)
  return config
