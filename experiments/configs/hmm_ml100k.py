"""The pooled HMM baseline of Ko et al. 2016 on ml-100k: 32 states, 10 Baum–Welch iterations.

One EM iteration per epoch (a killed run resumes at its iteration); pseudo-count 1e-3 on
every expected count (settings and protocol: _sequence.py).
"""

from experiments.configs._sequence import sequence_run


def get_config():
  return sequence_run("hmm", "ml-100k", {"states": 32, "smoothing": 1e-3}, epochs=10)
