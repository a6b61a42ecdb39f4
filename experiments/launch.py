r"""Runs a recjax command as several local processes of one multi-process JAX run.

  python -m experiments.launch --processes=2 --cpu_devices=2 -- \
      python -m experiments.main --model=mult-vae --dataset=ml-1m --workdir=/tmp/vae \
      --data_dir=../shared/data --set n_devices=4

Each process gets the command with ``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a
free port), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` in its environment
(and ``JAX_NUM_CPU_DEVICES`` with ``--cpu_devices``), which every recjax
training binary reads (`recjax.train.distributed`).  Process 0's output is
shown as it is; the others' lines are prefixed with ``[process i]`` (they print
only warnings and errors).  When one process fails, the others are stopped and
the launcher exits with that process's code: run the same launch again and
every process resumes from the workdir's last checkpoint.

On a cluster, run the command itself once per host instead, with
``--coordinator=<host of process 0>:<port> --num_processes=N --process_id=i``
(or the environment variables above); the workdir must be on a file system
every host sees.  This launcher is for trying a multi-process run on one machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

flags.DEFINE_integer("processes", 2, "How many processes to start.")
flags.DEFINE_integer("cpu_devices", None, "CPU devices per process (sets JAX_NUM_CPU_DEVICES); "
                     "default: JAX's (one on CPU).")
flags.DEFINE_integer("port", None, "Coordinator port on 127.0.0.1 (default: a free one).")
flags.DEFINE_float("stop_grace_s", 10.0, "After one process fails, seconds the others get to stop "
                   "on SIGTERM before they are killed.")
FLAGS = flags.FLAGS

_NOISE = ("[Gloo] ",)  # gloo's connection chatter, one line per peer and process.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict, port: int, n: int, i: int, cpu_devices: int | None) -> dict:
  env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n),
             JAX_PROCESS_ID=str(i))
  if cpu_devices is not None:
    env["JAX_NUM_CPU_DEVICES"] = str(cpu_devices)
  return env


def _relay(stream, out, prefix: str) -> None:
  for line in iter(stream.readline, ""):
    if not line.startswith(_NOISE):
      out.write(prefix + line)
      out.flush()
  stream.close()


def launch(command: list[str], processes: int, cpu_devices: int | None = None,
           port: int | None = None, grace_s: float = 10.0) -> int:
  """Runs `command` as `processes` processes of one run; returns the first failure's exit code
  (0 when all succeed)."""
  if processes < 1:
    raise ValueError(f"--processes must be >= 1, got {processes}")
  if not command:
    raise ValueError("no command after '--' (e.g. -- python -m experiments.main ...)")
  port = port or free_port()
  procs, relays = [], []
  for i in range(processes):
    p = subprocess.Popen(command, env=process_env(os.environ, port, processes, i, cpu_devices),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    procs.append(p)
    prefix = "" if i == 0 else f"[process {i}] "
    for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
      t = threading.Thread(target=_relay, args=(stream, out, prefix), daemon=True)
      t.start()
      relays.append(t)
  failed = None
  try:
    while True:
      codes = [p.poll() for p in procs]  # Every process, every round (no short-circuit).
      failed = next((p for p, c in zip(procs, codes) if c not in (None, 0)), None)
      if failed is not None or all(c is not None for c in codes):
        break
      time.sleep(0.2)
  except KeyboardInterrupt:
    failed = procs[0]
  if failed is not None:
    _stop(procs, grace_s)
    who = procs.index(failed)
    sys.stderr.write(f"launch: process {who} exited with code {failed.returncode}; stopped the "
                     f"others; run the same launch again to resume from the last checkpoint\n")
  for t in relays:
    t.join(timeout=5)
  if failed is None:
    return 0
  return failed.returncode if failed.returncode and failed.returncode > 0 else 1


def _stop(procs, grace_s: float) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace_s
  for p in procs:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def main(argv):
  command = argv[1:]
  if command and command[0] == "--":
    command = command[1:]
  sys.exit(launch(command, FLAGS.processes, FLAGS.cpu_devices, FLAGS.port, FLAGS.stop_grace_s))


if __name__ == "__main__":
  app.run(main)
