r"""Query a trained workdir: recommendations by user id, for new histories, or similar items.

  python -m experiments.recommend --workdir=workdirs/ease-ml-100k --users=196,22 --k=10
  python -m experiments.recommend --workdir=W --histories=new_users.csv --k=10
  python -m experiments.recommend --workdir=W --all_users --k=100 --out=recs.csv
  python -m experiments.recommend --workdir=W --similar_items=50,172 --k=10

Ids are the raw ids of the training data.  ``--histories`` reads a file of
``user item [value]`` lines (comma, tab or space separated, optional header,
the items of one user in time order) or a ``.jsonl`` file of
``{"user": ..., "items": [...], "values": [...]}`` lines.  ``--out`` writes
``.csv`` (key,rank,item,score,fallback) or ``.jsonl`` (one query per line);
without it the answers are printed.  ``--all_users`` streams batch by batch:
the full score matrix is never held.  Only this file reads flags.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from absl import app, flags, logging

from experiments import errors

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A finished run's workdir (or its model/ directory).")
flags.DEFINE_list("users", [], "Known (training) users by raw id, comma-separated.")
flags.DEFINE_string("histories", None, "File of new users' histories (see the module doc).")
flags.DEFINE_bool("all_users", False, "Recommend for every training user (streamed; use --out).")
flags.DEFINE_list("similar_items", [], "Raw item ids whose most similar items to list.")
flags.DEFINE_integer("k", 10, "Items per answer.")
flags.DEFINE_string("out", None, "Output file, .csv or .jsonl (default: print to stdout).")
flags.DEFINE_string("allow_items", None, "Only these items may be answered: comma-separated raw "
                    "ids, or @FILE with one id per line.")
flags.DEFINE_string("deny_items", None, "These items are never answered: comma-separated raw "
                    "ids, or @FILE with one id per line.")
flags.DEFINE_bool("include_seen", False, "Also recommend items already in the user's history.")
flags.DEFINE_integer("batch_size", 512, "Queries per jitted batch.")
flags.DEFINE_integer("n_devices", None, "Devices to split batches over (default: all).")


def _id(text: str):
  text = text.strip()
  try:
    return int(text)
  except ValueError:
    return text


def _id_list(spec: str | None):
  if spec is None:
    return None
  if spec.startswith("@"):
    path = Path(spec[1:])
    if not path.is_file():
      raise ValueError(f"{path}: no such file (from {spec!r})")
    return [_id(l) for l in path.read_text().splitlines() if l.strip()]
  return [_id(t) for t in spec.split(",") if t.strip()]


def read_histories(path: str) -> dict:
  """key -> [item or (item, value)] in file order; errors name file:line."""
  p = Path(path)
  if not p.is_file():
    raise ValueError(f"{p}: {'a folder, not a file' if p.is_dir() else 'no such file'}")
  histories: dict = {}
  if p.suffix == ".jsonl":
    for n, line in enumerate(p.read_text().splitlines(), start=1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
        key, items = rec["user"], rec["items"]
      except (ValueError, KeyError, TypeError):
        raise ValueError(f"{p}:{n}: expected a JSON object with 'user' and 'items'") from None
      values = rec.get("values")
      if values is not None and len(values) != len(items):
        raise ValueError(f"{p}:{n}: {len(values)} values for {len(items)} items")
      histories[key] = list(items) if values is None else list(zip(items, values))
    return histories
  text = p.read_text()
  sample = text[:4096]
  delim = "\t" if "\t" in sample else ("," if "," in sample else None)
  rows = (csv.reader(io.StringIO(text), delimiter=delim) if delim
          else (l.split() for l in text.splitlines()))
  for n, fields in enumerate(rows, start=1):
    fields = [f.strip() for f in fields]
    if not any(fields):
      continue
    if len(fields) not in (2, 3):
      raise ValueError(f"{p}:{n}: expected 'user item [value]', got {len(fields)} fields")
    if n == 1 and fields[0].lower() in ("user", "userid", "user_id", "uid", "key"):
      continue  # Header.
    key, item = _id(fields[0]), _id(fields[1])
    if len(fields) == 3:
      try:
        value = float(fields[2])
      except ValueError:
        raise ValueError(f"{p}:{n}: the value {fields[2]!r} is not a number") from None
      histories.setdefault(key, []).append((item, value))
    else:
      histories.setdefault(key, []).append(item)
  return histories


class _Output:
  """Writes answers as csv, jsonl or readable lines, flushing each batch."""

  def __init__(self, path: str | None):
    self.path = path
    self.kind = "print"
    self.stream = sys.stdout
    if path is not None:
      suffix = Path(path).suffix
      if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"--out {path}: expected a .csv or .jsonl file")
      self.kind = suffix[1:]
      self.stream = open(path, "w", newline="")
      if self.kind == "csv":
        self.writer = csv.writer(self.stream)
        self.writer.writerow(["key", "rank", "item", "score", "fallback"])
    self.rows = 0

  def write(self, recs) -> None:
    for rec in recs.to_records():
      self.rows += 1
      if self.kind == "csv":
        for rank, (item, score) in enumerate(zip(rec["items"], rec["scores"]), start=1):
          self.writer.writerow([rec["key"], rank, item, f"{score:.6g}", int(rec["fallback"])])
      elif self.kind == "jsonl":
        self.stream.write(json.dumps(rec) + "\n")
      else:
        tail = " (popularity fallback)" if rec["fallback"] else ""
        pairs = ", ".join(f"{i} ({s:.4g})" for i, s in zip(rec["items"], rec["scores"]))
        self.stream.write(f"{rec['key']}: {pairs}{tail}\n")
    self.stream.flush()

  def close(self) -> None:
    if self.path is not None:
      self.stream.close()


def run(argv_flags) -> None:
  from recjax import serve  # pylint: disable=import-outside-toplevel
  from recjax.serve import topk  # pylint: disable=import-outside-toplevel
  from recjax.train.progress import ProgressBar  # pylint: disable=import-outside-toplevel

  f = argv_flags
  queries = [bool(f.users), f.histories is not None, f.all_users, bool(f.similar_items)]
  if sum(queries) != 1:
    raise app.UsageError("give exactly one of --users, --histories, --all_users, --similar_items")
  if not f.workdir:
    raise app.UsageError("--workdir is required")
  tm = serve.load(f.workdir, n_devices=f.n_devices)
  log = lambda m: print(m, file=sys.stderr)
  log(f"{tm.model.name}: {len(tm.user_ids)} training users, {tm.n_items} items "
      f"(epoch {tm.info.get('chosen_epoch')}, {tm.info.get('chosen_by')})")
  filters = dict(allow=_id_list(f.allow_items), deny=_id_list(f.deny_items))
  out = _Output(f.out)
  try:
    if f.similar_items:
      ids = [_id(i) for i in f.similar_items]
      log(f"similar items: cosine of {tm.info.get('item_vectors') or 'item vectors'}")
      recs = serve.similar_items(tm, ids, f.k, batch_size=f.batch_size, **filters)
      out.write(recs)
    elif f.users:
      recs = serve.recommend(tm, [_id(u) for u in f.users], f.k, exclude_seen=not f.include_seen,
                             batch_size=f.batch_size, **filters)
      out.write(recs)
    elif f.histories is not None:
      recs = serve.recommend_histories(tm, read_histories(f.histories), f.k,
                                       exclude_seen=not f.include_seen,
                                       batch_size=f.batch_size, **filters)
      for key, ids in recs.unknown.items():
        log(f"history {key}: unknown item ids {ids[:20]}{' ...' if len(ids) > 20 else ''}")
      out.write(recs)
    else:
      n_batches = -(-len(tm.user_ids) // topk.effective_batch_size(tm, f.batch_size))
      bar = ProgressBar(n_batches, "recommend", log_every_s=10.0)
      recs = None
      for recs in serve.recommend_all(tm, f.k, exclude_seen=not f.include_seen,
                                      batch_size=f.batch_size, **filters):
        for note in recs.notes:
          log(note)
        out.write(recs)
        bar.update()
      log(f"{out.rows} users written" + (f" to {f.out}" if f.out else ""))
      return
    for note in recs.notes:
      log(note)
  finally:
    out.close()


def main(argv):
  verbose = FLAGS["verbosity"].present
  paths = {"workdir": FLAGS.workdir, "histories": FLAGS.histories, "out": FLAGS.out}
  for flag in ("allow_items", "deny_items"):
    spec = getattr(FLAGS, flag)
    if spec and spec.startswith("@"):
      paths[flag] = spec[1:]
  # Bad id, unfinished workdir, unsupported query, unreadable file or unwritable --out,
  # too little memory: one `error:` line (--verbosity re-raises for the traceback).
  with errors.one_line_errors(paths, verbose):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not verbose:
      logging.set_verbosity(logging.WARNING)
    run(FLAGS)


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
