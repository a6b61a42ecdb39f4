"""Log-count MF (Ko et al. 2016, Eq. 8–10) on ml-100k's sequences: D = 32, λ = 0.05, 10 ALS sweeps.

Each user's training events become counts c, fitted as log(c + 1) ≈ U Vᵀ; the next-item
distribution is softmax(V u_u).  ml-100k has no repeat consumption (every count is 1), so
the fit is constant and E = log I (settings and protocol: _sequence.py).
"""

from experiments.configs._sequence import sequence_run


def get_config():
  return sequence_run("mf-logcount", "ml-100k", {"dim": 32, "reg": 0.05}, epochs=10)
