"""ncf-mlp on ml-1m under NCF's leave-one-out protocol (He et al. 2017, §4.1).

The data, evaluation and training of ncf_gmf_ml1m.py (4 negatives per positive, redrawn every
epoch, Adam, 20 epochs, 32 users per step; HR@10 and NDCG@10, best epoch by validation NDCG@10)
with lr 0.005, chosen on validation NDCG@10 on ml-1m-lightgcn (4 epochs: 0.005: 0.3918,
0.02: 0.3721).  NeuMF with pre-training reads this run's workdir (see ncf_neumf_ml1m.py).
"""

from experiments.configs import ncf_gmf_ml1m


def get_config():
  config = ncf_gmf_ml1m.get_config()
  config["model"] = "ncf-mlp"
  config["model_config"]["learning_rate"] = 0.005
  return config
