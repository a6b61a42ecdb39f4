"""ncf-mlp on ml-1m under NCF's leave-one-out protocol (He et al. 2017, §4.1).

Every rating is an interaction (binarize at 0), users with >= 20 ratings; per user the latest
rating (by timestamp) is the test item, the second-latest the validation item; each is ranked
among 99 sampled items the user never rated; HR@10 and NDCG@10, best epoch by validation NDCG@10.
Training: 4 negatives per positive, redrawn every epoch, Adam, 20 epochs, 32 users per step;
lr 0.005 chosen on validation NDCG@10 on ml-1m-lightgcn (4 epochs: 0.005: 0.3918, 0.02: 0.3721).
NeuMF with pre-training reads this run's workdir (see ncf_neumf_ml1m.py).
"""


def get_config():
  return {
      "model": "ncf-mlp",
      "dataset": "ml-1m",
      "model_config": {"dim": 8, "mlp_layers": (64, 32, 16, 8), "negatives": 4,
                       "optimizer": "adam", "learning_rate": 0.005},
      "data": {"protocol": "loo-sampled", "binarize_threshold": 0.0, "min_user_count": 20},
      "train": {"epochs": 20, "batch_size": 32, "eval_batch_size": 1000,
                "metrics": ("hr@10", "ndcg@10"), "select_metric": "ndcg@10"},
  }
