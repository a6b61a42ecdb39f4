"""CDL on citeulike-t, the CVAE authors' P=1 split, fine-tuned for the paper's 200 MAP epochs
after the 14 pretraining epochs (the table's cdl_citeulike_t_p1.py runs 16; settings: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("cdl", "citeulike-t", "P1", schedule="paper")
