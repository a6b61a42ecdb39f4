"""Table 4 row: Logistic-DAE on ml-1m-lightgcn: multdae_ml1m.py's network and training ([I → 200 → I], λ = 0.001, 500 users/batch) with the logistic (Bernoulli) likelihood, Eq. 4 (λ not reselected for this likelihood)."""

from experiments.configs import multdae_ml1m


def get_config():
  config = multdae_ml1m.get_config()
  config["model_config"]["likelihood"] = "logistic"
  return config
