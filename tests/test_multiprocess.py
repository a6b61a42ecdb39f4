"""Multi-process runs on JAX's own runtime, with real processes (gloo collectives on CPU).

tests/run_multiprocess.py trains EASE, WMF (Cholesky and CG), Mult-VAE^PR and
CDL on small synthetic data through the runner.  Two processes with two CPU
devices each (started by `experiments.launch`) must give the metrics of one
process with four devices, also with Mult-VAE's item axis split over two
devices (`model_shards=2`, against the replicated one-process run); a run one
of whose processes is SIGKILLed right after a checkpoint must, launched again,
resume to the uninterrupted result.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import launch
from recjax.train import distributed, writer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "run_multiprocess.py"
TIMEOUT_S = 600  # A hang (a collective some process never joins) fails instead of blocking CI.


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS", "RECJAX_TEST"))}
  env.update(extra)
  return env


def _results(stdout: str) -> dict:
  lines = [l for l in stdout.splitlines() if l.startswith("RESULTS ")]
  assert len(lines) == 1, stdout[-3000:]
  return json.loads(lines[0][len("RESULTS "):])


# One persistent compilation cache for the module's launches: the relaunch of the kill test
# and both processes of a run reuse programs compiled before (compiling is most of the time).
CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  CACHE["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))


def _launch(out: Path, processes: int, cpu_devices: int, models: str | None = None, **env):
  cmd = [sys.executable, "-m", "experiments.launch", f"--processes={processes}",
         f"--cpu_devices={cpu_devices}", "--", sys.executable, str(SCRIPT), str(out)]
  if models:
    cmd.append(f"--models={models}")
  return subprocess.run(cmd, cwd=REPO, env=_env(**CACHE, **env), capture_output=True, text=True,
                        timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
  """Results and workdirs of the five cases, 2 processes x 2 CPU devices."""
  out = tmp_path_factory.mktemp("mp2x2")
  done = _launch(out, processes=2, cpu_devices=2)
  assert done.returncode == 0, done.stderr[-3000:]
  return out, _results(done.stdout)


def test_two_processes_give_the_metrics_of_one_process_with_as_many_devices(tmp_path,
                                                                           two_by_two):
  done = _launch(tmp_path, processes=1, cpu_devices=4,
                 models="ease,wmf-cholesky,wmf-cg,mult-vae,cdl")
  assert done.returncode == 0, done.stderr[-3000:]
  one = _results(done.stdout)
  out, two = two_by_two
  assert set(one) == {"ease", "wmf-cholesky", "wmf-cg", "mult-vae", "cdl"}
  assert set(two) == set(one) | {"mult-vae-items"}
  one["mult-vae-items"] = one["mult-vae"]  # Item-sharded over processes = replicated on one.
  for case in two:
    assert one[case]["users"] == two[case]["users"] > 0, case
    for metric in ("recall@20", "ndcg@20"):
      np.testing.assert_allclose(two[case][metric], one[case][metric], rtol=1e-5,
                                 err_msg=f"{case} {metric}")
  # Process 0 alone wrote the run's files, once: one record per epoch, the state exported.
  records = [json.loads(l) for l in (out / "mult-vae" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2]
  config = json.loads((out / "mult-vae" / "config.json").read_text())
  assert config["devices"].startswith("4 x") and "(2 processes)" in config["devices"]
  assert (out / "mult-vae" / "model" / "model.json").exists()


def test_a_killed_process_stops_the_run_and_the_relaunch_resumes_to_the_same_result(
    tmp_path, two_by_two):
  killed = _launch(tmp_path, processes=2, cpu_devices=2, models="mult-vae",
                   **{writer.KILL_AT_ENV: "after_save:1", writer.KILL_PROCESS_ENV: "1"})
  assert killed.returncode != 0
  assert "process 1 exited with code -9" in killed.stderr, killed.stderr[-3000:]
  assert not (tmp_path / "mult-vae" / "results.json").exists()
  resumed = _launch(tmp_path, processes=2, cpu_devices=2, models="mult-vae")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  _, uninterrupted = two_by_two
  assert _results(resumed.stdout)["mult-vae"] == uninterrupted["mult-vae"]
  records = (tmp_path / "mult-vae" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in records] == [1, 2]


def test_settings_come_from_flags_or_environment_and_refuse_half_a_description():
  assert distributed.settings(environ={}) is None
  assert distributed.settings(environ={"JAX_NUM_PROCESSES": "1"}) is None
  env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
  assert distributed.settings(environ=env) == {"coordinator_address": "h:1", "num_processes": 2,
                                                "process_id": 1}
  assert distributed.settings("g:2", 4, 3, environ=env)["process_id"] == 3  # Flags win.
  with pytest.raises(ValueError, match="coordinator"):
    distributed.settings(None, 2, 0, environ={})
  with pytest.raises(ValueError, match="this process's id"):
    distributed.settings("h:1", 2, None, environ={})
  with pytest.raises(ValueError, match=r"not in \[0, 2\)"):
    distributed.settings("h:1", 2, 2, environ={})
  with pytest.raises(ValueError, match="JAX_PROCESS_ID must be an integer"):
    distributed.settings(environ={"JAX_PROCESS_ID": "x"})


def test_the_launcher_reports_a_failed_process_and_stops_the_others(capfd):
  code = launch.launch([sys.executable, "-c",
                        "import os, sys, time\n"
                        "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
                        "time.sleep(60)"], processes=2, grace_s=2.0)
  assert code == 3
  assert "process 1 exited with code 3" in capfd.readouterr().err
