"""Every training and model configuration is checked before any work (issue 17).

In-process: each field rule of every registered model's Config and of
TrainConfig (types, ranges, choices), the metric names against the protocol a
run evaluates with, and that `run_experiment` refuses a bad config before it
reads any data.  Mult-VAE's β schedule: derived from the run's length unless
set, recorded in config.json, reported at the end.  Through the CLI: a few
probes as a user would type them (one ``error:`` line, no traceback, no
results.json).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from experiments import train as train_lib
from recjax.models import base, multvae
from recjax.models import registry
from recjax.train import runner
from recjax.train.runner import TrainConfig
from tests.bad_input import assert_clear_error, run_cli


# ---------------------------------------------------------------------------
# Model configs: types of every field, then the range rules.
# ---------------------------------------------------------------------------

def _config_classes():
  seen = {}
  for name in registry.list_models():
    cls = registry.MODELS[name][0]
    seen.setdefault(cls, name)
  return [(name, cls) for cls, name in seen.items()]


def _wrong_type_values(annotation) -> list:
  base_type, _ = base._split_optional(annotation)
  if base_type is bool:
    return ["yes", 1]
  if base_type is int:
    return [2.5, "x", True]
  if base_type is float:
    return ["x", float("nan"), True]
  if base_type is str:
    return [3]
  if typing.get_origin(base_type) is tuple:
    inner = typing.get_args(base_type)[0]
    return [(0,), (2.5,), 7] if inner is int else [7]
  return []


TYPE_CASES = [
    pytest.param(name, field, value, id=f"{name}-{field}-{value!r}")
    for name, cls in _config_classes()
    for field, annotation in typing.get_type_hints(cls).items()
    if field in {f.name for f in dataclasses.fields(cls)}
    for value in _wrong_type_values(annotation)
]


def test_every_model_has_type_cases():
  covered = {c.values[0] for c in TYPE_CASES}
  assert covered >= {n for n, cls in _config_classes() if dataclasses.fields(cls)}


@pytest.mark.parametrize("name,field,value", TYPE_CASES)
def test_model_field_types(name, field, value):
  with pytest.raises(ValueError, match=rf"^\S+: {field} must be .*, got "):
    registry.model_config(name, {field: value})


RANGE_CASES = [
    ("ease", "l2", 0.0), ("ease", "l2", -1.0), ("ease", "solver", "gpu"),
    ("ease", "host_above_items", -1),
    ("slim", "l1", -0.1), ("slim", "n_iters", 0), ("slim", "column_chunk", 0),
    ("slim", "method", "cd"), ("slim", "rho", 0.0),
    ("wmf", "dim", 0), ("wmf", "dim", -5), ("wmf", "a", 0.0), ("wmf", "b", -1.0),
    ("wmf", "reg", -0.01), ("wmf", "solver", "lu"), ("wmf", "confidence", "sqrt"),
    ("wmf", "cg_steps", 0), ("wmf", "init_scale", 0.0), ("wmf", "bucket_growth", 1.0),
    ("wmf", "fold_in_chunk", 0),
    ("wmf", "max_bytes_per_call", 0), ("wmf", "a", float("inf")),
    ("cmf", "reg_z", -1.0), ("cmf", "content_scale", "tfidf"), ("cmf", "content_weight", -1.0),
    ("mf-logcount", "reg", -1.0), ("mf-logcount", "dim", 0),
    ("mult-vae", "dropout", 1.0), ("mult-vae", "dropout", -0.1), ("mult-vae", "latent_dim", 0),
    ("mult-vae", "hidden_dims", (600, 0)), ("mult-vae", "learning_rate", 0.0),
    ("mult-vae", "learning_rate", -1e-3), ("mult-vae", "l2", -1.0),
    ("mult-vae", "total_anneal_steps", -1), ("mult-vae", "anneal_cap", -0.2),
    ("mult-vae", "likelihood", "poisson"), ("mult-vae", "sampler", "zipf"),
    ("mult-vae", "sampled_softmax", -1), ("mult-vae", "compute_dtype", "float16"),
    ("mult-vae", "eps_std", -1.0), ("mult-vae", "pos_weight", 0.0),
    ("mult-dae", "dropout", 1.5), ("mult-dae", "l2", -0.01),
    ("autorec", "hidden", 0), ("autorec", "optimizer", "lbfgs"), ("autorec", "l2", -1.0),
    ("autorec", "hidden_activation", "gelu!"), ("autorec", "momentum", 1.0),
    ("deeprec", "hidden", ()), ("deeprec", "dropout", 1.0), ("deeprec", "refeed_steps", -1),
    ("deeprec", "optimizer", "sgd"),
    ("cdae", "dropout", 1.0), ("cdae", "click_weight", 0.0), ("cdae", "fold_in_steps", -1),
    ("cdae", "fold_in_lr", 0.0),
    ("ncf-gmf", "dim", 0), ("ncf-mlp", "mlp_layers", ()), ("ncf-neumf", "alpha", 1.5),
    ("ncf-gmf", "negatives", 0), ("ncf-gmf", "optimizer", "rmsprop"), ("ncf-gmf", "l2", -1.0),
    ("cdl", "noise", 1.0), ("cdl", "dropout", -0.5), ("cdl", "content_scale", "x"),
    ("cdl", "pretrain_epochs", -1), ("cdl", "encode_batch", 0),
    ("cvae", "likelihood", "poisson"), ("cvae", "layerwise_noise", 1.0),
    ("cvae", "kl_warmup_epochs", -1), ("cvae", "gaussian_precision", 0.0),
    ("ctr", "lda_alpha", 0.0), ("ctr", "lda_em_iters", 0), ("ctr", "theta_steps", -1),
    ("deepmusic", "activation", "gelu"), ("deepmusic", "score_items", "all"),
    ("deepmusic", "wmf_sweeps", 0), ("deepmusic", "hidden", (200, -1)),
    ("svdfeature", "content_norm", "l3"), ("svdfeature", "n_words", 0),
    ("crae", "noise_rate", 1.0), ("crae", "noise", "mask"), ("crae", "pooling", "mean"),
    ("crae", "precision", 0.0), ("crae", "hidden_content_fraction", 1.0),
    ("crae", "clip_norm", -1.0), ("crae", "vocab_size", 0),
    ("svae", "max_length", 1), ("svae", "next_k", 0), ("svae", "total_anneal_steps", -5),
    ("svae", "learning_rate", 0.0),
]


@pytest.mark.parametrize("name,field,value", RANGE_CASES,
                         ids=[f"{n}-{f}-{v!r}" for n, f, v in RANGE_CASES])
def test_model_field_ranges(name, field, value):
  with pytest.raises(ValueError) as info:
    registry.model_config(name, {field: value})
  message = str(info.value)
  assert "\n" not in message
  assert f": {field} must be " in message and repr(value) in message, message


@pytest.mark.parametrize("name", registry.list_models())
def test_defaults_are_valid(name):
  registry.get_model(name)


def test_every_experiment_config_is_valid():
  for path in sorted(Path(train_lib.__file__).parent.glob("configs/[a-z]*.py")):
    experiment = train_lib.load_config_file(str(path))
    registry.get_model(experiment["model"], experiment.get("model_config", {}))
    config = TrainConfig(**experiment.get("train", {}))
    runner.check_metrics(config, train_lib.evaluation_protocol(
        experiment.get("data", {}).get("protocol", "auto")))


def test_accepted_values():
  assert registry.model_config("mult-vae", {"hidden_dims": [600]}).hidden_dims == (600,)  # JSON.
  assert registry.model_config("ease", {"l2": 500}).l2 == 500  # An int where a float is asked.
  assert registry.model_config("slim", {"column_chunk": None}).column_chunk is None
  assert math.isinf(registry.model_config("crae", {"precision": math.inf}).precision)
  assert registry.model_config("mult-vae", {"dropout": 0.0, "anneal_cap": 0.0}).dropout == 0.0
  assert registry.model_config("mult-vae", {"hidden_dims": ()}).hidden_dims == ()
  # α, ε matter only to the confidences that use them: the model (still before any data) checks.
  assert registry.model_config("wmf", {"alpha": -1.0}).alpha == -1.0
  with pytest.raises(ValueError, match="alpha must be finite and > 0"):
    registry.get_model("wmf", {"confidence": "linear", "alpha": 0.0})


def test_sequence_configs():
  from recjax.models import crnn, ngram
  with pytest.raises(ValueError, match="crnn: dim must be an integer >= 1, got 0"):
    crnn.Config(dim=0)
  with pytest.raises(ValueError, match="crnn: cell must be one of"):
    crnn.Config(cell="lstm")
  with pytest.raises(ValueError, match=r"ngram: order must be one of 0, 1, 2, got 3"):
    ngram.Config(order=3)
  with pytest.raises(ValueError, match="ngram: eps must be a finite number > 0"):
    ngram.Config(eps=0.0)


# ---------------------------------------------------------------------------
# TrainConfig.
# ---------------------------------------------------------------------------

TRAIN_CASES = [
    ("epochs", 0), ("epochs", -3), ("epochs", -1), ("epochs", 2.5), ("epochs", "x"),
    ("batch_size", 0), ("batch_size", -500), ("eval_batch_size", 0), ("eval_every", 0),
    ("keep_checkpoints", 0), ("patience", -1), ("checkpoint_every_s", -1.0),
    ("checkpoint_every_s", float("nan")), ("item_chunk", 0), ("n_devices", 0), ("n_devices", -2),
    ("seed", -1), ("seed", 2**40), ("metrics", ()), ("progress", "yes"), ("cold_start", 1),
    ("exclude_fold_in", "no"),
]


@pytest.mark.parametrize("field,value", TRAIN_CASES, ids=[f"{f}-{v!r}" for f, v in TRAIN_CASES])
def test_train_config_fields(field, value):
  with pytest.raises(ValueError) as info:
    TrainConfig(**{field: value})
  assert str(info.value).startswith(f"train: {field} must be "), str(info.value)


@pytest.mark.parametrize("metrics,select", [
    (("recal@5",), None), (("recall@0",), None), (("ndcg",), None), (("recall@20",), "ndcg@"),
    (("recall@20",), "auc"), (("recall@x",), None)])
def test_train_config_metric_names(metrics, select):
  with pytest.raises(ValueError, match="unknown metric"):
    TrainConfig(metrics=metrics, select_metric=select)


def test_train_config_normalizes_metrics():
  config = TrainConfig(metrics="Recall@20, NDCG@100", select_metric=" NDCG@100 ")
  assert config.metrics == ("recall@20", "ndcg@100") and config.select_metric == "ndcg@100"
  assert TrainConfig(checkpoint_every_s=math.inf).checkpoint_every_s == math.inf
  assert TrainConfig(epochs=None).epochs is None


def test_check_metrics_per_protocol():
  ranking = TrainConfig(metrics=("recall@20", "ndcg@100"))
  runner.check_metrics(ranking, "ranking", n_items=100)
  with pytest.raises(ValueError, match=r"'ndcg@100' ranks the top 100 items, but the catalog has 50"):
    runner.check_metrics(ranking, "ranking", n_items=50)
  with pytest.raises(ValueError, match="rating protocol"):
    runner.check_metrics(ranking, "rating")
  with pytest.raises(ValueError, match="'rmse' is a rating metric"):
    runner.check_metrics(TrainConfig(select_metric="rmse"), "ranking")
  rating = TrainConfig(metrics=("rmse", "mae"), select_metric="neg_rmse")
  runner.check_metrics(rating, "rating")
  with pytest.raises(ValueError, match="use 'neg_rmse'"):
    runner.check_metrics(TrainConfig(metrics=("rmse",)), "rating")
  sampled = TrainConfig(metrics=("hr@10", "ndcg@10"))
  runner.check_metrics(sampled, "sampled", n_candidates=100)
  with pytest.raises(ValueError, match="needs k <= 100"):
    runner.check_metrics(TrainConfig(metrics=("hr@200",)), "sampled", n_candidates=100)
  runner.check_metrics(TrainConfig(metrics=("recall_train_test@300",)), "ranking", n_items=400)
  with pytest.raises(ValueError, match="'recall_train_test@10' ranks the whole catalog"):
    runner.check_metrics(TrainConfig(metrics=("recall_train_test@10",)), "sampled",
                         n_candidates=100)


def test_evaluation_protocol_of_data_protocols():
  assert train_lib.evaluation_protocol("loo-sampled") == "sampled"
  assert train_lib.evaluation_protocol("ratings") == "rating"
  assert train_lib.evaluation_protocol("ratings-items") == "rating"
  for p in ("auto", "strong", "given", "strong-temporal-ordered", "random-P1", "P10"):
    assert train_lib.evaluation_protocol(p) == "ranking"


def test_check_devices():
  import jax
  runner.check_devices(None)
  runner.check_devices(len(jax.devices()))
  with pytest.raises(ValueError, match=rf"n_devices=1000, but there .* only {len(jax.devices())} "):
    runner.check_devices(1000)


@pytest.mark.parametrize("group,values,needle", [
    ("train", {"epochs": 0}, "epochs"), ("train", {"eval_every": 0}, "eval_every"),
    ("model_config", {"l2": -1.0}, "l2"), ("data", {"epochz": 3}, "epochz"),
    ("train", {"metrics": ("rmse",)}, "rating metric"),
    ("data", {"protocol": "ratings"}, "rating protocol"),
])
def test_run_experiment_refuses_before_reading_data(tmp_path, group, values, needle):
  """The dataset does not exist: a config error must come first."""
  experiment = {"model": "ease", "dataset": str(tmp_path / "missing.csv"), group: values}
  with pytest.raises(ValueError, match=needle):
    train_lib.run_experiment(experiment, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------
# Mult-VAE's β schedule: derived from the run's length unless set.
# ---------------------------------------------------------------------------

def test_derived_anneal_steps_reproduces_the_authors_run():
  # ML-20M, vae_cf: 116,677 training users, batches of 500 (234 per epoch), 200 epochs.
  assert base.derived_anneal_steps(200 * math.ceil(116_677 / 500), 0.2) == 200_000
  for n in (2, 3, 7, 25, 100, 9_360):
    for cap in (0.05, 0.2, 0.2799, 1.0):
      total = base.derived_anneal_steps(n, cap)
      assert base.beta_after(n, total, cap) == pytest.approx(cap)  # The last update has β = cap.
      if n >= 100:  # ... reached at ~85% of the run, not at its start.
        assert 0.8 * n <= cap * total <= 0.86 * n
  assert base.derived_anneal_steps(1, 0.2) == 0 and base.derived_anneal_steps(100, 0.0) == 0


def _write_clicks(path: Path, users: int = 60, items: int = 40, per_user: int = 12) -> Path:
  rng = np.random.default_rng(0)
  lines = ["user,item,rating"]
  for u in range(users):
    lines += [f"u{u},i{i},5" for i in rng.choice(items, size=per_user, replace=False)]
  path.write_text("\n".join(lines) + "\n")
  return path


VAE_SMALL = {"hidden_dims": (8,), "latent_dim": 4}
TRAIN_SMALL = {"batch_size": 10, "metrics": ("recall@5", "ndcg@20"), "progress": False,
               "checkpoint_every_s": 0.0}


def _run(tmp_path, workdir, model_config, train):
  lines = []
  experiment = {"model": "mult-vae", "dataset": str(_write_clicks(tmp_path / "clicks.csv")),
                "model_config": {**VAE_SMALL, **model_config}, "train": {**TRAIN_SMALL, **train}}
  results = train_lib.run_experiment(experiment, str(tmp_path / workdir), log=lines.append)
  config = json.loads((tmp_path / workdir / "config.json").read_text())
  return results, config, lines


def test_multvae_derived_anneal_reaches_the_cap_and_resumes(tmp_path):
  results, config, lines = _run(tmp_path, "w", {}, {"epochs": 3})
  n_train = config["train_shape"][0]
  updates = 3 * math.ceil(n_train / 10)
  total = config["model_config"]["total_anneal_steps"]
  assert total == base.derived_anneal_steps(updates, 0.2)  # Resolved, and in config.json.
  assert results["run"]["model_config"]["total_anneal_steps"] == total
  assert any(f"total_anneal_steps={total}" in l for l in lines), lines
  assert any(l.startswith(f"mult-vae: β reached 0.2000 (anneal_cap 0.2) after {updates} updates")
             for l in lines), lines
  assert not any("warning" in l for l in lines)
  # Training further (more epochs) keeps the schedule of the run that made the workdir.
  _, again, lines = _run(tmp_path, "w", {}, {"epochs": 4})
  assert again["model_config"]["total_anneal_steps"] == total
  assert any("training this workdir further" in l for l in lines)


def test_multvae_explicit_anneal_is_kept_and_warned(tmp_path):
  _, config, lines = _run(tmp_path, "w", {"total_anneal_steps": 200_000}, {"epochs": 2})
  assert config["model_config"]["total_anneal_steps"] == 200_000
  warnings = [l for l in lines if "warning" in l]
  assert len(warnings) == 2 and "below 10% of anneal_cap" in warnings[-1], lines
  assert warnings[-1].startswith("mult-vae: β reached 0.0000"), warnings


def test_multvae_default_is_derived_and_loss_refuses_unresolved():
  assert multvae.VAEConfig().total_anneal_steps is None
  model = registry.get_model("mult-vae", VAE_SMALL)
  train = sp.random(30, 20, density=0.3, format="csr", random_state=0)
  resolved = model.with_run_length(train, 10, 5)
  assert resolved.config.total_anneal_steps == base.derived_anneal_steps(15, 0.2)
  explicit = registry.get_model("mult-vae", {**VAE_SMALL, "total_anneal_steps": 123})
  assert explicit.with_run_length(train, 10, 5).config.total_anneal_steps == 123


def test_svae_derives_from_its_own_batches():
  model = registry.get_model("svae", {"embed_dim": 4, "rnn_dim": 4, "hidden_dim": 4,
                                      "latent_dim": 2, "max_length": 8})
  rows = [[1, 2, 3], [1], [1, 2], [1, 2, 3, 4], []]  # 3 users with >= 2 items train.
  data = [v for r in rows for v in r]
  indptr = np.cumsum([0] + [len(r) for r in rows])
  indices = np.concatenate([np.arange(len(r)) for r in rows]).astype(np.int32)
  train = sp.csr_matrix((np.asarray(data, np.float32), indices, indptr), shape=(5, 6))
  resolved = model.with_run_length(train, 2, 10)  # 2 batches per epoch, 20 updates.
  assert resolved.config.total_anneal_steps == base.derived_anneal_steps(20, 0.2)


# ---------------------------------------------------------------------------
# Through the CLI, as a user types it.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
  return _write_clicks(tmp_path_factory.mktemp("data") / "clicks.csv")


@pytest.mark.parametrize("model,setting,needle", [
    ("ease", "epochs=0", "epochs"),
    ("ease", "epochs=-1", "epochs"),
    ("mult-vae", "batch_size=0", "batch_size"),
    ("wmf", "eval_every=0", "eval_every"),
    ("ease", "metrics=recal@5", "recal@5"),
    ("wmf", "select_metric=rmse", "select_metric"),
])
def test_cli_refuses_bad_settings(tmp_path, clicks, model, setting, needle):
  workdir = tmp_path / "w"
  proc = run_cli([f"--model={model}", f"--dataset={clicks}", f"--workdir={workdir}",
                  f"--set={setting}"], timeout=120)
  assert_clear_error(proc, needle)
  assert not (workdir / "results.json").exists()


@pytest.mark.parametrize("model,setting,needle", [
    ("c-gru", "epochs=0", "epochs"), ("c-gru", "dropout=1.0", "dropout"), ("bigram", "eps=0", "eps"),
])
def test_sequence_models_refuse_bad_settings_before_reading_data(tmp_path, model, setting, needle):
  proc = run_cli([f"--model={model}", f"--dataset={tmp_path / 'none.txt'}",
                  f"--workdir={tmp_path / 'w'}", f"--set={setting}"], timeout=60)
  assert_clear_error(proc, needle)


def test_sequence_model_missing_dataset_is_one_line(tmp_path):
  proc = run_cli(["--config=experiments/configs/crnn_ml100k.py", f"--dataset={tmp_path / 'none.txt'}",
                  f"--workdir={tmp_path / 'w'}"], timeout=60)
  assert_clear_error(proc, str(tmp_path / "none.txt"))
