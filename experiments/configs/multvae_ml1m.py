"""mult-vae (Mult-VAE^PR) on ml-1m-lightgcn: [I → 600 → 200 → 600 → I], dropout 0.5, no weight decay, Adam 1e-3, 500 users/batch, 200 epochs; β annealed linearly over the run (10 updates/epoch x 200 = 2000 updates) and capped at β = 0.5245, chosen by experiments/beta_select.py (validation NDCG@100 of the run annealed to 1 peaked at epoch 105)."""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "ml-1m-lightgcn",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 2000, "anneal_cap": 0.5245},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
