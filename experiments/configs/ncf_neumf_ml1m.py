"""ncf-neumf on ml-1m under NCF's leave-one-out protocol, with pre-training (He et al. 2017, §3.4.1).

Train GMF and MLP first, into the workdirs this config reads; NeuMF starts from their
validation-selected parameters (α = 0.5) and is trained with plain SGD, as in the paper:

  python -m experiments.main --config=experiments/configs/ncf_gmf_ml1m.py --data_dir=../shared/data --workdir=workdirs/ncf-gmf-ml1m
  python -m experiments.main --config=experiments/configs/ncf_mlp_ml1m.py --data_dir=../shared/data --workdir=workdirs/ncf-mlp-ml1m
  python -m experiments.main --config=experiments/configs/ncf_neumf_ml1m.py --data_dir=../shared/data --workdir=workdirs/ncf-neumf-ml1m

SGD's step is the paper's 0.001 scaled linearly with the batch: one step here averages ~23k
instances (32 users) against the authors' 256, i.e. ~180 against ~16k steps per epoch, so
0.001 x 16k / 180 ~ 0.1.

Without pre-training: --set gmf_workdir= --set mlp_workdir= --set optimizer=adam
--set learning_rate=0.001.  The three runs must use the same data options and sizes.
"""

from experiments.configs import ncf_gmf_ml1m


def get_config():
  config = ncf_gmf_ml1m.get_config()
  config["model"] = "ncf-neumf"
  config["model_config"].update(optimizer="sgd", learning_rate=0.1, alpha=0.5,
                                gmf_workdir="workdirs/ncf-gmf-ml1m",
                                mlp_workdir="workdirs/ncf-mlp-ml1m")
  return config
