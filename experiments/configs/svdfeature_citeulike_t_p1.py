"""SVDFeature-style feature MF on citeulike-t, the CVAE authors' P=1 split (settings and why: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("svdfeature", "citeulike-t", "P1")
