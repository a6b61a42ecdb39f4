"""The bigram of Ko et al. 2016 (Eq. 5, 7; Laplace ε = 0.1) on ml-100k, one counting epoch.

``--model=unigram`` / ``--model=uniform`` give the other static baselines (settings and
protocol: _sequence.py).
"""

from experiments.configs._sequence import sequence_run


def get_config():
  return sequence_run("bigram", "ml-100k", {"eps": 0.1}, epochs=1)
