"""svae on ml-100k (ratings >= 4, users >= 5) under "strong-temporal-ordered": the "strong" users and items, each held-out user's first 80% by time folded in, the last 20% ranked.

The paper's network (Sachdeva et al. 2019 / the authors' code): item embedding 256 → GRU 200 →
150 (tanh) → μ, log σ² of K = 64 → 150 (tanh) → I; next-item targets (next_k = 1);
sequences capped at their last 200 events; Adam 1e-3.  Departures, for a ~10-minute run on
one busy CPU core: 16 users per batch (the authors: 1) and coupled_l2 0 (the paper's 0.01 as
PyTorch's coupled L2 is `--set coupled_l2=0.01`); β annealed linearly to 0.2 over the whole
run (47 updates/epoch x 25 epochs = 1,175 updates; the authors' 200,000-update schedule would
leave β ≈ 0).  Best epoch by validation NDCG@100.  Compare with
experiments/configs/multvae_temporal_ml100k.py (same users, binary rows).
"""


def get_config():
  return {
      "model": "svae",
      "dataset": "ml-100k",
      "model_config": {"embed_dim": 256, "rnn_dim": 200, "hidden_dim": 150, "latent_dim": 64,
                       "next_k": 1, "max_length": 200, "learning_rate": 1e-3,
                       "coupled_l2": 0.0, "total_anneal_steps": 1175, "anneal_cap": 0.2},
      "data": {"protocol": "strong-temporal-ordered"},
      "train": {"epochs": 25, "batch_size": 16, "eval_batch_size": 100,
                "metrics": ("recall@20", "recall@50", "ndcg@100"), "select_metric": "ndcg@100"},
  }
