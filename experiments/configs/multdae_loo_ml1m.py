"""mult-dae [I → 200 → I] on ml-1m under NCF's leave-one-out protocol (Liang et al. 2018, Table 3).

The same data and evaluation as ncf_*_ml1m.py (latest rating held out, ranked among 99 sampled
negatives, HR@10 / NDCG@10); Mult-DAE reads each evaluated user's training row (the evaluator
gives it dense rows, as it takes no query).  Dropout 0.5, λ = 0.01, Adam 1e-3, 500 users/batch.
"""


def get_config():
  return {
      "model": "mult-dae",
      "dataset": "ml-1m",
      "model_config": {"hidden_dims": (), "latent_dim": 200, "dropout": 0.5,
                       "l2": 0.01, "learning_rate": 1e-3},
      "data": {"protocol": "loo-sampled", "binarize_threshold": 0.0, "min_user_count": 20},
      "train": {"epochs": 200, "batch_size": 500, "eval_every": 5, "eval_batch_size": 1000,
                "metrics": ("hr@10", "ndcg@10"), "select_metric": "ndcg@10"},
  }
