"""mult-vae (Mult-VAE^PR) on gowalla: [I → 200 → I], dropout 0.5, l2 = 0, Adam 1e-3, 500 users/batch, 50 epochs; β annealed linearly toward 1 over the run (48 updates/epoch x 50), best epoch (of every 5th) by validation NDCG@100.

β by the paper's single-run variant (§2.2.2): the annealing run itself, keeping the epoch where
validation NDCG@100 peaks (its β is reported), instead of a second run capped at that β —
one gowalla run is ~30-60 min on the 2-core CPU.  The architecture is ml-1m-lightgcn's
validation choice (multvae_ml1m.py).  Sparse input layer (same loss as dense rows).

For a much larger catalog, `--set sampled_softmax=4096` trains with a sampled softmax
normalizer (no [B, I] array in training).
"""


def get_config():
  return {
      "model": "mult-vae",
      "dataset": "gowalla",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.0, "learning_rate": 1e-3,
                       "total_anneal_steps": 2400, "anneal_cap": 1.0, "sparse_input": True},
      "data": {"protocol": "strong"},
      "train": {"epochs": 50, "batch_size": 500, "eval_every": 5,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
