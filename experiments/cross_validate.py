r"""K-fold cross-validation of one hyperparameter per P on the random-P protocols.

The CRAE paper (§4.3) picks its hyperparameters by 5-fold cross-validation on
the training data; its values per P are in supplementary material we do not
have.  This binary does that for any model config and any one field:

  # 1. the fold runs, as a jobs file for experiments.pool (resumable, N at a time)
  python -m experiments.cross_validate --mode=jobs --config=experiments/configs/crae_citeulike_a_random.py \
      --field=reg_v --values=1,10 --p=2,3,4,5 --folds=5 --split_seed=1 --data_dir=../shared/data \
      --root=workdirs/cv/crae --jobs_out=cv_jobs.txt [--set epochs=80]
  python -m experiments.pool --jobs=cv_jobs.txt --parallel=2 --logs=workdirs/cv/crae/pool
  # 2. the choice per P (mean over folds of --metric), and the final runs with it
  python -m experiments.cross_validate --mode=select --config=... --field=reg_v --values=1,10 \
      --p=2,3,4,5 --folds=5 --split_seed=1 --root=workdirs/cv/crae --final_seeds=1,2,3,4,5 \
      --final_root=workdirs/crae-cv --jobs_out=final_jobs.txt

Fold f of k at P is the data protocol "random-P<P>-cv<f>of<k>"
(`recjax.data.psplits`): random-P<P>'s training clicks (the same draw as
``--split_seed``'s random-P<P>) without fold f; fold f is both validation and
test of that run, and random-P<P>'s test clicks are left out, so the choice
never reads the test set.  Each fold run's ``results.json`` "test" entry is
therefore a validation score.  P = 1 cannot be cross-validated this way (a
user's only training click cannot be held out); ``--select`` says so and
``--p1_from`` names the P whose choice P = 1 borrows (default: none, P = 1
keeps the config's value).

``--mode=select`` prints one line per (P, value): mean ± std over the folds
and how many folds finished; a P with an unfinished fold is reported and not
chosen.  ``--ledger=F`` reads a fold whose workdir is gone from its
`experiments.ledger` record (so that folds run in different sessions, on
machines whose workdirs did not survive, make one choice); the count of such
folds is printed.  ``--race`` lets a P with unfinished folds be chosen when
the outcome no longer depends on them: among the values with every fold
finished the best is chosen if each unfinished value is ruled out, i.e. its
unfinished folds would have to average more than the best single fold score
of any value at that P for its mean to catch up (a value with no fold is
never ruled out).  It is a heuristic bound, not a proof (a fold could score
higher than any seen so far), so the choice, the values raced out and what
their folds would have needed are printed and saved.  It writes
``<root>/selection.json`` and, with ``--final_seeds``, the jobs of the final
runs (the chosen value, ``random-P<P>`` with each seed).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from absl import app, flags

from experiments import errors
from experiments import ledger as ledger_lib

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a program (absl's flag registry is global)."""
  flags.DEFINE_enum("mode", "jobs", ["jobs", "select"], "Write the fold jobs, or choose per P.")
  flags.DEFINE_string("config", None, "The experiment config file (its protocol is replaced).")
  flags.DEFINE_string("field", None, "The config field to choose (e.g. reg_v).")
  flags.DEFINE_list("values", None, "Its candidate values.")
  flags.DEFINE_list("p", ["2", "3", "4", "5"], "The P of the random-P protocols to choose for.")
  flags.DEFINE_integer("folds", 5, "k of the k-fold cross-validation.")
  flags.DEFINE_integer("split_seed", 1, "The random-P draw whose training clicks are folded.")
  flags.DEFINE_string("root", "workdirs/cv", "Folder of the fold runs' workdirs.")
  flags.DEFINE_string("data_dir", None, "Passed on to experiments.main.")
  flags.DEFINE_multi_string("set", [], "Further key=value overrides for every run.")
  flags.DEFINE_string("metric", "recall_cdl@300", "What the choice maximizes (mean over folds).")
  flags.DEFINE_string("jobs_out", None, "Where the jobs file goes (mode jobs: the fold runs; "
                      "mode select: the final runs).")
  flags.DEFINE_list("final_seeds", [], "Mode select: split seeds of the final runs.")
  flags.DEFINE_string("final_root", "workdirs/cv-final", "Mode select: their workdirs' folder.")
  flags.DEFINE_integer("p1_from", 0, "Mode select: P = 1 takes the choice of this P (0: none).")
  flags.DEFINE_string("name_prefix", "", "Starts every job name (e.g. 'crae-'), so that the "
                      "jobs of several models share one pool file.")
  flags.DEFINE_bool("race", False, "Mode select: choose a P with unfinished folds when every "
                    "unfinished value is ruled out by the racing rule (see the module doc).")
  flags.DEFINE_string("ledger", None, "Mode select: an experiments.ledger file, read for a fold "
                      "whose workdir is gone (e.g. experiments/results/ledger.jsonl).")


def fold_workdir(root: str, p: int, field: str, value: str, fold: int, folds: int) -> Path:
  return Path(root) / f"P{p}" / f"{field}={value}" / f"fold{fold}of{folds}"


def _command(config: str, workdir: Path, protocol: str, seed: int, sets: list[str],
             data_dir: str | None) -> str:
  args = ["python", "-m", "experiments.main", f"--config={config}", f"--workdir={workdir}",
          "--set", f"protocol={protocol}", "--set", f"split_seed={seed}"]
  if data_dir:
    args.append(f"--data_dir={data_dir}")
  for item in sets:
    args += ["--set", item]
  return " ".join(shlex.quote(a) for a in args)


def fold_jobs(config: str, field: str, values: list[str], ps: list[int], folds: int, seed: int,
              root: str, sets: list[str] = (), data_dir: str | None = None,
              prefix: str = "") -> list[str]:
  """One ``NAME COMMAND`` line (experiments.pool) per (P, value, fold); names start `prefix`."""
  from recjax.data import psplits  # pylint: disable=import-outside-toplevel
  lines = []
  for p in ps:
    if p < 2:
      raise ValueError(f"P = {p}: a user's only training click cannot be held out, so P = 1 "
                       f"is not cross-validated (see --p1_from)")
    for value in values:
      for fold in range(1, folds + 1):
        name = f"{prefix}cv-P{p}-{field}{value}-f{fold}of{folds}"
        workdir = fold_workdir(root, p, field, value, fold, folds)
        lines.append(f"{name} " + _command(config, workdir, psplits.cv_name(p, fold, folds), seed,
                                           [f"{field}={value}", *sets], data_dir))
  return lines


def _same_value(recorded, value: str) -> bool:
  try:
    return float(recorded) == float(value)
  except (TypeError, ValueError):
    return str(recorded) == value


def _from_ledger(records: dict, workdir: Path, p: int, field: str, value: str, fold: int,
                 folds: int, seed: int, ledger: str) -> dict | None:
  """The fold's test metrics from its ledger record (None: not recorded); checks it is that fold."""
  record = records.get(os.path.normpath(str(workdir)))
  if record is None:
    return None
  ident = record["identity"]
  protocol = f"random-P{p}-cv{fold}of{folds}"
  fields = {k: v for k, v in ident.items() if k.rsplit(".", 1)[-1] == field}
  problems = []
  if ident.get("data_config.protocol") != protocol:
    problems.append(f"protocol {ident.get('data_config.protocol')!r}, expected {protocol!r}")
  if ident.get("data_config.split_seed") != seed:
    problems.append(f"split_seed {ident.get('data_config.split_seed')!r}, expected {seed}")
  if not fields or not all(_same_value(v, value) for v in fields.values()):
    problems.append(f"{field} {list(fields.values()) or '<unset>'}, expected {value}")
  if problems:
    raise ValueError(f"{ledger}: the record of {workdir} is not that fold: {'; '.join(problems)}")
  return record["test"]


def race(scores: dict, folds: int) -> tuple[str | None, dict]:
  """The racing rule of ``--race``: (the choice or None, {value: why it is out}).

  `scores` maps each value to {"mean", "folds", "scores"}.  The candidates are
  the values with all `folds` folds; the best of them is chosen when every
  unfinished value is ruled out: its unfinished folds would have to average
  more than the best single fold score of any value at this P for its mean to
  reach the best candidate's.  A value with no fold is never ruled out.
  """
  done = [v for v in scores if scores[v]["folds"] == folds]
  if not done:
    return None, {}
  best = max(done, key=lambda v: scores[v]["mean"])
  ceiling = max(x for v in scores for x in scores[v]["scores"])
  out = {}
  for value, entry in scores.items():
    if entry["folds"] == folds:
      continue
    if not entry["folds"]:
      return None, {}
    needed = (folds * scores[best]["mean"] - sum(entry["scores"])) / (folds - entry["folds"])
    if needed <= ceiling:
      return None, {}
    out[value] = {"folds": entry["folds"], "needed": needed, "ceiling": ceiling}
  return best, out


def select(field: str, values: list[str], ps: list[int], folds: int, root: str, metric: str,
           log=print, ledger: str | None = None, split_seed: int = 1,
           racing: bool = False) -> dict:
  """{"P<p>": {"scores": {value: {"mean", "std", "folds", ...}}, "chosen": value or None}}.

  A fold is read from its workdir's results.json, or, when that is absent and
  `ledger` is given, from its `experiments.ledger` record (checked to be that
  fold: protocol, `split_seed`, value of `field`).  A P with an unfinished fold
  is not chosen, unless `racing` and `race` rules every unfinished value out
  (then the entry's "raced" says which, and what their folds would have needed).
  """
  records = ledger_lib.load(ledger) if ledger else {}
  out = {}
  for p in ps:
    scores, complete = {}, True
    for value in values:
      got, from_ledger = [], 0
      for fold in range(1, folds + 1):
        workdir = fold_workdir(root, p, field, value, fold, folds)
        path = workdir / "results.json"
        if path.is_file():
          test, where = json.loads(path.read_text()).get("test", {}), path
        else:
          test = _from_ledger(records, workdir, p, field, value, fold, folds, split_seed, ledger)
          if test is None:
            continue
          where, from_ledger = f"{ledger} ({workdir})", from_ledger + 1
        if metric not in test:
          raise ValueError(f"{where}: no {metric!r} in its test metrics "
                           f"({', '.join(sorted(test))})")
        got.append(float(test[metric]))
      complete &= len(got) == folds
      mean, std = ledger_lib.mean_std(got) if got else (float("nan"), float("nan"))
      scores[value] = {"mean": mean, "std": std, "folds": len(got), "from_ledger": from_ledger,
                       "scores": got}
      log(f"P={p} {field}={value}: {metric} {mean:.4f} ± {std:.4f} over {len(got)} of {folds} "
          f"folds" + (f" ({from_ledger} from the ledger)" if from_ledger else ""))
    entry = {"scores": scores, "chosen": None}
    if complete:
      entry["chosen"] = max(values, key=lambda v: scores[v]["mean"])
      log(f"P={p}: chosen {field}={entry['chosen']}")
    elif racing and (raced := race(scores, folds))[0] is not None:
      entry["chosen"], entry["raced"] = raced
      log(f"P={p}: chosen {field}={entry['chosen']} by racing: " + "; ".join(
          f"{field}={v} ruled out after {r['folds']} of {folds} folds (its other folds would "
          f"need a mean of {r['needed']:.4f}, above the best fold of any value, "
          f"{r['ceiling']:.4f})" for v, r in entry["raced"].items()))
    else:
      log(f"P={p}: not chosen (unfinished folds)")
    out[f"P{p}"] = entry
  return out


def final_jobs(config: str, field: str, selection: dict, seeds: list[int], root: str,
               sets: list[str] = (), data_dir: str | None = None, prefix: str = "") -> list[str]:
  """The final runs: random-P<P> at each seed with the chosen value (chosen P only)."""
  lines = []
  for key, entry in selection.items():
    if entry["chosen"] is None:
      continue
    p = int(key[1:])
    for seed in seeds:
      workdir = Path(root) / f"P{p}-{field}={entry['chosen']}-s{seed}"
      lines.append(f"{prefix}final-P{p}-s{seed} " + _command(
          config, workdir, f"random-P{p}", seed, [f"{field}={entry['chosen']}", *sets], data_dir))
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("config", "field", "values"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required")
  ps = [int(p) for p in FLAGS.p]
  with errors.one_line_errors({"config": FLAGS.config, "root": FLAGS.root}, False):
    if FLAGS.mode == "jobs":
      lines = fold_jobs(FLAGS.config, FLAGS.field, FLAGS.values, ps, FLAGS.folds,
                        FLAGS.split_seed, FLAGS.root, FLAGS.set, FLAGS.data_dir,
                        FLAGS.name_prefix)
    else:
      selection = select(FLAGS.field, FLAGS.values, ps, FLAGS.folds, FLAGS.root, FLAGS.metric,
                         ledger=FLAGS.ledger, split_seed=FLAGS.split_seed,
                         racing=FLAGS.race)
      if FLAGS.p1_from:
        borrowed = selection.get(f"P{FLAGS.p1_from}", {}).get("chosen")
        selection["P1"] = {"scores": {}, "chosen": borrowed, "from": f"P{FLAGS.p1_from}"}
        print(f"P=1: {FLAGS.field}={borrowed} (P={FLAGS.p1_from}'s choice; P = 1 has no folds)")
      Path(FLAGS.root).mkdir(parents=True, exist_ok=True)
      (Path(FLAGS.root) / "selection.json").write_text(json.dumps(
          {"field": FLAGS.field, "metric": FLAGS.metric, "folds": FLAGS.folds,
           "split_seed": FLAGS.split_seed, "selection": selection}, indent=2) + "\n")
      lines = final_jobs(FLAGS.config, FLAGS.field, selection,
                         [int(s) for s in FLAGS.final_seeds], FLAGS.final_root, FLAGS.set,
                         FLAGS.data_dir, FLAGS.name_prefix) if FLAGS.final_seeds else []
    if FLAGS.jobs_out and (lines or FLAGS.mode == "jobs"):
      Path(FLAGS.jobs_out).parent.mkdir(parents=True, exist_ok=True)
      Path(FLAGS.jobs_out).write_text("\n".join(lines) + "\n")
      print(f"{len(lines)} jobs -> {FLAGS.jobs_out}")
    elif lines:
      print("\n".join(lines))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=errors.parse_flags)
