"""mult-vae (Mult-VAE^PR) on gowalla: [I → 600 → 200 → 600 → I], dropout 0.5, no weight decay, Adam 1e-3, 500 users/batch, 200 epochs; β annealed over the run (48 updates/epoch x 200) and capped at vae_cf's 0.2 (not selected on gowalla: one epoch takes minutes on the 2-core CPU).

For a much larger catalog, `--set sparse_input=true --set sampled_softmax=4096` trains on padded item lists with a sampled softmax normalizer (no [B, I] array in training).
"""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "gowalla",
      "model_config": {"hidden_dims": (600,), "latent_dim": 200, "dropout": 0.5,
                       "weight_decay": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 9600, "anneal_cap": 0.2},
      "data": {"protocol": "strong"},
      "train": {"epochs": 200, "batch_size": 500,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
