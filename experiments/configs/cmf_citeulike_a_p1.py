"""CMF on citeulike-a, the CVAE authors' P=1 split (settings and why: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("cmf", "citeulike-a", "P1")
