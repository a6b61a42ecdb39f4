"""Table 4 row: Gaussian-DAE on ml-1m-lightgcn: multdae_ml1m.py's network and training ([I → 200 → I], λ = 0.001, 500 users/batch) with the Gaussian likelihood, Eq. 3, confidence c_1 = 5 on clicks and c_0 = 1 elsewhere (λ not reselected for this likelihood)."""

from experiments.configs import multdae_ml1m


def get_config():
  config = multdae_ml1m.get_config()
  config["model_config"].update(likelihood="gaussian", pos_weight=5.0, neg_weight=1.0)
  return config
