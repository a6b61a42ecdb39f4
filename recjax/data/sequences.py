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
`tail_split` is that protocol for the runner (data protocols "sequence-tail"
and "sequence-tail-novalid"): a `SequenceTailSplit` whose ``train`` is the
users x items count matrix of the training sequences, whose ``validation`` and
``test`` are `SequenceEvalSet`s (histories and tails, scored by
`recjax.eval.sequence`), and whose ``side["train_sequences"]`` hands the
sequences themselves to the models that name that side key.  `SequenceWindows`
is the batch source of the recurrent models: truncated-BPTT windows of user
batches.

numpy only: this module never imports jax.
"""

from __future__ import annotations

import dataclasses

from typing import Iterator

import numpy as np
import scipy.sparse as sp

from recjax.data import batching, preprocess
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


def count_matrix(seqs: list[np.ndarray], n_items: int) -> sp.csr_matrix:
  """Users x items csr of event counts c_i^(u)."""
  rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs]).astype(np.int64)
  cols = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
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


# ---------------------------------------------------------------------------
# The protocol as the runner drives it.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SequenceEvalSet:
  """Users whose held-out tail is scored event by event given the history before it.

  Attributes:
    histories: per evaluated user, the events the tail conditions on.
    tails: per evaluated user, the held-out events (possibly empty).
    users: [n] int64 training row of each evaluated user (the model's user index).
    held_out: [n, I] csr of tail counts (who has something to score: ``nnz``).
    per_user: report each user's error and history entropy too (the test set:
      Figure 2 of Ko et al. is drawn from them).
  """

  histories: list[np.ndarray]
  tails: list[np.ndarray]
  users: np.ndarray
  held_out: sp.csr_matrix
  per_user: bool = False

  @property
  def n_users(self) -> int:
    return len(self.users)


@dataclasses.dataclass(frozen=True)
class SequenceTailSplit:
  """The split the runner trains a sequence model on.

  Attributes:
    train: [U, I] float32 csr of event counts of the training sequences.
    sequences: [U] the training sequences themselves (``side["train_sequences"]``).
    validation: `SequenceEvalSet` (no users under "sequence-tail-novalid").
    test: `SequenceEvalSet` of every user, history = the whole training prefix.
    items: [I] dataset item index of each column; train_users: [U] dataset user index.
    protocol: the data protocol's name.
    dropped: {"valid": n, "test": n} tail events dropped as unseen in training.
  """

  train: sp.csr_matrix
  sequences: list[np.ndarray]
  validation: SequenceEvalSet
  test: SequenceEvalSet
  items: np.ndarray
  train_users: np.ndarray
  protocol: str
  dropped: dict



def _eval_set(histories, tails, n_items, per_user=False) -> SequenceEvalSet:
  """Every user (row u of training) with their history and tail."""
  return SequenceEvalSet(histories=list(histories), tails=list(tails),
                         users=np.arange(len(tails), dtype=np.int64),
                         held_out=count_matrix(list(tails), n_items), per_user=per_user)


PROTOCOLS = ("sequence-tail", "sequence-tail-novalid")


def train_sequences(dataset, split, log) -> list[np.ndarray]:
  """The side input "train_sequences" (`data.side.PROVIDERS`): the split's training sequences.

  Raises:
    ValueError: the split is not a sequence split (the model needs a sequence protocol).
  """
  del dataset, log
  if not isinstance(split, SequenceTailSplit):
    raise ValueError(f"this model trains on users' event sequences: use a sequence protocol "
                     f"(--set protocol=sequence-tail, or sequence-tail-novalid without a "
                     f"validation tail), not {getattr(split, 'protocol', None) or 'this split'}")
  return split.sequences


def tail_split(dataset, config, info: dict) -> SequenceTailSplit:
  """The paper's protocol as a runner split (`pipeline.PROTOCOLS` "sequence-tail*").

  "sequence-tail": models train on the training prefixes minus a validation
  tail (``split.fit``), the validation tail selects the epoch and stops early,
  and the test tail is scored given the whole prefix (the recurrent models).
  "sequence-tail-novalid": models train on the whole prefix and there is no
  validation (the n-grams, log-count MF and the HMM, which run a fixed number
  of sweeps or iterations).  Events with a value below ``binarize_threshold``
  are dropped when it is set; the min-count filters are not applied (every
  user with >= 3 events is kept), which `info["sequence"]` records.
  """
  if config.protocol not in PROTOCOLS:
    raise ValueError(f"tail_split: unknown protocol {config.protocol!r}; valid: {PROTOCOLS}")
  inter = dataset.interactions
  notes = []
  if config.binarize_threshold is not None:
    inter = preprocess.binarize(inter, config.binarize_threshold)
  for field in ("min_user_count", "min_item_count"):
    if getattr(config, field):
      notes.append(f"{field}={getattr(config, field)} not applied: the sequence protocol keeps "
                   f"every user with >= 3 events and every item")
      preprocess.record(notes[-1])  # One line of the run's conversions.
  split = sequence_split(inter)
  n_items = split.n_items
  with_valid = config.protocol == "sequence-tail"
  seqs = split.fit if with_valid else split.train()
  validation = _eval_set(split.fit if with_valid else [], split.valid if with_valid else [],
                         n_items)
  test = _eval_set(split.train(), split.test, n_items, per_user=True)
  train = count_matrix(seqs, n_items)
  info["sequence"] = {"users": split.n_users, "items": n_items,
                      "train_events": int(train.sum()),
                      "validation_events": int(sum(map(len, validation.tails))),
                      "test_events": int(sum(map(len, split.test))), "dropped": split.dropped,
                      "notes": notes}
  info["summary"] = (f"protocol {config.protocol}: {split.n_users} users, {n_items} items, "
                     f"{int(train.sum())} training events, "
                     f"{info['sequence']['validation_events']} validation and "
                     f"{info['sequence']['test_events']} test tail events (dropped as unseen: "
                     f"{split.dropped})")
  return SequenceTailSplit(train=train, sequences=[np.asarray(s, np.int32) for s in seqs],
                           validation=validation, test=test, items=split.item_ids,
                           train_users=split.user_ids, protocol=config.protocol,
                           dropped=split.dropped)


# ---------------------------------------------------------------------------
# Truncated-BPTT windows: the recurrent models' batch source.
# ---------------------------------------------------------------------------

MIN_WIDTH = 8  # Narrowest window width (the RNNs' output softmax runs in blocks of 8 steps).


def bucket_width(n: int, window: int) -> int:
  """Width of a window holding n events: the next power of two >= max(n, 8), at most `window`."""
  return min(window, max(MIN_WIDTH, 1 << max(0, int(n) - 1).bit_length()))


def window_slices(length: int, window: int) -> list[slice]:
  """Column slices cutting `length` events into truncated-BPTT windows of `window` events.

  All windows are `window` wide except the last, which is trimmed to a power-of-two
  bucket (at least 8) of what remains: short sequences do not pay for a full padded
  window, and a handful of widths means a handful of compilations.  At least one
  window is returned.
  """
  out, start = [], 0
  while True:
    rest = int(length) - start
    if rest <= window:
      out.append(slice(start, start + bucket_width(rest, window)))
      return out
    out.append(slice(start, start + window))
    start += window


def columns(a: np.ndarray, cols: slice, fill=0) -> np.ndarray:
  """``a[:, cols]`` padded with `fill` where `cols` runs past the last column."""
  out = a[:, cols]
  missing = (cols.stop - cols.start) - out.shape[1]
  if missing > 0:
    out = np.concatenate([out, np.full((a.shape[0], missing), fill, a.dtype)], axis=1)
  return out


@dataclasses.dataclass(frozen=True)
class SequenceWindows:
  """The training sequences as truncated-BPTT windows of user batches (Ko et al., Algorithm 2).

  ``aux[key]`` is `next_item_pairs` of the training sequences.  Each epoch the
  users are batched in a random order of similar lengths
  (`batching.length_grouped_order` by (seed, epoch), so a resumed run sees the
  same batches), cut into ceil(U / B) batches of nearly equal size; every user batch is cut into `window_slices` of its longest
  sequence, and each window is one batch: {"users": int32 [B] (the number of
  users on padding rows), "inputs", "targets": int32 [B, W], "events": float32
  [B, W] (1 on real pairs), "reset": bool [B] (True on a user batch's first
  window: the recurrent state starts afresh), "mask": bool [B] (real users)}.
  The model carries the state from window to window of a batch.
  """

  window: int = WINDOW
  key: str = "pairs"

  def epoch(self, train, aux, batch_size, epoch, seed):
    del train
    pairs = aux[self.key]
    n_users = pairs["inputs"].shape[0]
    lengths = pairs["mask"].sum(axis=1).astype(np.int64)
    order = batching.length_grouped_order(lengths, batch_size, seed, epoch, group_batches=8)
    # ceil(U / B) batches of nearly equal size (at most B): no short last batch of a few users,
    # whose noisy step would always come last, right before the epoch's validation.
    plan = [(ids, window_slices(int(lengths[ids].max()), self.window))
            for ids in np.array_split(order, -(-len(order) // batch_size))]
    return sum(len(s) for _, s in plan), self._windows(pairs, plan, batch_size, n_users)

  @staticmethod
  def _windows(pairs, plan, batch_size, n_users) -> Iterator[dict]:
    for ids, slices in plan:
      pad = batch_size - len(ids)

      def rows(name, fill):
        a = pairs[name][ids]
        return np.concatenate([a, np.full((pad, a.shape[1]), fill, a.dtype)]) if pad else a

      inputs, targets, events = rows("inputs", 0), rows("targets", 0), rows("mask", 0.0)
      users = np.concatenate([ids, np.full(pad, n_users)]).astype(np.int32)
      mask = np.arange(batch_size) < len(ids)
      for w, cols in enumerate(slices):
        yield {"users": users, "inputs": columns(inputs, cols), "targets": columns(targets, cols),
               "events": columns(events, cols, 0.0), "reset": np.full(batch_size, w == 0),
               "mask": mask}
