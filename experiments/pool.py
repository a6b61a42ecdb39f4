r"""Runs a file of experiment commands N at a time, on CPU cores or on one accelerator.

  python -m experiments.pool --jobs=grid.txt --parallel=8 --logs=workdirs/pool \
      [--deadline_s=3600] [--pin_cores]

The jobs file has one job per line, ``NAME COMMAND...``: NAME (letters, digits,
``._-``) names the job's log, ``NAME.log`` in ``--logs``; COMMAND is run by
``bash -c`` from the current directory; a rerun appends to its log.  Blank
lines and ``#`` comments are skipped.  For example, the CRAE seeds of Figure 2
(five training sets per P):

  for P in 1 2 3 4 5; do for S in 1 2 3 4 5; do
    echo "crae-p$P-s$S python -m experiments.main \
      --config=experiments/configs/crae_citeulike_a_random.py --data_dir=../shared/data \
      --workdir=workdirs/crae-a-rp$P-s$S --set protocol=random-P$P --set split_seed=$S"
  done; done > grid.txt

What it does for such a grid:

* A job whose ``--workdir=DIR`` already holds ``results.json`` is skipped
  (``--skip_done``), so a pool stopped half-way is continued by running it
  again; experiments.main resumes an unfinished workdir from its checkpoint.
* Jobs that fail do not stop the others; the pool exits 1 if any failed.
* ``--deadline_s``: no job is started that is not expected to finish in time
  (expected: the longest finished job with the same ``--config=``; a job with
  no such precedent is started), and at the deadline the running jobs get
  SIGTERM, then SIGKILL after ``--grace_s``.  Their checkpoints stay.
* Stopping the pool itself (Ctrl-C, ``kill``: SIGINT or SIGTERM) stops its
  running jobs the same way, and it exits 128 + the signal's number.  The
  jobs run in sessions of their own (so that a job's whole process tree can be
  signalled), which a terminal's Ctrl-C does not reach: without this they
  would run on, orphaned.
* ``--pin_cores``: slot i runs on CPU core i (``--parallel`` at most the
  number of usable cores), so N single-core runs do not fight over threads.
* With ``--parallel`` > 1, ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is set
  (unless already set) so several JAX processes can share one GPU: on one H100,
  eight CRAE runs side by side (with four baseline runs beside them) took
  about 1.6 s per epoch each, against about 21 s on one CPU core.

With ``--ledger=F`` every finished job, and every job skipped as done, is
recorded in the `experiments.ledger` file F (its workdir's config and
figures, kept in the repository; a record that would change is refused and
reported, the pool goes on); "ledger": true/false in its summary entry.  A
job whose workdir is absent but recorded in F (run in an earlier session, on
a machine whose workdirs are gone) is skipped too, with "by": "ledger".

Every finished, failed, skipped or stopped job is appended to
``--logs/summary.jsonl`` as {"name", "status", "rc", "seconds"}, with "by"
("deadline", "SIGINT" or "SIGTERM") on a job that was stopped or, after a
signal, not started.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import shlex
import signal
import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

from absl import app, flags

from experiments import ledger as ledger_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("jobs", None, "File with one 'NAME COMMAND...' job per line.")
flags.DEFINE_integer("parallel", 1, "Jobs run at the same time.")
flags.DEFINE_string("logs", "workdirs/pool", "Folder for NAME.log and summary.jsonl.")
flags.DEFINE_float("deadline_s", 0.0,
                   "Stop after this many seconds (0: no deadline); see the module doc.")
flags.DEFINE_float("grace_s", 10.0, "Seconds between SIGTERM and SIGKILL at the deadline.")
flags.DEFINE_bool("pin_cores", False, "Run slot i on CPU core i (Linux).")
flags.DEFINE_string("ledger", None, "Record every done job's workdir in this experiments.ledger "
                    "file (e.g. experiments/results/ledger.jsonl); see the module doc.")
flags.DEFINE_bool("skip_done", True, "Skip jobs whose --workdir already holds results.json.")

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclasses.dataclass(frozen=True)
class Job:
  name: str
  command: str
  line: int
  workdir: str | None = None  # Its --workdir=, whose results.json marks it done.
  group: str | None = None  # Its --config=: jobs of one group take about as long as each other.


def _flag(words: list[str], flag: str) -> str | None:
  for word in words:
    if word.startswith(f"--{flag}="):
      return word.split("=", 1)[1]
  return None


def parse_jobs(text: str, source: str = "<jobs>") -> list[Job]:
  """Jobs of a jobs file; errors name the file and line."""
  jobs, seen = [], {}
  for number, raw in enumerate(text.splitlines(), 1):
    line = raw.strip()
    if not line or line.startswith("#"):
      continue
    name, _, command = line.partition(" ")
    if not _NAME.match(name):
      raise ValueError(f"{source}:{number}: job name {name!r} must be letters, digits, '.', '_' "
                       "or '-' (the line is 'NAME COMMAND...')")
    if not command.strip():
      raise ValueError(f"{source}:{number}: job {name!r} has no command")
    if name in seen:
      raise ValueError(f"{source}:{number}: job name {name!r} is also on line {seen[name]}")
    try:
      words = shlex.split(command)
    except ValueError as e:
      raise ValueError(f"{source}:{number}: cannot split the command of {name!r}: {e}") from None
    seen[name] = number
    jobs.append(Job(name, command.strip(), number, _flag(words, "workdir"), _flag(words, "config")))
  return jobs


def _is_done(job: Job) -> bool:
  return job.workdir is not None and (Path(job.workdir) / "results.json").exists()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
  """Signals the job's process group (bash and what it started), if it is still there."""
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:  # It ended between the last poll and now.
    pass


@contextlib.contextmanager
def _stop_requests():
  """Yields a list that SIGINT and SIGTERM append their number to, instead of killing us."""
  stop, previous = [], {}
  if threading.current_thread() is threading.main_thread():  # Handlers only install there.
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, lambda number, _frame: stop.append(number))
  try:
    yield stop
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def _to_ledger(ledger: str, job: Job, log_dir: Path) -> bool:
  """Records a done job's workdir with `experiments.ledger` (a process of its own: the pool
  imports no JAX); its output goes to the job's log.  True when recorded."""
  with open(log_dir / f"{job.name}.log", "a") as log:
    out = subprocess.run([sys.executable, "-m", "experiments.ledger", "--add",
                          f"--ledger={ledger}", job.workdir], stdout=log,
                         stderr=subprocess.STDOUT, check=False)
  return out.returncode == 0


def run_pool(jobs: list[Job], parallel: int, log_dir: str | Path, deadline_s: float = 0.0,
             grace_s: float = 10.0, pin_cores: bool = False, skip_done: bool = True,
             poll_s: float = 0.2, echo=print, ledger: str | None = None) -> list[dict]:
  """Runs ``jobs``; returns one record per job in the order they ended (see module doc)."""
  if parallel < 1:
    raise ValueError(f"parallel must be >= 1, got {parallel}")
  cores = sorted(os.sched_getaffinity(0)) if pin_cores else []
  if pin_cores and parallel > len(cores):
    raise ValueError(f"--pin_cores with --parallel={parallel}, but only {len(cores)} cores "
                     f"are usable ({cores})")
  log_dir = Path(log_dir)
  log_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ)
  if parallel > 1:
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  recorded = ledger_lib.load(ledger) if ledger else {}
  with _stop_requests() as stop:
    start = time.monotonic()
    deadline = start + deadline_s if deadline_s > 0 else None
    queue, running, records, took = list(jobs), {}, [], {}

    def record(job, status, rc=None, seconds=0.0, by=None):
      entry = {"name": job.name, "status": status, "rc": rc, "seconds": round(seconds, 1)}
      if by is not None:  # What stopped it: "deadline", "SIGINT" or "SIGTERM"; "ledger": done.
        entry["by"] = by
      if ledger and status in ("finished", "skipped") and _is_done(job):
        entry["ledger"] = _to_ledger(ledger, job, log_dir)
        if not entry["ledger"]:
          echo(f"[{time.monotonic() - start:7.0f}s] ledger      {job.name}: not recorded "
               f"(see {log_dir / (job.name + '.log')})")
      records.append(entry)
      with open(log_dir / "summary.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
      echo(f"[{time.monotonic() - start:7.0f}s] {status:11s} {job.name}"
           + (f" rc={rc}" if rc is not None else "") + (f" ({seconds:.0f}s)" if seconds else ""))

    def fits(job, now):
      if deadline is None:
        return True
      expected = took.get(job.group) if job.group is not None else None
      return now + (expected or 0.0) < deadline

    while queue or running:
      now = time.monotonic()
      for slot, (job, proc, t0, log) in list(running.items()):
        rc = proc.poll()
        if rc is None:
          continue
        log.close()
        del running[slot]
        seconds = now - t0
        if rc == 0 and job.group is not None:
          took[job.group] = max(took.get(job.group, 0.0), seconds)
        record(job, "finished" if rc == 0 else "failed", rc, seconds)
      if stop:
        echo(f"[{now - start:7.0f}s] {signal.Signals(stop[0]).name}: stopping the running jobs")
        break
      if deadline is not None and now >= deadline:
        break
      free = [s for s in range(parallel) if s not in running]
      while queue and free:
        job = queue.pop(0)
        if skip_done and _is_done(job):
          record(job, "skipped")
          continue
        if skip_done and job.workdir and os.path.normpath(job.workdir) in recorded:
          record(job, "skipped", by="ledger")  # Done on another machine; its workdir is gone.
          continue
        if not fits(job, now):
          record(job, "not-started")
          continue
        slot = free.pop(0)
        log = open(log_dir / f"{job.name}.log", "a")  # A rerun (resume) appends.
        log.write(f"=== experiments.pool: {time.strftime('%Y-%m-%d %H:%M:%S')} {job.command}\n")
        log.flush()
        proc = subprocess.Popen(["bash", "-c", job.command], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        if pin_cores:  # From the parent: a preexec_fn would fork a process that may hold threads.
          try:
            os.sched_setaffinity(proc.pid, {cores[slot]})
          except ProcessLookupError:  # It has already ended.
            pass
        running[slot] = (job, proc, now, log)
        echo(f"[{now - start:7.0f}s] started     {job.name}"
             + (f" on core {cores[slot]}" if pin_cores else ""))
      if running:
        time.sleep(poll_s)

    signalled = signal.Signals(stop[0]).name if stop else None  # "SIGINT" or "SIGTERM".
    if running:  # Deadline or signal: stop what still runs; its checkpoints stay for a rerun.
      for job, proc, _, _ in running.values():
        _signal_group(proc, signal.SIGTERM)
      end = time.monotonic() + grace_s
      while time.monotonic() < end and any(p.poll() is None for _, p, _, _ in running.values()):
        time.sleep(poll_s)
      for job, proc, t0, log in running.values():
        if proc.poll() is None:
          _signal_group(proc, signal.SIGKILL)
        proc.wait()
        log.close()
        record(job, "stopped", proc.returncode, time.monotonic() - t0,
               by=signalled or "deadline")
    for job in queue:
      record(job, "not-started", by=signalled)
    return records


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.jobs:
    raise app.UsageError("--jobs=FILE is required")
  path = Path(FLAGS.jobs)
  if not path.exists():
    raise app.UsageError(f"--jobs: no such file {path}")
  jobs = parse_jobs(path.read_text(), str(path))
  records = run_pool(jobs, FLAGS.parallel, FLAGS.logs, FLAGS.deadline_s, FLAGS.grace_s,
                     FLAGS.pin_cores, FLAGS.skip_done, ledger=FLAGS.ledger)
  counts = collections.Counter(r["status"] for r in records)
  signalled = [r["by"] for r in records if r.get("by") in ("SIGINT", "SIGTERM")]
  print("pool:", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        f"(summary in {Path(FLAGS.logs) / 'summary.jsonl'})")
  if signalled:  # The shell's convention for a process ended by a signal.
    return 128 + signal.Signals[signalled[0]].value
  return 1 if counts.get("failed") else 0


if __name__ == "__main__":
  from experiments import errors
  errors.run(main)  # Failures: one "error:" line (experiments/errors.py).
