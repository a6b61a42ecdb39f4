"""Table 4 row: Logistic-VAE^PR on ml-1m-lightgcn: multvae_ml1m.py's network, β schedule and cap ([I → 200 → I], 100 users/batch, β* = 0.2799, not reselected for this likelihood) with the logistic (Bernoulli) likelihood, Eq. 4."""

from experiments.configs import multvae_ml1m


def get_config():
  config = multvae_ml1m.get_config()
  config["model_config"]["likelihood"] = "logistic"
  return config
