"""ALS models on 1 and 4 CPU devices: they end, agree with 1 device, really split
their rows over the mesh, and no compiled program holds a batched LAPACK call.

jaxlib's batched LAPACK kernels block a thread of the pool that runs the program
until their own chunks, scheduled on that pool, are done; with two of them in
flight (two CPU devices each factoring a batch, on a 2-core machine) every pool
thread waits and the process hangs (see the deadlock guard in `recjax.ops.als`).
`ops.als.cholesky_solve` rules it out by construction on CPU: one system per
LAPACK call.  These tests check both halves where it failed:

* each device count trains and evaluates the ALS models of `MODELS` (tiny
  cases of tests/test_item_vectors.py; one per distinct path into the half
  sweeps: WMF exact and CG, CMF's extra Gram, mf-logcount's weighted-λ sweep,
  SVDFeature's direct U sweep, CDL through `nn.content.prior_mean_parts`) in a
  subprocess under a timeout, so a hang fails the test instead of hanging CI,
  and its factors match the 1-device run's;
* the runner hands every ALS model's ``prepare`` the run's mesh (`ALS` of
  tests/test_item_vectors.py, checked without training), and the 4-device
  run's half sweeps are compiled for 4 partitions (their rows split by
  ``shard_map``: the path where the 4-device hang was seen);
* XLA dumps every program the 4-device run compiled (training, fold-in,
  evaluation), and no LAPACK custom call in them has a batch dimension
  (``num_batch_dims="0"``).
"""

import concurrent.futures
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEVICE_COUNTS = (1, 4)  # 2 x 2 devices over two processes: tests/test_multiprocess.py (WMF, CDL).
# (case of test_item_vectors.CASES, extra overrides): one per path into the ALS half sweeps.
MODELS = (("wmf", {}), ("wmf", {"solver": "cg"}), ("cmf", {}), ("mf-logcount", {}),
          ("svdfeature", {}), ("cdl", {}))
DUMPED = 4  # The device count whose compiled programs are checked for batched LAPACK calls.
TIMEOUT_S = 480  # A run takes ~40 s of CPU (two run at once); a hang fails here.

SCRIPT = """
import json, sys, tempfile
sys.path.insert(0, "tests")
import numpy as np
import jax
import test_item_vectors as tiv
from recjax.models import registry
from recjax.train.runner import TrainConfig, train_and_evaluate

n_devices, models = int(sys.argv[1]), json.loads(sys.argv[2])
assert jax.device_count() == 4, jax.device_count()
data = tiv.make_data()
out = {}
for case, extra in models:
  model_name, overrides, kind = tiv.CASES[case]
  split, side = data[kind]
  model = registry.get_model(model_name, {**overrides, **extra})
  name = case + json.dumps(extra)
  config = TrainConfig(epochs=1, batch_size=16, eval_batch_size=16, n_devices=n_devices,
                       progress=False, checkpoint=False, metrics=("recall@5",))
  with tempfile.TemporaryDirectory() as workdir:
    results, (params, factors) = train_and_evaluate(model, split, config, workdir, side=side,
                                                    return_state=True, log=lambda s: None)
  out[name] = {"test": results["test"], "V": np.asarray(factors["V"]).tolist()}
  print(name, "done", flush=True, file=sys.stderr)
print(json.dumps(out))
"""


def _run(n_devices: int, dump: Path | None) -> dict:
  flags = "--xla_force_host_platform_device_count=4"
  if dump is not None:
    flags += f" --xla_dump_to={dump} --xla_dump_hlo_as_text"
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
  try:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(n_devices),
                           json.dumps(MODELS)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired as e:
    done = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    pytest.fail(f"ALS models on {n_devices} CPU devices did not finish in {TIMEOUT_S}s "
                f"(a hang?); finished before it: {done.split()}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


_LAPACK_CALL = re.compile(r'custom_call_target="lapack_(\w+)"[^\n]*?num_batch_dims="(\d+)"')


def batched_lapack_calls(dump: Path) -> list[str]:
  """'file: kernel' for each LAPACK custom call with a batch dimension in XLA's dump."""
  found = []
  for f in sorted(dump.glob("*after_optimizations.txt")):
    for kernel, batch_dims in _LAPACK_CALL.findall(f.read_text()):
      if batch_dims != "0":
        found.append(f"{f.name}: lapack_{kernel} with {batch_dims} batch dims")
  return found


def lapack_calls(dump: Path) -> int:
  return sum(len(_LAPACK_CALL.findall(f.read_text()))
             for f in dump.glob("*after_optimizations.txt"))


def test_batched_lapack_detector_sees_a_batched_call(tmp_path):
  """The checker below would catch a batched call (jnp.linalg.cholesky on [B, K, K])."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_dump_to={tmp_path} --xla_dump_hlo_as_text")
  subprocess.run([sys.executable, "-c", "import jax, jax.numpy as jnp; "
                  "jax.jit(jnp.linalg.cholesky)(jnp.tile(jnp.eye(4), (8, 1, 1))).block_until_ready()"],
                 env=env, check=True, timeout=120)
  assert batched_lapack_calls(tmp_path), sorted(p.name for p in tmp_path.iterdir())[:5]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{device count: its results}, and the dump folder of the `DUMPED` run; two runs at once."""
  dump = tmp_path_factory.mktemp("hlo")
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {n: pool.submit(_run, n, dump if n == DUMPED else None) for n in DEVICE_COUNTS}
    return {n: f.result() for n, f in futures.items()}, dump


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_every_als_model_ends_and_agrees_with_one_device(runs, n_devices):
  one, out = runs[0][1], runs[0][n_devices]
  assert set(out) == set(one)
  for name in one:
    np.testing.assert_allclose(np.asarray(out[name]["V"]), np.asarray(one[name]["V"]),
                               rtol=1e-3, atol=1e-4, err_msg=f"{name} on {n_devices} devices")
    assert out[name]["test"]["users"] == one[name]["test"]["users"], name


def test_every_als_model_is_handed_the_mesh():
  """The runner passes ``mesh`` to a prepare that takes it; every ALS model's does."""
  sys.path.insert(0, str(REPO / "tests"))
  import test_item_vectors as tiv  # pylint: disable=import-outside-toplevel
  from recjax.models import registry  # pylint: disable=import-outside-toplevel
  for name in tiv.ALS:
    model = registry.get_model(*tiv.CASES[name][:2])
    assert "mesh" in inspect.signature(model.prepare).parameters, name


def test_four_device_sweeps_split_their_rows(runs):
  """The 4-device run compiled its chunk programs (both half sweeps) for 4 partitions."""
  dump = runs[1]
  chunks = {f.name: f.read_text().split("\n", 1)[0]
            for pattern in ("*implicit_rows*", "*weighted_lambda_chunk*")
            for f in dump.glob(pattern + "after_optimizations.txt")}
  assert chunks, sorted(p.name for p in dump.iterdir())[:5]
  assert all("num_partitions=4" in head for head in chunks.values()), chunks


def test_no_compiled_program_holds_a_batched_lapack_call(runs):
  dump = runs[1]
  assert lapack_calls(dump) > 0, "the ALS runs compiled no LAPACK call: is the dump read?"
  assert batched_lapack_calls(dump) == []
