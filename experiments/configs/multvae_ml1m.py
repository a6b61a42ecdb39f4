"""mult-vae (Mult-VAE^PR) on ml-1m-lightgcn: [I → 200 → I], dropout 0.5, l2 = 0, Adam 1e-3, 100 users/batch, 200 epochs; β annealed linearly over the run (49 updates/epoch x 200 = 9,800 updates) and capped at β* = 0.2799.

Chosen on validation NDCG@100, as the paper does (§4.3), by experiments/beta_select.py
(annealing run, β* where it peaks, then the capped run):

| architecture, batch | β* (peak epoch) | validation NDCG@100, capped run |
|---|---|---|
| [I → 200 → I], 100 users (this config) | 0.2799 (56) | 0.4475 |
| [I → 600 → 200 → 600 → I], 100 users | 0.1499 (30) | 0.4370 |
| [I → 600 → 200 → 600 → I], 500 users (the paper's ML-20M setting) | 0.5245 (105) | 0.4403 |

ML-1M has 4,833 training users: at the paper's 500 users/batch, 200 epochs are only 2,000
updates (the paper's ML-20M run has 46,000), and the larger network overfits after its
peak.  Reproduce the selection with
  python -m experiments.beta_select --config=experiments/configs/multvae_ml1m.py \
      --data_dir=../shared/data --workdir=workdirs/multvae0-ml1m-b100
"""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 9800, "anneal_cap": 0.2799},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 100,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
