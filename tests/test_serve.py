"""A trained model as a product: export, load, queries by raw id, workdirs that refuse other runs."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax import serve
from recjax.data import pipeline, splits
from recjax.data.synthetic import synthetic_implicit
from recjax.models.registry import get_model
from recjax.train import artifact
from recjax.train.runner import TrainConfig, WorkdirMismatch, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]


def _matrix(n_users=60, n_items=40, nnz=600, seed=0):
  m = synthetic_implicit(n_users, n_items, nnz, seed=seed)
  m.data[:] = 1.0
  return sp.csr_matrix(m)


def _ids(prefix, n):
  return np.asarray([f"{prefix}{i:03d}" for i in range(n)], dtype=object)


def _config(**kw):
  return TrainConfig(**{"progress": False, "n_devices": 1, "metrics": ("recall@5",), **kw})


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory):
  """EASE on a strong split, with string raw ids; (workdir, split, best state, raw ids)."""
  matrix = _matrix()
  split = splits.strong_generalization(matrix, n_heldout_users=8, seed=3)
  users, items = _ids("u", matrix.shape[0]), _ids("i", matrix.shape[1])
  workdir = tmp_path_factory.mktemp("ease")
  ids = {"users": users[split.train_users], "items": items[split.items]}
  _, best = train_and_evaluate(get_model("ease", {"l2": 5.0}), split, _config(), workdir,
                               log=lambda s: None, ids=ids, return_state=True)
  return workdir, split, best, ids


def test_loaded_scores_equal_the_runners(ease_run):
  workdir, split, best, ids = ease_run
  tm = serve.load(workdir)
  assert tm.model.name == "ease" and tm.model.config.l2 == 5.0
  assert list(tm.item_ids) == list(ids["items"]) and list(tm.user_ids) == list(ids["users"])
  rows = jnp.asarray(split.validation.fold_in.toarray())
  np.testing.assert_array_equal(np.asarray(tm.model.score(tm.params, tm.factors, rows)),
                                np.asarray(tm.model.score(best[0], best[1], rows)))
  assert (sp.csr_matrix(tm.train) != split.train).nnz == 0
  info = json.loads((workdir / "model" / "model.json").read_text())
  assert info["input_values"] == "binary" and info["chosen_by"].startswith("best validation")


def test_known_user_equals_fold_in_of_its_row_and_excludes_its_items(ease_run):
  workdir, split, _, ids = ease_run
  tm = serve.load(workdir)
  users = list(ids["users"][:5])
  known = serve.recommend(tm, users, k=7)
  histories = {u: list(ids["items"][split.train[r].indices]) for r, u in enumerate(users)}
  folded = serve.recommend_histories(tm, histories, k=7)
  for r, u in enumerate(users):
    assert list(known.items[r]) == list(folded.items[r])
    np.testing.assert_allclose(known.scores[r], folded.scores[r], rtol=1e-6)
    assert not set(known.items[r]) & set(histories[u])  # Training items never come back.
    # Raw ids map back to columns: the best item is the arg-max of the row's own scores.
    row = split.train[r].toarray()
    scores = np.array(tm.model.score(tm.params, tm.factors, jnp.asarray(row)))[0]
    scores[row[0] != 0] = -np.inf
    assert known.items[r][0] == ids["items"][int(np.argmax(scores))]
    assert known.scores[r][0] == pytest.approx(scores.max(), rel=1e-6)


def test_filters_unknown_ids_and_popularity_fallback(ease_run):
  workdir, _, _, ids = ease_run
  tm = serve.load(workdir)
  items = list(ids["items"])
  allow = items[:10]
  deny = items[:3] + ["not-an-item"]
  recs = serve.recommend(tm, list(ids["users"][:20]), k=5, allow=allow, deny=deny)
  for got in recs.items:
    assert set(got) <= set(items[3:10])
  assert any("not-an-item" in n for n in recs.notes)
  out = serve.recommend_histories(tm, {"a": [items[0], "ghost"], "b": [], "c": ["ghost2"]}, k=4)
  assert out.unknown == {"a": ["ghost"], "c": ["ghost2"]}
  assert list(out.fallback) == [False, True, True]
  popular = ids["items"][np.argsort(-tm.popularity, kind="stable")[:4]]
  assert list(out.items[1]) == list(popular)
  assert items[0] not in out.items[0]
  with pytest.raises(ValueError, match="not training users"):
    serve.recommend(tm, ["u999"], k=3)


def test_recommend_all_streams_every_user(ease_run):
  workdir, _, _, ids = ease_run
  tm = serve.load(workdir)
  batches = list(serve.recommend_all(tm, k=3, batch_size=16))
  assert len(batches) == -(-len(ids["users"]) // 16)
  keys = [k for b in batches for k in b.keys]
  assert keys == list(ids["users"])
  one = serve.recommend(tm, keys[17:19], k=3)
  assert [list(x) for x in one.items] == [list(x) for x in batches[1].items[1:3]]


def test_similar_items_by_cosine_or_a_one_line_refusal(tmp_path):
  matrix = _matrix(seed=1)
  tm = serve.fit(matrix, "wmf", workdir=tmp_path / "wmf", config={"dim": 8},
                 train={"epochs": 3}, item_ids=_ids("i", matrix.shape[1]), log=lambda s: None)
  if tm.model.item_vectors is None:
    pytest.skip("wmf has no item_vectors yet")
  sim = serve.similar_items(tm, ["i005", "i007"], k=5)
  v = np.asarray(tm.factors["V"])
  unit = v / np.linalg.norm(v, axis=1, keepdims=True)
  for row, raw in enumerate(["i005", "i007"]):
    col = list(tm.item_ids).index(raw)
    cos = unit @ unit[col]
    cos[col] = -np.inf
    assert list(sim.items[row]) == list(tm.item_ids[np.argsort(-cos, kind="stable")[:5]])
    assert raw not in sim.items[row]
  pop = serve.fit(matrix, "popularity", workdir=tmp_path / "pop", log=lambda s: None)
  with pytest.raises(serve.QueryNotSupported, match="popularity has no item representation"):
    serve.similar_items(pop, [0], k=3)


def test_fit_trains_on_every_user_and_says_there_is_no_evaluation(tmp_path):
  matrix = _matrix(seed=2)
  logs = []
  tm = serve.fit(matrix, "ease", workdir=tmp_path / "w", config={"l2": 10.0},
                 user_ids=_ids("u", matrix.shape[0]), log=logs.append)
  assert len(tm.user_ids) == matrix.shape[0]
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert results["validation"] is None and results["test"] is None
  assert results["evaluation"].startswith("none")
  assert any("last epoch is kept" in l for l in logs)
  # The exported weights are EASE's closed form on every row (brute force numpy).
  x = matrix.toarray()[:, np.asarray(matrix.sum(0)).ravel() > 0]
  p = np.linalg.inv(x.T @ x + 10.0 * np.eye(x.shape[1]))
  b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
  np.testing.assert_allclose(np.asarray(tm.factors["weights"]), b, atol=2e-4)


def test_a_finished_workdir_refuses_another_experiment(tmp_path):
  matrix = _matrix(seed=4)
  split = splits.strong_generalization(matrix, n_heldout_users=6, seed=0)
  workdir = tmp_path / "w"
  train_and_evaluate(get_model("ease", {"l2": 500.0}), split, _config(), workdir,
                     log=lambda s: None)
  before = {f: (workdir / f).read_bytes() for f in ("results.json", "config.json")}
  with pytest.raises(WorkdirMismatch, match=r"model_config.l2: 500.0 -> 5.0.*--overwrite"):
    train_and_evaluate(get_model("ease", {"l2": 5.0}), split, _config(), workdir,
                       log=lambda s: None)
  other = splits.strong_generalization(_matrix(seed=5), n_heldout_users=6, seed=0)
  with pytest.raises(WorkdirMismatch, match="train_nnz"):
    train_and_evaluate(get_model("ease", {"l2": 500.0}), other, _config(), workdir,
                       log=lambda s: None)
  assert {f: (workdir / f).read_bytes() for f in before} == before
  # The same experiment resumes; runtime settings may change.
  logs = []
  train_and_evaluate(get_model("ease", {"l2": 500.0}), split, _config(eval_batch_size=7),
                     workdir, log=logs.append)
  assert any(l.startswith("resumed") for l in logs)
  # overwrite discards it and runs the new experiment.
  res = train_and_evaluate(get_model("ease", {"l2": 5.0}), split, _config(), workdir,
                           log=lambda s: None, overwrite=True)
  assert json.loads((workdir / "results.json").read_text())["run"]["model_config"]["l2"] == 5.0
  assert res["run"]["model_config"]["l2"] == 5.0
  assert serve.load(workdir).model.config.l2 == 5.0


def test_raising_epochs_trains_a_finished_run_further(tmp_path):
  matrix = _matrix(seed=6)
  split = splits.strong_generalization(matrix, n_heldout_users=6, seed=0)
  model = get_model("wmf", {"dim": 4})
  train_and_evaluate(model, split, _config(epochs=2), tmp_path, log=lambda s: None)
  logs = []
  res = train_and_evaluate(model, split, _config(epochs=3), tmp_path, log=logs.append)
  assert any("epochs raised from 2 to 3" in l for l in logs)
  assert res["epochs_run"] == 3 and serve.load(tmp_path).info["epochs_run"] == 3


def test_load_names_what_is_wrong(tmp_path):
  with pytest.raises(serve.ModelLoadError, match="no such directory"):
    serve.load(tmp_path / "missing")
  (tmp_path / "foreign").mkdir()
  with pytest.raises(serve.ModelLoadError, match="not a recjax workdir"):
    serve.load(tmp_path / "foreign")
  unfinished = tmp_path / "unfinished"
  (unfinished / "checkpoints").mkdir(parents=True)
  (unfinished / "config.json").write_text(json.dumps({"train_config": {"epochs": 9}}))
  with pytest.raises(serve.ModelLoadError, match="unfinished run.*of 9 epochs.*run the same"):
    serve.load(unfinished)


def test_four_devices_answer_as_one(ease_run):
  """Trained on one device, loaded on four (batches of 3 rounded up to 4, padded): same answers."""
  workdir, _, _, ids = ease_run
  users = list(ids["users"][:9])
  script = (
      "import json, sys\n"
      "from recjax import serve\n"
      f"tm = serve.load({str(workdir)!r}, n_devices=4)\n"
      "assert tm.mesh.devices.size == 4\n"
      f"r = serve.recommend(tm, {users!r}, k=5, batch_size=3)\n"
      "h = serve.recommend_histories(tm, {'x': list(tm.item_ids[:3]), 'y': []}, k=5, batch_size=3)\n"
      "print(json.dumps([r.to_records(), h.to_records()]))\n")
  env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  four = json.loads(run.stdout.splitlines()[-1])
  tm = serve.load(workdir, n_devices=1)
  one = [serve.recommend(tm, users, k=5).to_records(),
         serve.recommend_histories(tm, {"x": list(tm.item_ids[:3]), "y": []}, k=5).to_records()]
  for got, want in zip(four, one):
    assert [r["items"] for r in got] == [r["items"] for r in want]
    np.testing.assert_allclose([r["scores"] for r in got], [r["scores"] for r in want], rtol=1e-5)


def test_cli_recommend_and_similar(ease_run, tmp_path):
  workdir, _, _, ids = ease_run
  users = ",".join(ids["users"][:2])
  out = tmp_path / "recs.jsonl"
  run = subprocess.run([sys.executable, "-m", "experiments.recommend", f"--workdir={workdir}",
                        f"--users={users}", "--k=3", f"--out={out}"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  assert run.returncode == 0, run.stderr
  records = [json.loads(l) for l in out.read_text().splitlines()]
  assert [r["key"] for r in records] == list(ids["users"][:2])
  assert all(len(r["items"]) == 3 for r in records)
  run = subprocess.run([sys.executable, "-m", "experiments.recommend", f"--workdir={tmp_path}",
                        "--users=u000"], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert run.returncode == 2 and "not a recjax workdir" in run.stderr
  assert "Traceback" not in run.stderr


def test_a_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path):
  """config.json edited by hand to claim another model: orbax's mismatch becomes one line."""
  matrix = _matrix(seed=7)
  split = splits.strong_generalization(matrix, n_heldout_users=6, seed=0)
  train_and_evaluate(get_model("ease"), split, _config(), tmp_path, log=lambda s: None)
  config = json.loads((tmp_path / "config.json").read_text())
  wmf = get_model("wmf", {"dim": 4})
  config["model"] = "wmf"
  config["model_config"] = json.loads(json.dumps(
      __import__("dataclasses").asdict(wmf.config)))
  config["train_config"]["epochs"] = 3
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(WorkdirMismatch, match="checkpoint of epoch 1 does not fit this model"):
    train_and_evaluate(wmf, split, _config(epochs=3), tmp_path, log=lambda s: None)


def test_real_file_ids_map_back_to_the_users_own_ratings(shared_data, tmp_path):
  """ml-100k through the experiment path: a user's training items, by raw id, are exactly
  the movies they rated >= 4 in u.data (the binarization the model card records)."""
  from experiments import train as exp_train
  exp = exp_train.build_experiment(model="ease", dataset="ml-100k",
                                   overrides=["heldout_users=0", "l2=200"])
  exp_train.run_experiment(exp, str(tmp_path), data_dir=str(shared_data), log=lambda s: None)
  tm = serve.load(tmp_path)
  assert tm.info["preprocessing"]["binarize_threshold"] == 4.0
  events = np.loadtxt(shared_data / "movielens-100k" / "u.data", dtype=np.int64)
  rows = {u: r for r, u in enumerate(tm.user_ids)}
  for user in (196, 22, 5, 943):
    liked = set(events[(events[:, 0] == user) & (events[:, 2] >= 4), 1].tolist())
    assert set(tm.item_ids[tm.train[rows[user]].indices].tolist()) == liked
    recs = serve.recommend(tm, [user], k=20)
    assert not set(recs.items[0]) & liked and len(recs.items[0]) == 20


def test_items_as_rows_refuses_user_queries_in_one_line(tmp_path):
  """I-AutoRec (protocol ratings-items): rows are items, so both query kinds are refused."""
  from recjax.data.ratings import rating_split
  rng = np.random.default_rng(0)
  ratings = np.where(rng.random((30, 20)) < 0.4, rng.integers(1, 6, (30, 20)), 0)
  split = rating_split(sp.csr_matrix(ratings.astype(np.float32)), seed=1, orientation="items")
  train_and_evaluate(get_model("autorec", {"hidden": (4,)}), split,
                     _config(epochs=1, metrics=("rmse", "neg_rmse"), select_metric="neg_rmse"),
                     tmp_path, log=lambda s: None)
  tm = serve.load(tmp_path)
  assert tm.info["orientation"] == "items"
  with pytest.raises(serve.QueryNotSupported, match="items as rows.*cannot recommend"):
    serve.recommend(tm, [tm.user_ids[0]], k=3)
  with pytest.raises(serve.QueryNotSupported, match="one vector per user"):
    serve.similar_items(tm, [tm.item_ids[0]], k=3)


def test_play_counts_train_wmf_confidence_and_histories_carry_counts(tmp_path):
  """A `userID artistID weight` file with a header: counts kept (implicit_values=counts), WMF
  with Hu et al.'s linear confidence; a history given with its counts answers as the user."""
  from experiments import train as exp_train
  rng = np.random.default_rng(0)
  m = _matrix(n_users=50, n_items=30, nnz=500, seed=8)
  lines = ["artistID\tuserID\tweight"]  # Item first: must not be swapped.
  for u, i in zip(*m.nonzero()):
    lines.append(f"a{i}\t{u + 1000}\t{int(rng.integers(1, 300))}")
  path = tmp_path / "user_artists.tsv"
  path.write_text("\n".join(lines) + "\n")
  exp = exp_train.build_experiment(
      model="wmf", dataset=str(path),
      overrides=["implicit_values=counts", "confidence=linear", "alpha=0.1", "dim=4",
                 "heldout_users=0", "epochs=2"])
  logs = []
  exp_train.run_experiment(exp, str(tmp_path / "w"), log=logs.append)
  assert any("count column 'weight'" in l for l in logs)
  tm = serve.load(tmp_path / "w")
  assert tm.info["input_values"] == "counts" and tm.train.data.max() > 1
  assert set(map(str, tm.item_ids)) <= {f"a{i}" for i in range(30)}
  assert all(isinstance(u, (int, np.integer)) and u >= 1000 for u in tm.user_ids)
  user = tm.user_ids[0]
  row = tm.train[0]
  history = {user: list(zip(tm.item_ids[row.indices], row.data))}
  known, folded = serve.recommend(tm, [user], k=5), serve.recommend_histories(tm, history, k=5)
  assert list(known.items[0]) == list(folded.items[0])
  clicks_only = serve.recommend_histories(tm, {user: list(tm.item_ids[row.indices])}, k=5)
  assert not np.allclose(clicks_only.scores[0], known.scores[0])  # The counts matter.


def test_unknown_names_suggest_the_closest():
  from experiments import train as exp_train
  from recjax.data.registry import load_dataset
  with pytest.raises(ValueError, match="did you mean 'mult-vae'"):
    exp_train.build_experiment(model="multvae", dataset="ml-100k")
  with pytest.raises(ValueError, match="did you mean 'heldout_users'"):
    exp_train.build_experiment(model="ease", dataset="ml-100k", overrides=["heldout_user=0"])
  with pytest.raises(ValueError, match="did you mean 'ml-100k'"):
    load_dataset("ml100k")


def test_loads_from_a_relative_path(ease_run, monkeypatch):
  workdir = ease_run[0]
  monkeypatch.chdir(workdir.parent)
  tm = serve.load(workdir.name)
  assert len(serve.recommend(tm, [tm.user_ids[0]], k=3).items[0]) == 3


def test_heartbeat_speaks_during_a_long_step_and_stops():
  import time as _time
  from recjax.train.progress import Heartbeat
  lines = []
  with Heartbeat("block step", lines.append, every_s=0.05):
    _time.sleep(0.18)
  n = len(lines)
  _time.sleep(0.12)
  assert n >= 2 and len(lines) == n and "block step: still running" in lines[0]
