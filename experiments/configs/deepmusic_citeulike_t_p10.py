"""DeepMusic on citeulike-t, the CVAE authors' P=10 split (settings and why: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("deepmusic", "citeulike-t", "P10")
