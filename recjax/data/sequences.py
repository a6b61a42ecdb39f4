"""The sequence protocol of the collaborative-RNN paper (Ko et al. 2016, section 3.1).

Each user's time-ordered events are cut into a training prefix and a test tail
(`splits.temporal_tail`: the last 2.5% of the events, clipped to [3, 500] and
leaving at least one training event).  A validation tail is cut from the
training prefix by the same rule, for early stopping.  The item set is the
union of the training prefixes (paper: "the union of the individual training
sequences"); items are re-indexed to it and test/validation events whose item
never occurs in training are dropped (counted in `SequenceSplit.dropped`).

The device only sees padded [users, T] int32 arrays (`pad_sequences`), T a
multiple of the window length (128 events in the paper), plus lengths.
numpy only: this module never imports jax.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recjax.data.splits import tail_length
from recjax.data.types import Interactions

WINDOW = 128  # Truncated-BPTT window of the paper (footnote 6).


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
  """Per-user sequences over a common item index.

  Attributes:
    fit: [U] training prefixes minus the validation tail (what iterative models fit).
    valid: [U] validation tails (may be empty for very short users).
    test: [U] test tails.
    n_items: I, the number of items seen in training (fit + valid).
    item_ids: [I] original item index of each new item index.
    user_ids: [U] original user index of each row.
    dropped: {"valid": n, "test": n} tail events dropped as unseen in training.
  """

  fit: list[np.ndarray]
  valid: list[np.ndarray]
  test: list[np.ndarray]
  n_items: int
  item_ids: np.ndarray
  user_ids: np.ndarray
  dropped: dict

  @property
  def n_users(self) -> int:
    return len(self.fit)

  def train(self) -> list[np.ndarray]:
    """Full training prefixes (fit + valid): the history the test tail conditions on."""
    return [np.concatenate([f, v]) for f, v in zip(self.fit, self.valid)]

  def history_and_tail(self, part: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(history, tail) per user for `part` in {"valid", "test"}."""
    if part == "valid":
      return self.fit, self.valid
    if part == "test":
      return self.train(), self.test
    raise ValueError(f"part must be 'valid' or 'test', got {part!r}")


def _cut(seq: np.ndarray, fraction: float, min_tail: int, max_tail: int):
  cut = len(seq) - tail_length(len(seq), fraction, min_tail, max_tail)
  return seq[:cut], seq[cut:]


def sequence_split(inter: Interactions, *, fraction: float = 0.025, min_tail: int = 3,
                   max_tail: int = 500, max_length: int | None = None,
                   min_events: int = 3) -> SequenceSplit:
  """The paper's train prefix / test tail split, plus a validation tail.

  Args:
    inter: the event log; `Interactions.sequences` gives the time order.
    fraction, min_tail, max_tail: the tail rule (paper: 0.025, 3, 500).
    max_length: keep only each user's last `max_length` events (paper: 5120 on LFM).
    min_events: users with fewer events are dropped (they cannot give a
      validation tail, a test tail and a training event).

  Returns:
    A `SequenceSplit`; users keep their order, items are re-indexed.
  """
  if min_events < 3:
    raise ValueError(f"min_events must be >= 3 (fit, valid and test need one event each), "
                     f"got {min_events}")
  seqs = inter.sequences()
  keep = np.array([len(s) >= min_events for s in seqs], dtype=bool)
  fit, valid, test = [], [], []
  for s, k in zip(seqs, keep):
    if not k:
      continue
    s = np.asarray(s, dtype=np.int64)
    if max_length is not None and len(s) > max_length:
      s = s[-max_length:]
    train, te = _cut(s, fraction, min_tail, max_tail)
    f, va = _cut(train, fraction, min_tail, max_tail)
    fit.append(f), valid.append(va), test.append(te)
  if not fit:
    raise ValueError(f"{inter.name}: no user has >= {min_events} events")
  seen = np.unique(np.concatenate(fit + valid))
  new_index = np.full(inter.n_items, -1, dtype=np.int64)
  new_index[seen] = np.arange(len(seen))
  dropped = {}

  def remap(parts, name):
    out, n_drop = [], 0
    for p in parts:
      q = new_index[p]
      n_drop += int((q < 0).sum())
      out.append(q[q >= 0].astype(np.int32))
    if name:
      dropped[name] = n_drop
    return out

  fit = remap(fit, None)
  valid = remap(valid, "valid")
  test = remap(test, "test")
  return SequenceSplit(fit=fit, valid=valid, test=test, n_items=len(seen), item_ids=seen,
                       user_ids=np.flatnonzero(keep), dropped=dropped)


def pad_sequences(seqs: list[np.ndarray], multiple: int = WINDOW, length: int | None = None,
                  pad_value: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Padded [U, T] int32 items and [U] int32 lengths, T a multiple of `multiple`.

  Args:
    seqs: per-user item arrays.
    multiple: T is rounded up to this (the window length).
    length: a fixed T (must be >= the longest sequence); default the longest.
    pad_value: the item written after each sequence's end.

  Returns:
    (items, lengths).
  """
  lengths = np.array([len(s) for s in seqs], dtype=np.int32)
  longest = int(lengths.max()) if len(lengths) else 0
  if length is None:
    length = longest
  elif length < longest:
    raise ValueError(f"length {length} is shorter than the longest sequence ({longest})")
  t = max(multiple, -(-length // multiple) * multiple)
  items = np.full((len(seqs), t), pad_value, dtype=np.int32)
  for row, s in enumerate(seqs):
    items[row, :len(s)] = s
  return items, lengths


def next_item_pairs(history: list[np.ndarray], tail: list[np.ndarray], multiple: int = WINDOW
                    ) -> dict[str, np.ndarray]:
  """Inputs/targets over history + tail, shifted by one, for next-item models.

  Position t feeds item x_t and is scored on x_{t+1}; the scored positions of
  the tail are flagged in `tail_mask`.

  Returns:
    dict of [U, T] int32 `inputs`, `targets`, float32 `mask` (valid pairs) and
    `tail_mask` (pairs whose target is a tail event), T a multiple of `multiple`.
  """
  full = [np.concatenate([h, t]).astype(np.int32) for h, t in zip(history, tail)]
  inputs, _ = pad_sequences([f[:-1] for f in full], multiple)
  targets, n_pairs = pad_sequences([f[1:] for f in full], multiple, length=inputs.shape[1])
  pos = np.arange(inputs.shape[1])[None, :]
  n_hist = np.array([len(h) for h in history], dtype=np.int32)[:, None]
  mask = pos < n_pairs[:, None]
  tail_mask = mask & (pos >= n_hist - 1)
  return {"inputs": inputs, "targets": targets, "mask": mask.astype(np.float32),
          "tail_mask": tail_mask.astype(np.float32)}


def count_matrix(seqs: list[np.ndarray], n_items: int):
  """Users x items csr of event counts c_i^(u)."""
  import scipy.sparse as sp
  rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
  cols = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
  m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                    shape=(len(seqs), n_items))
  m.sum_duplicates()
  return m


def empirical_entropy(seqs: list[np.ndarray]) -> np.ndarray:
  """Shannon entropy (nats) of each sequence's empirical item distribution (paper Fig. 2)."""
  out = np.zeros(len(seqs))
  for k, s in enumerate(seqs):
    if len(s):
      p = np.unique(s, return_counts=True)[1] / len(s)
      out[k] = -(p * np.log(p)).sum()
  return out
