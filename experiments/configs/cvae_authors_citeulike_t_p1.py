"""CVAE on citeulike-t, the CVAE authors' P=1 split, trained as the authors' code trains it
(350 epochs: 3 x 50 layerwise, 100 whole VAE, 100 alternation; every departure from the paper
is a labelled option of recjax.models.cvae.Config; settings and sources: _citeulike.py)."""

from experiments.configs._citeulike import hybrid


def get_config():
  return hybrid("cvae", "citeulike-t", "P1", schedule="authors_code")
