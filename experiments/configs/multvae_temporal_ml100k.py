"""mult-vae (Mult-VAE^PR) on ml-100k (ratings >= 4, users >= 5) under "strong-temporal": the same users, items and time-sorted fold-in/fold-out as experiments/configs/svae_ml100k.py, with binary rows.

The paper's architecture [I → 600 → 200 → 600 → I], dropout 0.5, Adam 1e-3, l2 = 0;
100 users/batch (752 training users: 8 updates/epoch), 200 epochs = 1,600 updates, β annealed
linearly to the paper's cap 0.2 over the run (not re-selected by beta_select).  Best epoch by
validation NDCG@100.
"""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "ml-100k",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 1600, "anneal_cap": 0.2},
      "data": {"protocol": "strong-temporal"},
      "train": {"epochs": 200, "batch_size": 100, "eval_batch_size": 100,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
