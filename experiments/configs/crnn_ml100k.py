"""The collaborative GRU (Ko et al. 2016) on ml-100k: WORKSPACE "Sequence models (issue 7)".

D = 32, dropout 0.2, RMSprop lr 5e-3, truncated-BPTT windows of 128 events, 16 users per
step; at most 40 epochs, the epoch of the best validation-tail error kept, stop after 4
without a gain (settings and protocol: _sequence.py).  The other recurrent models take the
same settings: ``--model=c-tanh``, or ``--model=p-gru --set epochs=150`` (the pooled GRU
was still improving at 40).  lastfm-s3rec takes them as they are (``--dataset``); toys
used ``--set learning_rate=1e-2``.
"""

from experiments.configs._sequence import sequence_run


def get_config():
  return sequence_run("c-gru", "ml-100k", {"dim": 32, "dropout": 0.2, "learning_rate": 5e-3,
                                           "window": 128},
                      epochs=40, patience=4, batch_size=16)
