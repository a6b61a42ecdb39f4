r"""Mult-VAE^PR training on ONE core: seconds per epoch, GFLOP/s against the measured
matmul peak, variants below the fp32 roofline, and cornac / RecBole side by side.

  taskset -c 0 python -m benchmarks.bench_multvae              # the full run (~15 min)
  taskset -c 0 python -m benchmarks.bench_multvae --datasets=ml-1m-lightgcn --epochs=3 \
      --peers=cornac                                           # a quick check
  taskset -c 0 python -m benchmarks.bench_multvae --datasets=synthetic --synthetic_users=20000 \
      --peers= --variants=dense,bf16

The peers' virtual environments come from `bash ../shared/tools/peer-venvs.sh cornac recbole`
(default paths: ~/.cache/recjax-peers/{cornac,recbole}/bin/python; --cornac_python and
--recbole_python override them).

One core.  Everything is meant to run under `taskset -c 0` (the other core runs long
experiments): jax inherits the affinity, and each peer runs in a subprocess of this one (so
pinned to the same core), one after the other, with torch.set_num_threads(1) and
OMP_NUM_THREADS=MKL_NUM_THREADS=1.  The affinity is printed and stored.  The machine is
shared and unpinned jobs of others land on the free core, so every timed block first waits
(up to --quiet_wait_s) for 3 quiet seconds, and records the share of the core that other
processes took while it ran ("others", from /proc/stat less this process's CPU time); a
step timing above --max_others_share is retried (--retries; the least contended is kept).

The model: Mult-VAE^PR [I → 600 → 200 → 600 → I] (`get_model("mult-vae", ...)`: tanh,
dropout 0.5 on the L2-normalized input, multinomial likelihood, Adam 1e-3), 500 users per
batch; β annealed over --total_anneal_steps updates to --anneal_cap (the ml-1m-lightgcn
experiment config's 2000 and 0.5245).  Datasets: `ml-1m-lightgcn` and `gowalla` under the
strong-generalization protocol (`recjax.data.pipeline`, default DataConfig: the training
users only are trained on), and the seeded ML-20M-sized synthetic matrix
(`recjax.data.synthetic.ml20m_like`: 136,677 users x 20,108 items, 10M clicks, all users
trained on; --synthetic_users shrinks it, scaling the clicks).

Timing (per dataset and variant).  The train step is the runner's own
(`recjax.train.runner.make_train_step(model, donate=False)`: value_and_grad of the model's
loss, then the optax update), jitted without buffer donation so that
`benchmarks.harness.time_jitted` can call it repeatedly on one real batch (the first batch
of epoch 1 from the model's batch source, as the runner builds it): inputs on the
device first, compile timed apart, --n_warmup untimed calls, then the median of --n_runs
calls each ended by block_until_ready.  Seconds per epoch = median step time x batches per
epoch (the last, padded batch costs a full step).  As a check of that product, the accuracy
runs train with the real runner (`train_and_evaluate`: host batches, device_put, donated
buffers) and the median wall time of its epochs is printed beside it (epoch 1, which
compiles, and the epochs that evaluate are left out), with the host's batch building time.

FLOPs counted by hand (matmuls only; the count the roofline uses).  With B users per batch
and layers (in, out) = (I, 600), (600, 2·200), (200, 600), (600, I) -- the encoder's last
layer outputs the mean and log-variance, the decoder reads z of width 200 -- each dense layer
costs 2·B·in·out forward; backward costs twice that (the input gradient g Wᵀ and the
weight gradient xᵀ g, 2·B·in·out each), except the first layer, whose input is data and
needs no input gradient.  Per step:
    F = 3 · Σ 2·B·in·out − 2·B·I·600
(ml-1m-lightgcn, I = 3,591: 11.85 GFLOP per step).  An epoch costs F x batches.  XLA's
cost-analysis figure for the compiled step (elementwise work included) is printed beside
it.  Achieved GFLOP/s = F / step time.  The roofline time is F / peak, with the peak the
float32 2048² matmul measured by `harness.matmul_peak_gflops` in the same run (on the same
core); "x roofline" = step time / roofline time (the target is <= 1.3 for fp32 dense).  For
the variants the same fp32 roofline is the yardstick: below 1.0 means the variant beats the
fp32 model's matmul lower bound.  A breakdown of the fp32 step (the bare matmul chain fwd+bwd, loss+gradient alone, the
dropout mask alone -- the model's one-bit mask and flax's float32 one -- Adam alone) shows
where the rest goes.

Variants: `dense` (fp32 baseline), `sparse` (sparse_input=True: padded item lists, a
gather-sum first layer; each batch as wide as a power of two of its longest row, at most the
longest training row, so the timed first batch's width is stored as `batch_width`), `sampled`
(sparse_input + sampled_softmax=--sampled_softmax, uniform proposal) and `bf16`
(compute_dtype="bfloat16": bf16 matmul operands, f32 accumulation, f32 master weights,
softmax, likelihood and KL).  A sparse variant whose padded gather [B, L, 600] float32 at
the longest row L (twice for `sampled`) would exceed --max_gather_gb is skipped, with the
reason stored.

Accuracy (on --accuracy_dataset only).  Each of --accuracy_variants trains --epochs epochs
with the runner (seed 0, validation every --eval_every epochs), and the peers train the same
epochs on the same training matrix (written to a temporary .npz) with the same
architecture, batch size and learning rate:
  * cornac's VAECF (600-200, tanh, multinomial; no input dropout or normalization, and a
    constant β = --cornac_beta: cornac has neither annealing nor dropout), seconds per
    epoch from its own epoch loop;
  * RecBole's MultiVAE (mlp_hidden_size [600], latent_dimension 400 = 2·200, dropout 0.5,
    the same annealing), trained by RecBole's Trainer without evaluation; seconds per epoch
    from Trainer._train_epoch.
Every --eval_every epochs and after the last (outside its timed epochs), each peer writes
its scores for the validation users' fold-in rows to a .npy, and this process computes
NDCG@100 (and Recall@20/50) from them with recjax's own ranking code
(`recjax.eval.ranking.evaluate_ranking`, fold-in items excluded) -- the same function that
evaluates recjax's runs, so the comparison uses one metric implementation (checked: on
recjax scores both paths agree, `metric_path_check_abs_diff`).  The accuracy target
compares NDCG@100 after the last epoch; the table by epoch shows the curves.  On the other
datasets in --peer_datasets the peers train --peer_epochs_large epoch(s) for timing only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

from absl import app, flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from benchmarks import harness
from recjax.data import batching, pipeline, synthetic
from recjax.data.registry import load_dataset
from recjax.eval.ranking import evaluate_ranking
from recjax.models.registry import get_model
from recjax.nn import autoencoders
from recjax.nn.dropout import BitDropout
from recjax.train import runner

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["ml-1m-lightgcn", "gowalla", "synthetic"],
                  "Datasets: ml-1m-lightgcn, gowalla, synthetic.")
flags.DEFINE_string("data_dir", "../shared/data", "Data root for the real datasets.")
flags.DEFINE_integer("synthetic_users", 136_677, "Users of the synthetic matrix (20,108 items; "
                     "clicks scale as 10M x users / 136,677).")
flags.DEFINE_list("variants", ["dense", "sparse", "sampled", "bf16"],
                  "Variants to time: dense, sparse, sampled, bf16.")
flags.DEFINE_integer("sampled_softmax", 1024, "S of the `sampled` variant.")
flags.DEFINE_integer("batch_size", 500, "Users per batch.")
flags.DEFINE_integer("n_runs", 5, "Timed calls per step.")
flags.DEFINE_integer("n_warmup", 2, "Untimed calls per step after compiling.")
flags.DEFINE_float("max_gather_gb", 5.0, "Skip a sparse variant whose padded gathers would "
                   "need more than this many GB.")
flags.DEFINE_string("accuracy_dataset", "ml-1m-lightgcn", "Dataset of the accuracy runs "
                    "('' for none).")
flags.DEFINE_list("accuracy_variants", ["dense", "bf16"], "Variants trained for accuracy.")
flags.DEFINE_integer("epochs", 100, "Epochs of the accuracy runs (recjax and peers).")
flags.DEFINE_integer("eval_every", 10, "recjax's accuracy runs also evaluate every this many "
                     "epochs (a learning curve; those epochs are left out of its epoch times).")
flags.DEFINE_integer("total_anneal_steps", 2000, "β annealing length (recjax, RecBole).")
flags.DEFINE_float("anneal_cap", 0.5245, "Largest β (recjax, RecBole).")
flags.DEFINE_float("cornac_beta", 0.2, "cornac VAECF's constant β (it does not anneal).")
flags.DEFINE_integer("seed", 0, "Seed of parameters, dropout and batch order (all systems).")
flags.DEFINE_list("peers", ["cornac", "recbole"], "Peers to run beside: cornac, recbole.")
flags.DEFINE_list("peer_datasets", ["ml-1m-lightgcn", "gowalla"], "Datasets the peers run on.")
flags.DEFINE_integer("peer_epochs_large", 1, "Peer epochs (timing only) on datasets other "
                     "than the accuracy dataset.")
flags.DEFINE_string("peer_root", os.path.expanduser("~/.cache/recjax-peers"),
                    "Where ../shared/tools/peer-venvs.sh puts the peers' venvs.")
flags.DEFINE_string("cornac_python", None, "cornac's python (default PEER_ROOT/cornac/bin/python).")
flags.DEFINE_string("recbole_python", None, "RecBole's python (default PEER_ROOT/recbole/bin/python).")
flags.DEFINE_integer("peer_timeout", 1800, "Seconds before a peer run is killed.")
flags.DEFINE_float("quiet_wait_s", 30.0, "Before each timed block, wait up to this long for "
                   "3 s in which other processes use < --max_others_share of the core (0: no wait).")
flags.DEFINE_float("max_others_share", 0.05, "Contention above which a step timing is retried.")
flags.DEFINE_integer("retries", 2, "Step timings retried while others used more than "
                     "--max_others_share of the core (the least contended attempt is kept).")
flags.DEFINE_string("out", "benchmarks/results/bench_multvae.json", "JSON output path.")

HIDDEN, LATENT = (600,), 200
VARIANTS = {
    "dense": ("fp32 dense", {}),
    "sparse": ("sparse_input", {"sparse_input": True}),
    "sampled": ("sampled_softmax", {"sparse_input": True}),  # S added from the flag.
    "bf16": ("bf16 (f32 accum)", {"compute_dtype": "bfloat16"}),
    # Accuracy runs only (timed by the runner's real epochs, whose batches have different
    # widths): the sparse variants with length-grouped batches (the config's group_by_length).
    "sparse_grouped": ("sparse_input, length-grouped",
                       {"sparse_input": True, "group_by_length": True}),
    "sampled_grouped": ("sampled_softmax, length-grouped",
                        {"sparse_input": True, "group_by_length": True}),
}
METRICS = ("recall@20", "recall@50", "ndcg@100")

# ----------------------------------------------------------------------------- contention


class Contention:
  """The share of this process's CPUs that OTHER processes used while the block ran.

  The machine is shared (unpinned jobs of other people land on the free core), so every
  figure stores it: busy ticks of the affinity CPUs (/proc/stat) minus the CPU time of this
  process and its waited-for children (os.times), over the CPUs' total ticks.
  """

  def __init__(self):
    self.cpus = sorted(os.sched_getaffinity(0))
    self.share = float("nan")

  def _snap(self):
    busy = total = 0
    with open("/proc/stat") as f:
      for line in f:
        parts = line.split()
        if parts[0] in {f"cpu{c}" for c in self.cpus}:
          ticks = [int(x) for x in parts[1:9]]
          total += sum(ticks)
          busy += sum(ticks) - ticks[3] - ticks[4]  # Less idle and iowait.
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return busy / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK"), own

  def __enter__(self):
    self.start = self._snap()
    return self

  def __exit__(self, *exc):
    b1, t1, o1 = self._snap()
    b0, t0, o0 = self.start
    if t1 > t0:
      self.share = max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))
    return False


def wait_quiet() -> float:
  """Waits (up to --quiet_wait_s) for 3 quiet seconds on this process's core; returns the wait."""
  t0, quiet = time.perf_counter(), 0
  while FLAGS.quiet_wait_s > 0 and time.perf_counter() - t0 < FLAGS.quiet_wait_s and quiet < 3:
    with Contention() as busy:
      time.sleep(1.0)
    quiet = quiet + 1 if busy.share < FLAGS.max_others_share else 0
  return time.perf_counter() - t0


# ----------------------------------------------------------------------------- peers

_CORNAC_SCRIPT = r"""
import json, sys, time
args = json.loads(sys.argv[1]); sys.argv = sys.argv[:1]
from collections import OrderedDict
import numpy as np, scipy.sparse as sp, torch
torch.set_num_threads(args["threads"])
import cornac
from cornac.data import Dataset
from cornac.models.vaecf import vaecf as vaecf_impl
x = sp.load_npz(args["train"]).tocoo()
n_users, n_items = x.shape
# Identity id maps: cornac's row u / column i are the matrix's row u / column i.
data = Dataset.build(list(zip(x.row.tolist(), x.col.tolist(), [1.0] * x.nnz)),
                     global_uid_map=OrderedDict((u, u) for u in range(n_users)),
                     global_iid_map=OrderedDict((i, i) for i in range(n_items)), seed=args["seed"])
assert data.num_items == n_items and data.num_users == n_users
epoch_s, score_files = [], {}
fold = sp.load_npz(args["fold_in"]).tocsr() if args["scores"] else None

def save_scores(epoch):
  xin = (fold.toarray() != 0).astype(np.float32)  # VAECF binarizes its input rows.
  model.vae.eval()
  with torch.no_grad():
    mu, _ = model.vae.encode(torch.from_numpy(xin))
    scores = model.vae.decode(mu).numpy()  # What VAECF.score computes, for fold-in rows.
  model.vae.train()
  path = args["scores"].format(epoch=epoch)
  np.save(path, scores.astype(np.float32))
  score_files[epoch] = path

real_trange = vaecf_impl.trange
class trange:  # cornac's learn() loops over epochs with tqdm's trange: time each epoch.
  def __init__(self, *a, **k):
    self.bar = real_trange(*a, **k)
  def __iter__(self):
    for e in self.bar:
      t0 = time.perf_counter()
      yield e  # Returns when the epoch's batches are done.
      epoch_s.append(time.perf_counter() - t0)
      if fold is not None and (e % args["eval_every"] == 0 or e == args["epochs"]):
        save_scores(e)  # Not timed.
  def set_postfix(self, *a, **k):
    self.bar.set_postfix(*a, **k)
vaecf_impl.trange = trange
model = cornac.models.VAECF(k=args["latent"], autoencoder_structure=list(args["hidden"]),
                            act_fn="tanh", likelihood="mult", n_epochs=args["epochs"],
                            batch_size=args["batch_size"], learning_rate=args["lr"],
                            beta=args["beta"], seed=args["seed"], use_gpu=False)
t0 = time.perf_counter()
model.fit(data)
fit_s = time.perf_counter() - t0
print("RESULT " + json.dumps({
    "library": f"cornac {cornac.__version__} VAECF (torch {torch.__version__})",
    "epoch_s": epoch_s, "fit_s": fit_s, "score_files": score_files,
    "threads": torch.get_num_threads()}))
"""

_RECBOLE_SCRIPT = r"""
import json, os, sys, tempfile, time
args = json.loads(sys.argv[1]); sys.argv = sys.argv[:1]  # RecBole parses sys.argv.
import numpy as np, scipy.sparse as sp, torch
torch.set_num_threads(args["threads"])
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import MultiVAE
from recbole.trainer import Trainer
from recbole.utils import init_seed
x = sp.load_npz(args["train"]).tocoo()
work = tempfile.mkdtemp(dir=args["tmp"])
d = os.path.join(work, "bench"); os.makedirs(d)
head = "user_id:token\titem_id:token\n"
with open(os.path.join(d, "bench.train.inter"), "w") as f:
  f.write(head); f.writelines(f"{u}\t{i}\n" for u, i in zip(x.row, x.col))
for part in ("valid", "test"):  # RecBole wants these files; nothing is evaluated from them.
  with open(os.path.join(d, f"bench.{part}.inter"), "w") as f:
    f.write(head + f"{x.row[0]}\t{x.col[0]}\n")
cfg = {"data_path": work, "benchmark_filename": ["train", "valid", "test"],
       "load_col": {"inter": ["user_id", "item_id"]}, "epochs": args["epochs"],
       "train_batch_size": args["batch_size"], "learning_rate": args["lr"],
       "mlp_hidden_size": list(args["hidden"]), "latent_dimension": 2 * args["latent"],
       "dropout_prob": args["dropout"], "anneal_cap": args["anneal_cap"],
       "total_anneal_steps": args["total_anneal_steps"], "seed": args["seed"],
       "reproducibility": True, "device": "cpu", "use_gpu": False, "show_progress": False,
       "checkpoint_dir": work, "save_dataset": False, "save_dataloaders": False,
       "train_neg_sample_args": None, "eval_step": 0, "state": "ERROR", "worker": 0}
config = Config(model="MultiVAE", dataset="bench", config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
torch.set_num_threads(args["threads"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = MultiVAE(config, train_data.dataset).to("cpu")
trainer = Trainer(config, model)
n_items = x.shape[1]
tok2id = dataset.field2token_id["item_id"]  # RecBole remaps ids (0 is padding).
cols = np.array([tok2id.get(str(j), -1) for j in range(n_items)])
known = cols >= 0
fold = sp.load_npz(args["fold_in"]).tocsr() if args["scores"] else None
epoch_s, score_files = [], {}

def save_scores(epoch):
  xin = np.zeros((fold.shape[0], dataset.item_num), np.float32)
  xin[:, cols[known]] = fold.toarray()[:, known]
  model.eval()
  with torch.no_grad():
    scores, _, _ = model.forward(torch.from_numpy(xin))  # What full_sort_predict computes.
  model.train()
  out = np.full((fold.shape[0], n_items), -np.inf, np.float32)
  out[:, known] = scores.numpy()[:, cols[known]]
  path = args["scores"].format(epoch=epoch)
  np.save(path, out)
  score_files[epoch] = path

inner = trainer._train_epoch
def timed(train_data, epoch_idx, *a, **k):
  t0 = time.perf_counter()
  out = inner(train_data, epoch_idx, *a, **k)
  epoch_s.append(time.perf_counter() - t0)
  e = epoch_idx + 1
  if fold is not None and (e % args["eval_every"] == 0 or e == args["epochs"]):
    save_scores(e)  # Not timed.
  return out
trainer._train_epoch = timed
t0 = time.perf_counter()
trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
fit_s = time.perf_counter() - t0
print("RESULT " + json.dumps({
    "library": f"RecBole {recbole.__version__} MultiVAE (torch {torch.__version__})",
    "epoch_s": epoch_s, "fit_s": fit_s, "score_files": score_files,
    "items_unknown": int((~known).sum()), "threads": torch.get_num_threads()}))
"""

_PEER_SCRIPTS = {"cornac": _CORNAC_SCRIPT, "recbole": _RECBOLE_SCRIPT}
_PEER_NAMES = {"cornac": "cornac VAECF", "recbole": "RecBole MultiVAE"}


def _peer_python(name: str) -> str:
  explicit = FLAGS.cornac_python if name == "cornac" else FLAGS.recbole_python
  return explicit or os.path.join(FLAGS.peer_root, name, "bin", "python")


def _run_peer(name: str, args: dict) -> dict:
  """Runs a peer script in its own venv (one thread, this process's CPU affinity)."""
  python = _peer_python(name)
  if not os.path.exists(python):
    return {"error": f"{python} not found (make it with: bash ../shared/tools/peer-venvs.sh {name})"}
  env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
         "OPENBLAS_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
  wait_quiet()
  load_before = os.getloadavg()[0]
  t0 = time.perf_counter()
  try:
    with Contention() as busy:
      out = subprocess.run([python, "-c", _PEER_SCRIPTS[name], json.dumps(args)],
                           capture_output=True, text=True, check=False,
                           timeout=FLAGS.peer_timeout, env=env)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {FLAGS.peer_timeout}s"}
  load = {"loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0],
          "process_s": time.perf_counter() - t0, "others_cpu_share": busy.share}
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  if out.returncode != 0 or not lines:
    return {"error": f"rc={out.returncode}: {out.stderr[-3000:]}", **load}
  rec = {**json.loads(lines[-1][len("RESULT "):]), **load}
  t = rec["epoch_s"]
  rec["s_per_epoch"] = statistics.median(t[1:] if len(t) > 2 else t)
  return rec


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class Data:
  name: str
  train: sp.csr_matrix
  split: object | None  # RankingSplit, or None for the synthetic matrix.
  summary: str


def _load(name: str) -> Data:
  if name == "synthetic":
    n = FLAGS.synthetic_users
    if n == 136_677:
      m = synthetic.ml20m_like(seed=0)
    else:
      m = synthetic.synthetic_implicit(n, 20_108, int(round(10_000_000 * n / 136_677)), 0,
                                       min_user_items=5, item_alpha=0.8, user_sigma=1.2)
    m = sp.csr_matrix(m, dtype=np.float32)
    return Data(f"synthetic-{m.shape[0]}x{m.shape[1]}", m, None,
                f"seeded ML-20M-sized synthetic: {m.shape[0]} users (all trained) x "
                f"{m.shape[1]} items, {m.nnz} clicks")
  ds = load_dataset(name, data_dir=FLAGS.data_dir)
  split, info = pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong"))
  return Data(name, split.train, split, f"strong generalization: {info['summary']}")


# ----------------------------------------------------------------------------- recjax


def _config(variant: str) -> dict:
  cfg = {"hidden_dims": HIDDEN, "latent_dim": LATENT, "dropout": 0.5, "learning_rate": 1e-3,
         "total_anneal_steps": FLAGS.total_anneal_steps, "anneal_cap": FLAGS.anneal_cap,
         **VARIANTS[variant][1]}
  if variant.startswith("sampled"):
    cfg["sampled_softmax"] = FLAGS.sampled_softmax
  return cfg


def _label(variant: str) -> str:
  label = VARIANTS[variant][0]
  return f"{label} S={FLAGS.sampled_softmax}" if variant.startswith("sampled") else label


def matmul_flops(n_items: int, batch: int, hidden=HIDDEN, latent: int = LATENT) -> dict:
  """The hand count of one step's matmul FLOPs (see the module docstring)."""
  enc = [n_items, *hidden, 2 * latent]
  dec = [latent, *reversed(hidden), n_items]
  layers = list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))
  fwd = sum(2 * batch * i * o for i, o in layers)
  bwd = 2 * fwd - 2 * batch * enc[0] * enc[1]  # No input gradient for the first layer.
  return {"forward": float(fwd), "backward": float(bwd), "total": float(fwd + bwd),
          "layers": layers}


def _epoch_batches(model, train: sp.csr_matrix, batch_size: int, seed: int):
  """Epoch 1's host batches from the model's batch source, as the runner builds them."""
  aux = model.prepare(train) if model.prepare is not None else None
  return model.batch_source.epoch(train, aux, batch_size, 1, seed)[1]


def _first_batch(model, train: sp.csr_matrix, batch_size: int, seed: int) -> dict:
  return next(_epoch_batches(model, train, batch_size, seed))


PHASE = {"step": np.int32(0), "epoch": np.int32(1)}  # The loss's phase at the first update.


def _time_variant(variant: str, data: Data, flops: dict, peak: float) -> dict:
  model = get_model("mult-vae", _config(variant))
  rec = {"dataset": data.name, "variant": variant, "label": _label(variant),
         "model_config": _config(variant)}
  b, n_items = FLAGS.batch_size, data.train.shape[1]
  if model.config.group_by_length:
    rec["skipped"] = "length-grouped batches vary in width: timed by its accuracy run's epochs"
    return rec
  if model.config.sparse_input:
    length = batching.longest_row(data.train)
    gb = b * length * HIDDEN[0] * 4 / 1e9 * (2 if variant == "sampled" else 1)
    rec.update(padded_length=length, gather_gb=gb,
               mean_row=float(data.train.nnz / data.train.shape[0]))
    if gb > FLAGS.max_gather_gb:
      rec["skipped"] = (f"padded gathers [B={b}, L={length}, {HIDDEN[0]}] float32 would take "
                        f"{gb:.1f} GB > --max_gather_gb={FLAGS.max_gather_gb}")
      return rec
  key = jax.random.PRNGKey(FLAGS.seed)
  params, factors = model.init(jax.random.fold_in(key, 0), data.train)
  opt_state = model.optimizer.init(params)
  batch = _first_batch(model, data.train, b, FLAGS.seed)
  if "items" in batch:
    rec["batch_width"] = int(batch["items"].shape[1])
  step = runner.make_train_step(model, donate=False)
  attempts = []
  for _ in range(max(1, FLAGS.retries)):  # Keep the least contended attempt.
    waited = wait_quiet()
    load = os.getloadavg()[0]
    with Contention() as busy:
      timed = harness.time_jitted(step, params, opt_state, factors, batch, jax.random.PRNGKey(1),
                                  PHASE, n_runs=FLAGS.n_runs, n_warmup=FLAGS.n_warmup,
                                  name=f"train_step {data.name} {variant}")
    attempts.append({**timed, "others_cpu_share": busy.share, "waited_s": waited,
                     "loadavg_1m_before": load, "loadavg_1m_after": os.getloadavg()[0]})
    if busy.share <= FLAGS.max_others_share:
      break
  best = min(attempts, key=lambda a: a["others_cpu_share"])
  timed = {k: v for k, v in best.items()}
  rec["attempts_median_s_share"] = [(a["median_s"], a["others_cpu_share"]) for a in attempts]
  n_batches = batching.n_batches(data.train.shape[0], b)
  roof = flops["total"] / (peak * 1e9)
  rec.update(timed)
  rec.update(n_batches=n_batches, s_per_epoch=timed["median_s"] * n_batches,
             hand_flops_step=flops["total"], hand_flops_epoch=flops["total"] * n_batches,
             xla_flops_epoch=None if timed["flops"] is None else timed["flops"] * n_batches,
             gflops=flops["total"] / timed["median_s"] / 1e9, roofline_s=roof,
             x_roofline=timed["median_s"] / roof)
  return rec


def _chain_weights(n_items: int) -> list:
  """Kernels of the fp32 network's four dense layers (random; only their shapes matter)."""
  enc, dec = [n_items, *HIDDEN, 2 * LATENT], [LATENT, *reversed(HIDDEN), n_items]
  shapes = list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))
  keys = jax.random.split(jax.random.PRNGKey(4), len(shapes))
  return [jax.random.normal(k, s, jnp.float32) / np.sqrt(s[0]) for k, s in zip(keys, shapes)]


def _matmul_chain(ws, x):
  """The step's matmuls with only tanh and a multinomial log-likelihood around them (no
  normalization, dropout, sampling, KL, biases): a floor for what the model's loss+grad costs."""
  n_enc = len(HIDDEN) + 1
  h = x
  for i, w in enumerate(ws[:n_enc]):
    h = h @ w if i == n_enc - 1 else jnp.tanh(h @ w)
  h = h[:, :LATENT]
  for i, w in enumerate(ws[n_enc:]):
    h = h @ w if i == len(ws) - n_enc - 1 else jnp.tanh(h @ w)
  return -jnp.sum(jax.nn.log_softmax(h) * x)


def _breakdown(data: Data, flops: dict, peak: float) -> dict:
  """Times the pieces of the fp32 dense step: loss+gradient, the dropout mask, Adam."""
  model = get_model("mult-vae", _config("dense"))
  params, factors = model.init(jax.random.PRNGKey(0), data.train)
  opt_state = model.optimizer.init(params)
  batch = _first_batch(model, data.train, FLAGS.batch_size, FLAGS.seed)
  kw = dict(n_runs=FLAGS.n_runs, n_warmup=1)
  wait_quiet()
  busy = Contention().__enter__()
  grad = harness.time_jitted(jax.value_and_grad(model.loss, has_aux=True), params, factors,
                             batch, jax.random.PRNGKey(1), PHASE, name="loss+grad", **kw)
  dropout = harness.time_jitted(
      lambda key, x: nn.Dropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": key}),
      jax.random.PRNGKey(2), batch["rows"], name="flax float32 dropout mask [B, I]", **kw)
  bit_mask = harness.time_jitted(
      lambda key, x: BitDropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": key}),
      jax.random.PRNGKey(2), batch["rows"], name="BitDropout mask [B, I] (the model's)", **kw)
  adam = harness.time_jitted(
      lambda p, s, g: optax.apply_updates(p, model.optimizer.update(g, s, p)[0]),
      params, opt_state, params, name="Adam update", **kw)
  chain = harness.time_jitted(jax.grad(_matmul_chain), _chain_weights(data.train.shape[1]),
                              batch["rows"], name="matmul chain fwd+bwd", **kw)
  busy.__exit__()
  n_params = sum(x.size for x in jax.tree.leaves(params))
  return {"dataset": data.name, "loss_grad_s": grad["median_s"], "others_cpu_share": busy.share,
          "matmul_chain_grad_s": chain["median_s"],
          "flax_dropout_mask_s": dropout["median_s"], "bit_dropout_mask_s": bit_mask["median_s"], "adam_s": adam["median_s"],
          "n_params": int(n_params), "roofline_s": flops["total"] / (peak * 1e9)}


def _precomputed_scores(state, inputs):
  """A score_fn for evaluate_ranking whose state IS the batch's score matrix."""
  del inputs
  return state


def _ndcg_from_scores(scores: np.ndarray, eval_set) -> dict:
  """recjax's ranking metrics of a score matrix for `eval_set`'s rows (one batch)."""
  n = eval_set.fold_in.shape[0]
  return evaluate_ranking(_precomputed_scores, jnp.asarray(scores, jnp.float32), eval_set,
                          metrics=METRICS, batch_size=n)


def _metric_path_check(split) -> float:
  """|difference| between evaluate_ranking on model.score and on its precomputed scores."""
  model = get_model("mult-vae", _config("dense"))
  params, factors = model.init(jax.random.PRNGKey(3), split.train)
  ev = split.validation
  scores = np.asarray(model.score(params, factors, jnp.asarray(ev.fold_in.toarray(), jnp.float32)))
  a = _ndcg_from_scores(scores, ev)["ndcg@100"]
  b = evaluate_ranking(lambda st, x: model.score(st[0], st[1], x), (params, factors), ev,
                       metrics=METRICS, batch_size=500)["ndcg@100"]
  return abs(a - b)


def _train_for_accuracy(variant: str, data: Data, tmp: str) -> dict:
  """Trains with the real runner; returns its validation metrics and epoch wall times."""
  model = get_model("mult-vae", _config(variant))
  cfg = runner.TrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, metrics=METRICS,
                           select_metric="ndcg@100", eval_every=FLAGS.eval_every or FLAGS.epochs,
                           seed=FLAGS.seed, checkpoint=False, n_devices=1, progress=False)
  workdir = pathlib.Path(tmp) / f"recjax-{variant}"
  wait_quiet()
  t0 = time.perf_counter()
  with Contention() as busy:
    runner.train_and_evaluate(model, data.split, cfg, workdir, log=lambda s: None)
  total = time.perf_counter() - t0
  epochs = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  secs = [e["seconds"] for e in epochs]
  # Epoch 1 compiles; epochs that evaluate are not training time.
  inner = [e["seconds"] for e in epochs[1:] if "validation" not in e] or secs[1:] or secs
  # Host side of an epoch: building the batches and copying them to the device (on one core
  # it adds to the step time instead of overlapping it).
  t0 = time.perf_counter()
  for batch in _epoch_batches(model, data.train, FLAGS.batch_size, FLAGS.seed):
    jax.block_until_ready(jax.device_put(batch))
  host = time.perf_counter() - t0
  return {"variant": variant, "validation": epochs[-1]["validation"],  # The last epoch, as peers.
          "curve": {e["epoch"]: e["validation"]["ndcg@100"] for e in epochs if "validation" in e},
          "epoch_s": secs, "real_s_per_epoch": statistics.median(inner), "first_epoch_s": secs[0],
          "host_batches_s_per_epoch": host, "total_s": total, "others_cpu_share": busy.share,
          "final_train": epochs[-1].get("train")}


# ----------------------------------------------------------------------------- output


def _f(x, spec, missing="-"):
  return format(x, spec) if isinstance(x, (int, float)) and x == x else missing


def main(argv):
  del argv
  unknown = set(FLAGS.variants) - set(VARIANTS)
  if unknown:
    raise ValueError(f"--variants: unknown {sorted(unknown)}; known {sorted(VARIANTS)}")
  env = harness.environment()
  cpus = sorted(os.sched_getaffinity(0))
  print(f"{env['device_kind']} ({env['platform']}), jax {env['jax']}; process pinned to CPU(s) "
        f"{cpus} of {env['cpu_count']}")
  if len(cpus) != 1:
    print("WARNING: not pinned to one core; run under `taskset -c 0` for one-core figures")
  print("one core: recjax and the peers (1 torch/OMP thread) run in turn on the same core")
  wait_quiet()
  peaks = [{"when": "start", "gflops": harness.matmul_peak_gflops()}]
  peak = peaks[0]["gflops"]
  a = jax.random.normal(jax.random.PRNGKey(0), (2048, 2048), jnp.float32)
  bf = harness.time_jitted(autoencoders.mixed_matmul, a, a, n_runs=10, name="mixed_matmul2048")
  peak_bf16 = 2.0 * 2048**3 / bf["median_s"] / 1e9
  print(f"float32 matmul peak (2048², measured now, one core): {peak:.0f} GFLOP/s; "
        f"bf16 x bf16 -> f32 (mixed_matmul): {peak_bf16:.0f} GFLOP/s")
  extra = {"cpu_affinity": cpus, "matmul_peak_gflops": peak, "matmul_peak_measurements": peaks,
           "bf16_matmul_peak_gflops": peak_bf16,
           "flags": {f: getattr(FLAGS, f) for f in (
               "datasets", "variants", "sampled_softmax", "batch_size", "n_runs", "n_warmup",
               "accuracy_dataset", "accuracy_variants", "epochs", "total_anneal_steps",
               "anneal_cap", "cornac_beta", "seed", "peers", "peer_datasets",
               "peer_epochs_large", "synthetic_users", "max_gather_gb")},
           "architecture": f"[I -> {HIDDEN[0]} -> {LATENT} -> {HIDDEN[0]} -> I]"}
  records, tables = [], []
  accuracy_rows, speed_rows, verdicts = [], [], []
  with tempfile.TemporaryDirectory() as tmp:
    for name in FLAGS.datasets:
      t0 = time.perf_counter()
      data = _load(name)
      n_users, n_items = data.train.shape
      b = FLAGS.batch_size
      n_batches = batching.n_batches(n_users, b)
      flops = matmul_flops(n_items, b)
      # The shared machine's peak drifts: measure it again here; the roofline is the largest.
      wait_quiet()
      peaks.append({"when": name, "gflops": harness.matmul_peak_gflops()})
      peak = max(p["gflops"] for p in peaks)
      extra["matmul_peak_gflops"] = peak
      print(f"\n== {data.name}: {data.summary} ({time.perf_counter() - t0:.1f}s); batch {b} -> "
            f"{n_batches} steps/epoch")
      print(f"matmul FLOPs per step by hand: {flops['total'] / 1e9:.2f} G (forward "
            f"{flops['forward'] / 1e9:.2f} + backward {flops['backward'] / 1e9:.2f}); roofline "
            f"{1e3 * flops['total'] / (peak * 1e9):.1f} ms/step = "
            f"{n_batches * flops['total'] / (peak * 1e9):.2f} s/epoch at {peak:.0f} GFLOP/s "
            f"(peak measured now {peaks[-1]['gflops']:.0f}, largest so far {peak:.0f})")
      rows = {}
      for variant in FLAGS.variants:
        rec = _time_variant(variant, data, flops, peak)
        rec = {"kind": "step", **rec}
        records.append(rec)  # The same dict: the roofline fields are updated at the end.
        rows[variant] = rec
        if "skipped" in rec:
          print(f"  {rec['label']}: skipped: {rec['skipped']}", flush=True)
        else:
          print(f"  {rec['label']}: step {1e3 * rec['median_s']:.1f} ms (compile "
                f"{rec['compile_s']:.1f}s) -> {rec['s_per_epoch']:.2f} s/epoch, "
                f"{rec['gflops']:.0f} GFLOP/s, {rec['x_roofline']:.2f}x fp32 roofline "
                f"[others used {100 * rec['others_cpu_share']:.0f}% of the core]", flush=True)
      bd = None
      if "dense" in FLAGS.variants:
        bd = _breakdown(data, flops, peak)
        bd = {"kind": "breakdown", **bd}
        records.append(bd)
        print(f"  fp32 step pieces: the bare matmul chain fwd+bwd {1e3 * bd['matmul_chain_grad_s']:.0f} "
              f"ms; loss+grad {1e3 * bd['loss_grad_s']:.0f} ms (its dropout mask "
              f"alone {1e3 * bd['bit_dropout_mask_s']:.1f} ms; flax's float32 mask would take "
              f"{1e3 * bd['flax_dropout_mask_s']:.1f} ms), Adam on {bd['n_params'] / 1e6:.1f}M "
              f"params {1e3 * bd['adam_s']:.0f} ms; matmul roofline {1e3 * bd['roofline_s']:.0f} ms",
              flush=True)
      tables.append((data, flops, n_batches, rows, bd))
      dense_s = rows.get("dense", {}).get("s_per_epoch")
      bf16_s = rows.get("bf16", {}).get("s_per_epoch")

      acc = {}
      if name == FLAGS.accuracy_dataset and data.split is not None:
        extra["metric_path_check_abs_diff"] = _metric_path_check(data.split)
        for variant in FLAGS.accuracy_variants:
          print(f"  training {_label(variant)} for {FLAGS.epochs} epochs (runner)...", flush=True)
          r = _train_for_accuracy(variant, data, tmp)
          r["step_s_per_epoch"] = rows.get(variant, {}).get("s_per_epoch")
          records.append({"kind": "accuracy", "dataset": data.name, **r})
          acc[variant] = r
          curve = ", ".join(f"{e}: {v:.4f}" for e, v in r["curve"].items())
          print(f"    runner epoch {r['real_s_per_epoch']:.2f} s (median of epochs 2..E without "
                f"evaluation) vs step x batches {_f(r['step_s_per_epoch'], '.2f')} s + host "
                f"batches {r['host_batches_s_per_epoch']:.2f} s [others used "
                f"{100 * r['others_cpu_share']:.0f}% of the core]; val NDCG@100 by epoch {curve}",
                flush=True)
          accuracy_rows.append((data.name, f"recjax {_label(variant)}", r["real_s_per_epoch"],
                                r["step_s_per_epoch"], r["validation"]["ndcg@100"], r["curve"],
                                r["others_cpu_share"]))

      peers = {}
      if name in FLAGS.peer_datasets and FLAGS.peers:
        with_acc = name == FLAGS.accuracy_dataset and data.split is not None
        epochs = FLAGS.epochs if with_acc else FLAGS.peer_epochs_large
        tpath, fpath = os.path.join(tmp, f"{name}-train.npz"), os.path.join(tmp, f"{name}-fold.npz")
        sp.save_npz(tpath, data.train)
        if with_acc:
          sp.save_npz(fpath, data.split.validation.fold_in)
        for peer in FLAGS.peers:
          spath = os.path.join(tmp, f"{name}-{peer}-scores-{{epoch}}.npy") if with_acc else ""
          args = {"eval_every": FLAGS.eval_every or epochs, "train": tpath, "fold_in": fpath, "scores": spath, "epochs": epochs,
                  "batch_size": b, "lr": 1e-3, "hidden": list(HIDDEN), "latent": LATENT,
                  "dropout": 0.5, "anneal_cap": FLAGS.anneal_cap, "beta": FLAGS.cornac_beta,
                  "total_anneal_steps": FLAGS.total_anneal_steps, "seed": FLAGS.seed,
                  "threads": 1, "tmp": tmp}
          print(f"  {_PEER_NAMES[peer]}: {epochs} epoch(s)...", flush=True)
          rec = _run_peer(peer, args)
          rec.update(peer=peer, dataset=data.name, epochs=epochs)
          if "error" not in rec and spath:
            curve = {int(e): _ndcg_from_scores(np.load(f), data.split.validation)
                     for e, f in rec.pop("score_files").items()}
            rec["validation"] = curve[max(curve)]
            rec["curve"] = {e: m["ndcg@100"] for e, m in sorted(curve.items())}
          records.append({"kind": "peer", **rec})
          peers[peer] = rec
          if "error" in rec:
            print(f"    FAILED: {rec['error'][-1500:]}", flush=True)
            continue
          line = (f"    {rec['s_per_epoch']:.2f} s/epoch [others used "
                  f"{100 * rec['others_cpu_share']:.0f}% of the core]")
          if "curve" in rec:
            line += "; val NDCG@100 by epoch " + ", ".join(
                f"{e}: {v:.4f}" for e, v in rec["curve"].items())
          print(line, flush=True)
          if with_acc:
            accuracy_rows.append((data.name, _PEER_NAMES[peer], rec["s_per_epoch"], None,
                                  rec["validation"]["ndcg@100"], rec["curve"],
                                  rec["others_cpu_share"]))
      speed_rows.append((data.name, n_batches, rows, peers))

      # Targets (the roofline ones at the end, against the run's largest peak).
      for peer, rec in peers.items():
        if "error" in rec:
          verdicts.append({"dataset": data.name, "target": f"faster than {peer}", "pass": False,
                           "error": True})
          continue
        for variant, s in (("dense", dense_s), ("bf16", bf16_s)):
          basis = "step x batches"
          if variant in acc:
            s, basis = acc[variant]["real_s_per_epoch"], "runner epochs"
          if s is None:
            continue
          v = {"dataset": data.name, "target": f"recjax {variant} faster than {peer}",
               "recjax_s_per_epoch": s, "recjax_basis": basis, "peer_s_per_epoch":
               rec["s_per_epoch"], "ratio_peer_over_recjax": rec["s_per_epoch"] / s,
               "pass": s < rec["s_per_epoch"]}
          if variant in acc and "validation" in rec:
            ours, theirs = acc[variant]["validation"]["ndcg@100"], rec["validation"]["ndcg@100"]
            v.update(target=v["target"] + " at >= NDCG@100", ndcg_recjax=ours, ndcg_peer=theirs)
            v["pass"] = v["pass"] and ours >= theirs
          verdicts.append(v)
      extra["verdicts"] = verdicts
      harness.write_json(FLAGS.out, records, **extra)  # After every dataset.

  # The roofline: the largest peak measured in the run (the most demanding yardstick).
  peak = max(p["gflops"] for p in peaks)
  extra["matmul_peak_gflops"] = peak
  roof_verdicts = []
  for data, flops, n_batches, rows, bd in tables:
    roof = flops["total"] / (peak * 1e9)
    if bd is not None:
      bd["roofline_s"] = roof
    for rec in rows.values():
      if "median_s" in rec:
        rec.update(roofline_s=roof, x_roofline=rec["median_s"] / roof)
    if "dense" in rows and "median_s" in rows["dense"]:
      x = rows["dense"]["x_roofline"]
      roof_verdicts.append({"dataset": data.name, "target": "fp32 dense step <= 1.3x roofline",
                            "value": x, "pass": x <= 1.3})
  verdicts = roof_verdicts + verdicts
  extra["verdicts"] = verdicts

  # ---------------------------------------------------------------- the tables
  print(f"\nSeconds per epoch, one core (steps: harness median x batches/epoch; roofline at "
        f"the largest fp32 peak measured in the run, {peak:.0f} GFLOP/s; measurements "
        + ", ".join(f"{p['when']} {p['gflops']:.0f}" for p in peaks) + ")")
  head = (f"{'dataset':24s} {'variant':22s} {'step ms':>8s} {'s/epoch':>8s} {'GFLOP/ep':>9s} "
          f"{'XLA GF/ep':>9s} {'GFLOP/s':>8s} {'x roof':>7s} {'vs fp32':>7s} {'others':>6s}")
  print(head)
  print("-" * len(head))
  for data, flops, n_batches, rows, _ in tables:
    base = rows.get("dense", {}).get("s_per_epoch")
    for variant, rec in rows.items():
      if "skipped" in rec:
        print(f"{data.name:24s} {rec['label']:22s} skipped ({rec['padded_length']}-slot rows, "
              f"{rec['gather_gb']:.1f} GB gathers)")
        continue
      speed = f"{base / rec['s_per_epoch']:.2f}x" if base else "-"
      print(f"{data.name:24s} {rec['label']:22s} {1e3 * rec['median_s']:8.1f} "
            f"{rec['s_per_epoch']:8.2f} {rec['hand_flops_epoch'] / 1e9:9.0f} "
            f"{_f((rec['xla_flops_epoch'] or float('nan')) / 1e9, '9.0f'):>9s} "
            f"{rec['gflops']:8.0f} {rec['x_roofline']:7.2f} {speed:>7s} "
            f"{100 * rec['others_cpu_share']:5.0f}%")
  print("GFLOP/ep: hand count of the fp32 model's matmuls (same for every variant; GFLOP/s and "
        "x roof are against it); x roof = step / (hand FLOPs / fp32 peak); others = share of "
        "the core other processes used during the timing.")

  if accuracy_rows:
    print(f"\nAccuracy after {FLAGS.epochs} epochs (seed {FLAGS.seed}), validation users, "
          f"NDCG@100 by recjax.eval.ranking for every system; one core each")
    head = (f"{'dataset':16s} {'system':28s} {'s/epoch':>8s} {'step x n':>8s} {'NDCG@100':>9s} "
            f"{'s / fp32':>8s} {'others':>6s}")
    print(head)
    print("-" * len(head))
    ref = next((r[2] for r in accuracy_rows if r[1] == f"recjax {_label('dense')}"), None)
    for ds, system, real_s, step_s, ndcg, _, share in accuracy_rows:
      print(f"{ds:16s} {system:28s} {real_s:8.2f} {_f(step_s, '8.2f'):>8s} {ndcg:9.4f} "
            f"{_f(real_s / ref if ref else None, '8.2f'):>8s} {100 * share:5.0f}%")
    print("s/epoch: recjax = the runner's epochs (median of 2..E, evaluating epochs left out), "
          "peers = their own epoch loop (median of 2..E); step x n = harness step median x "
          "batches; NDCG@100 after the last epoch; s / fp32 = s/epoch over recjax fp32's.")
    epochs = sorted({e for row in accuracy_rows for e in (row[5] or {})})
    if len(epochs) > 1:
      print("\nValidation NDCG@100 by epoch")
      head = f"{'system':28s} " + " ".join(f"{e:>6d}" for e in epochs)
      print(head)
      print("-" * len(head))
      for _, system, _, _, _, curve, _ in accuracy_rows:
        print(f"{system:28s} " + " ".join(f"{_f((curve or {}).get(e), '6.4f'):>6s}"
                                          for e in epochs))

  if any(peers for *_, peers in speed_rows):
    print("\nPeers vs recjax, seconds per epoch, recjax from harness steps x batches (ratio = "
        "peer s / recjax s; > 1: recjax faster)")
    head = (f"{'dataset':24s} {'peer':18s} {'peer s':>8s} {'fp32 s':>8s} {'ratio':>6s} "
            f"{'bf16 s':>8s} {'ratio':>6s}")
    print(head)
    print("-" * len(head))
    for ds, _, rows, peers in speed_rows:
      d = rows.get("dense", {}).get("s_per_epoch")
      h = rows.get("bf16", {}).get("s_per_epoch")
      for peer, rec in peers.items():
        if "error" in rec:
          print(f"{ds:24s} {_PEER_NAMES[peer]:18s} FAILED (see the json)")
          continue
        p = rec["s_per_epoch"]
        print(f"{ds:24s} {_PEER_NAMES[peer]:18s} {p:8.2f} {_f(d, '8.2f'):>8s} "
              f"{_f(p / d if d else None, '6.2f'):>6s} {_f(h, '8.2f'):>8s} "
              f"{_f(p / h if h else None, '6.2f'):>6s}")

  if verdicts:
    print("\nTargets")
    for v in verdicts:
      detail = ""
      if "value" in v:
        detail = f"{v['value']:.2f}x"
      elif "ratio_peer_over_recjax" in v:
        detail = (f"{v['peer_s_per_epoch']:.2f} / {v['recjax_s_per_epoch']:.2f} s = "
                  f"{v['ratio_peer_over_recjax']:.2f} ({v['recjax_basis']})")
        if "ndcg_recjax" in v:
          detail += f", NDCG@100 {v['ndcg_recjax']:.4f} vs {v['ndcg_peer']:.4f}"
      print(f"  {'PASS' if v['pass'] else 'FAIL'}  {v['dataset']:24s} {v['target']:48s} {detail}")
  path = harness.write_json(FLAGS.out, records, **extra)
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
