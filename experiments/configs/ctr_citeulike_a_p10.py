"""CTR on citeulike-a, the CVAE authors' P=10 split (settings and why: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("ctr", "citeulike-a", "P10")
