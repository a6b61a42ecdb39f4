"""crae_bleu_citeulike_a.py with the degenerate pooling γ_j = tanh(θ_j) (pooling="last").

The paper (§3.5) fixes beta-pooling so that Beta(a, b) "peaks slightly to the left of
x = 0.5 ... which leads to γ_j = tanh(θ_j)".  Only then does v_j (which λ_v ties to γ_j)
live in the decoder's input space, so generating a hidden item's title from v_j means
something: with Beta(400, 311) the pooled γ_j of visible items is nearly orthogonal to
E[tanh(θ_j)] (mean cosine 0.085 on the crae_bleu_citeulike_a run, and BLEU-1 0.4 when
decoding from γ_j against 17.4 from E[tanh(θ_j)]; WORKSPACE, issue 6).  Everything else is
crae_bleu_citeulike_a.py's.
"""


from experiments.configs.crae_bleu_citeulike_a import get_config as _beta_pooling


def get_config():
  config = _beta_pooling()
  config["model_config"] = {**config["model_config"], "pooling": "last"}
  return config
