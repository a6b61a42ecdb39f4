"""SVAE: the time-sorted strong protocol, the GRU and loss by hand, padding, scoring, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.test_util import check_grads

from recjax.data import batching, pipeline, temporal
from recjax.data.splits import EvalSet
from recjax.data.types import Dataset, Interactions
from recjax.eval.ranking import evaluate_ranking
from recjax.models import svae
from recjax.models.registry import get_model
from recjax.nn.svae import SVAENet
from recjax.ops import ranking as ranking_ops
from recjax.train.runner import TrainConfig, train_and_evaluate

TINY = {"embed_dim": 5, "rnn_dim": 4, "hidden_dim": 3, "latent_dim": 2, "coupled_l2": 0.0}


def _timed_dataset(n_users=60, n_items=40, seed=0, kind="implicit", timestamps=True):
  """Random events with integer times (many ties), a few repeated (user, item) events."""
  rng = np.random.default_rng(seed)
  users, items = [], []
  for u in range(n_users):
    n = int(rng.integers(2, 16))
    its = rng.choice(n_items, n, replace=False)
    users.extend([u] * n)
    items.extend(its)
  users, items = np.array(users, np.int64), np.array(items, np.int64)
  rep = rng.choice(len(users), 30, replace=False)  # Repeat events: a pair's time is its latest.
  users, items = np.concatenate([users, users[rep]]), np.concatenate([items, items[rep]])
  perm = rng.permutation(len(users))  # File order unrelated to time.
  users, items = users[perm], items[perm]
  ts = rng.integers(0, 20, len(users)).astype(np.int64) if timestamps else None
  # Every id used, so the split's dense ids are these ones.
  users[:n_users] = np.arange(n_users)
  items[:n_items] = np.arange(n_items)
  inter = Interactions(users=users, items=items, values=np.ones(len(users), np.float32),
                       timestamps=ts, user_ids=np.arange(n_users), item_ids=np.arange(n_items),
                       duplicate_rule="sum", name="timed")
  return Dataset(name="timed", interactions=inter, kind=kind)


def _expected_order(inter: Interactions, user: int, item_space: np.ndarray) -> list[int]:
  """The user's items in the split's item space, by (time, file order) of their latest event."""
  latest = {}
  for e in np.flatnonzero(inter.users == user):
    t = 0 if inter.timestamps is None else int(inter.timestamps[e])
    key = (t, int(e))
    latest[int(inter.items[e])] = max(latest.get(int(inter.items[e]), key), key)
  col = {int(i): c for c, i in enumerate(item_space)}
  kept = [i for i in latest if i in col]
  return [col[i] for i in sorted(kept, key=lambda i: latest[i])]


@pytest.mark.parametrize("timestamps,kind", [(True, "implicit"), (False, "sequence")])
def test_fold_out_is_the_last_20_percent_by_time_and_values_are_ranks(timestamps, kind):
  ds = _timed_dataset(timestamps=timestamps, kind=kind)
  cfg = pipeline.DataConfig(protocol="strong-temporal-ordered", heldout_users=0.2)
  split, info = pipeline.ranking_split(ds, cfg)
  assert "strong-temporal-ordered" in info["summary"]
  checked = 0
  for es in (split.validation, split.test):
    for r, u in enumerate(es.users):
      order = _expected_order(ds.interactions, int(u), split.items)
      n = len(order)
      n_out = int(0.2 * n) if n >= 5 else 0
      fold_in, held = es.fold_in[r], es.held_out[r]
      assert sorted(held.indices.tolist()) == sorted(order[n - n_out:])
      assert set(held.data.tolist()) <= {1.0}
      want = {c: k + 1 for k, c in enumerate(order[:n - n_out])}
      assert dict(zip(fold_in.indices.tolist(), fold_in.data.tolist())) == want
      checked += n_out > 0
  assert checked >= 10
  for r, u in enumerate(split.train_users):  # Training rows: ranks 1..n in time order.
    order = _expected_order(ds.interactions, int(u), split.items)
    row = split.train[r]
    assert dict(zip(row.indices.tolist(), row.data.tolist())) == {c: k + 1
                                                                  for k, c in enumerate(order)}


def test_ordered_binary_and_strong_share_users_items_and_fold_out():
  ds = _timed_dataset(seed=1)
  get = lambda p: pipeline.ranking_split(ds, pipeline.DataConfig(protocol=p,
                                                                 heldout_users=0.2))[0]
  ordered, binary, strong = get("strong-temporal-ordered"), get("strong-temporal"), get("strong")
  for s in (binary, strong):
    np.testing.assert_array_equal(s.items, ordered.items)
    np.testing.assert_array_equal(s.train_users, ordered.train_users)
    for a, b in ((s.validation, ordered.validation), (s.test, ordered.test)):
      np.testing.assert_array_equal(a.users, b.users)
      assert (a.fold_in + a.held_out != 0).sum() == (b.fold_in + b.held_out != 0).sum()
      assert ((a.fold_in + a.held_out != 0) != (b.fold_in + b.held_out != 0)).nnz == 0
    assert (s.train != 0).nnz == (ordered.train != 0).nnz
    assert ((s.train != 0) != (ordered.train != 0)).nnz == 0
  for a, b in ((binary.validation, ordered.validation), (binary.test, ordered.test)):
    assert (a.held_out != b.held_out).nnz == 0
    assert ((a.fold_in != 0) != (b.fold_in != 0)).nnz == 0
    assert set(np.unique(a.fold_in.data)) <= {1.0}
  assert set(np.unique(binary.train.data)) == {1.0}


def test_dataset_without_time_order_raises_naming_it():
  ds = _timed_dataset(timestamps=False, kind="implicit")
  with pytest.raises(ValueError, match="'timed'.*no timestamps"):
    pipeline.ranking_split(ds, pipeline.DataConfig(protocol="strong-temporal"))


def _numpy_gru(p, x, mask):
  w_i, b_i, w_h, b_h = (np.asarray(p[k], np.float64) for k in ("w_i", "b_i", "w_h", "b_h"))
  sig = lambda a: 1 / (1 + np.exp(-a))
  b, t, _ = x.shape
  d = w_h.shape[0]
  h = np.zeros((b, d))
  out = np.zeros((b, t, d))
  for s in range(t):
    gi, gh = x[:, s] @ w_i + b_i, h @ w_h + b_h
    r = sig(gi[:, :d] + gh[:, :d])
    z = sig(gi[:, d:2 * d] + gh[:, d:2 * d])
    n = np.tanh(gi[:, 2 * d:] + r * gh[:, 2 * d:])
    h = np.where(mask[:, s:s + 1], (1 - z) * n + z * h, h)
    out[:, s] = h
  return out


def _numpy_net(params, items, mask, eps=None):
  """The whole network in float64 numpy: (logits, mu, logvar)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]
  x = p["embed"]["embedding"][np.where(mask, items, 0)]
  hs = _numpy_gru(p["gru"], x, mask)
  out = dense("enc_out", np.tanh(dense("enc_hidden", hs)))
  k = out.shape[-1] // 2
  mu, logvar = out[..., :k], out[..., k:]
  z = mu if eps is None else mu + eps * np.exp(0.5 * logvar)
  return dense("dec_out", np.tanh(dense("dec_hidden", z))), mu, logvar


def _tiny_params(n_items=7, seed=0):
  net = SVAENet(n_items=n_items, embed_dim=5, rnn_dim=4, hidden_dim=3, latent_dim=2)
  params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), bool))
  return net, params


def test_gru_and_network_match_numpy():
  net, params = _tiny_params()
  items = np.array([[3, 1, 4, 0, 0], [2, 6, 5, 1, 0]], np.int32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
  hs = net.apply(params, jnp.asarray(items), jnp.asarray(mask), method=SVAENet.states)
  x = np.asarray(params["params"]["embed"]["embedding"], np.float64)[items]
  want = _numpy_gru(params["params"]["gru"], x, mask)
  np.testing.assert_allclose(np.asarray(hs), want, rtol=1e-5, atol=1e-6)
  logits, mu, logvar = net.apply(params, jnp.asarray(items), jnp.asarray(mask))
  w_logits, w_mu, w_logvar = _numpy_net(params, items, mask)
  np.testing.assert_allclose(np.asarray(logits), w_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(mu), w_mu, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(logvar), w_logvar, rtol=1e-5, atol=1e-6)


def test_loss_matches_a_numpy_computation():
  n_items, next_k, beta = 7, 2, 0.3
  model = get_model("svae", {**TINY, "next_k": next_k, "total_anneal_steps": 0,
                             "anneal_cap": beta})
  _, params = _tiny_params(n_items)
  items = np.array([[3, 1, 4, 6, 0], [2, 5, 0, 0, 0], [0, 0, 0, 0, 0]], np.int32)
  lengths = np.array([4, 2, 0], np.int32)
  batch = {"items": jnp.asarray(items), "lengths": jnp.asarray(lengths),
           "mask": jnp.asarray([True, True, False]), "index": jnp.asarray([0, 1, -1], jnp.int32)}
  key = jax.random.PRNGKey(5)
  loss, aux = model.loss(params, {}, batch, key, {"step": jnp.asarray(9, jnp.int32)})
  eps = np.asarray(jax.random.normal(key, (3, 5, 2)), np.float64)  # The network's draw.
  mask = np.arange(5)[None, :] < lengths[:, None]
  logits, mu, logvar = _numpy_net(params, items, mask, eps)
  log_pi = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll_u, kl_u = [], []
  for b in range(2):  # Real users; user 1 has one valid step, user 0 three.
    n, kls = 0.0, 0.0
    for t in range(lengths[b] - 1):
      n -= sum(log_pi[b, t, items[b, j]] for j in range(t + 1, min(t + 1 + next_k, lengths[b])))
      kls += 0.5 * np.sum(np.exp(logvar[b, t]) + mu[b, t] ** 2 - 1 - logvar[b, t])
    nll_u.append(n / (lengths[b] - 1))
    kl_u.append(kls / (lengths[b] - 1))
  want = np.mean(nll_u) + beta * np.mean(kl_u)
  assert float(aux["beta"]) == pytest.approx(beta)
  assert float(aux["neg_ll"]) == pytest.approx(np.mean(nll_u), rel=1e-5)
  assert float(aux["kl"]) == pytest.approx(np.mean(kl_u), rel=1e-5)
  assert float(loss) == pytest.approx(want, rel=1e-5)


def test_padding_does_not_leak_into_a_users_loss():
  net, params = _tiny_params(n_items=9, seed=2)
  seqs = [[3, 1, 4, 8, 5], [2, 7], [6, 0, 1, 2, 3, 4, 5, 7]]
  items = np.zeros((4, 16), np.int32)
  items[:, :] = 8  # Garbage ids in the padding: they must not matter.
  lengths = np.array([len(s) for s in seqs] + [0], np.int32)
  for b, s in enumerate(seqs):
    items[b, :len(s)] = s
  nll, kl, steps = svae.per_user_terms(net, params, jnp.asarray(items), jnp.asarray(lengths), 2)
  for b, s in enumerate(seqs):
    alone = svae.per_user_terms(net, params, jnp.asarray([s], jnp.int32),
                                jnp.asarray([len(s)], jnp.int32), 2)
    np.testing.assert_allclose(float(nll[b]), float(alone[0][0]), rtol=1e-5)
    np.testing.assert_allclose(float(kl[b]), float(alone[1][0]), rtol=1e-5)
    assert float(steps[b]) == len(s) - 1
  assert float(steps[3]) == 0 and float(nll[3]) == 0 and float(kl[3]) == 0


def test_score_reads_the_order_and_fold_in_items_are_never_ranked():
  n_items = 30
  model = get_model("svae", {**TINY, "max_length": 8})
  params, factors = model.init(jax.random.PRNGKey(1), sp.csr_matrix((3, n_items)))
  net = SVAENet(n_items=n_items, **{k: TINY[k] for k in
                                    ("embed_dim", "rnn_dim", "hidden_dim", "latent_dim")})
  seq = [4, 17, 9, 22, 1, 13, 28, 5, 11, 2]  # 10 items: the score keeps the last 8.
  row = np.zeros((1, n_items), np.float32)
  row[0, seq] = np.arange(1, len(seq) + 1)
  scores = np.asarray(model.score(params, factors, jnp.asarray(row)))
  logits, _, _ = net.apply(params, jnp.asarray([seq[-8:]], jnp.int32), jnp.ones((1, 8), bool))
  np.testing.assert_allclose(scores[0], np.asarray(logits)[0, -1], rtol=1e-5, atol=1e-6)
  shuffled = row.copy()
  shuffled[0, seq] = np.random.default_rng(0).permutation(len(seq)) + 1
  assert np.abs(np.asarray(model.score(params, factors, jnp.asarray(shuffled))) - scores).max() > 1e-4
  # Through the ranking evaluator: held-out = the fold-in items themselves, so any ranked
  # fold-in item would count as a hit.
  fold_in = sp.csr_matrix(np.repeat(row, 4, axis=0))
  es = EvalSet(fold_in=fold_in, held_out=(fold_in != 0).astype(np.float32),
               users=np.arange(4))
  score_fn = lambda state, inputs: model.score(state[0], state[1], inputs)
  out = evaluate_ranking(score_fn, (params, factors), es, metrics=("recall@20",), batch_size=4)
  assert out["recall@20"] == 0.0 and out["users"] == 4
  _, top = ranking_ops.top_k_excluding(jnp.asarray(scores), jnp.asarray(row != 0), 20)
  assert not set(np.asarray(top)[0].tolist()) & set(seq)


def test_config_and_data_errors_are_clear():
  with pytest.raises(ValueError, match="next_k"):
    get_model("svae", {"next_k": 0})
  with pytest.raises(ValueError, match="max_length"):
    get_model("svae", {"max_length": 1})
  with pytest.raises(ValueError, match="coupled_l2"):
    get_model("svae", {"coupled_l2": -1.0})
  model = get_model("svae", TINY)
  binary = sp.csr_matrix(np.ones((3, 5), np.float32))
  with pytest.raises(ValueError, match="svae: .*strong-temporal-ordered"):
    model.prepare(binary)
  with pytest.raises(ValueError, match="svae: no training row has 2 or more items"):
    model.prepare(sp.csr_matrix(np.eye(3, dtype=np.float32)))


def test_training_sequences_keep_the_last_max_length_events():
  m = sp.csr_matrix(np.array([[0, 3, 1, 2, 0, 5, 4], [1, 0, 0, 0, 0, 0, 0],
                              [0, 0, 2, 0, 1, 0, 0]], np.float32))
  model = get_model("svae", {**TINY, "max_length": 3})
  assert model.batch_source == batching.TimeRankedSequences(max_length=3, group_by_length=True)
  seqs = model.prepare(m)
  np.testing.assert_array_equal(seqs["rows"], [0, 2])  # Row 1 has nothing to predict.
  np.testing.assert_array_equal(seqs["lengths"], [3, 2])
  np.testing.assert_array_equal(seqs["items"], [[1, 6, 5], [4, 2, 0]])


@pytest.mark.parametrize("group_by_length", [True, False])
def test_batch_source_yields_every_sequence_once_padded_to_a_power_of_two(group_by_length):
  rng = np.random.default_rng(0)
  n_users, n_items = 50, 60
  rows = []
  for _ in range(n_users):  # Lengths 1..40: rows of length 1 are dropped.
    n = int(rng.integers(1, 41))
    row = np.zeros(n_items, np.float32)
    row[rng.choice(n_items, n, replace=False)] = rng.permutation(n) + 1
    rows.append(row)
  train = sp.csr_matrix(np.stack(rows))
  source = batching.TimeRankedSequences(max_length=24, group_by_length=group_by_length)
  seqs = source.sequences(train)
  n_batches, it = source.epoch(train, seqs, 8, epoch=2, seed=1)
  batches = list(it)
  assert len(batches) == n_batches == -(-len(seqs["rows"]) // 8)
  seen = []
  for b in batches:
    width = b["items"].shape[1]
    longest = int(b["lengths"].max())
    assert b["items"].shape[0] == 8 and width == min(24, max(8, 1 << (longest - 1).bit_length()))
    for r in np.flatnonzero(b["mask"]):
      u, n = int(b["index"][r]), int(b["lengths"][r])
      order = np.argsort(train[u].toarray()[0])[-n:]  # The row's last n items by time rank.
      order = order[train[u].toarray()[0][order] > 0]
      np.testing.assert_array_equal(b["items"][r, :n], order)
      assert not b["items"][r, n:].any()
      seen.append(u)
    assert not b["lengths"][~b["mask"]].any() and (b["index"][~b["mask"]] == -1).all()
  assert sorted(seen) == sorted(seqs["rows"].tolist())
  lengths = seqs["lengths"]
  want = (batching.length_grouped_order(lengths, 8, 1, 2) if group_by_length
          else batching.shuffled_order(len(lengths), 1, 2))
  np.testing.assert_array_equal(seen, seqs["rows"][want])


def test_loss_gradients_float64():
  with jax.enable_x64(True):
    model = get_model("svae", {**TINY, "next_k": 2, "total_anneal_steps": 10})
    params, _ = model.init(jax.random.PRNGKey(0), sp.csr_matrix((2, 6)))
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    batch = {"items": jnp.asarray([[1, 3, 5, 2], [4, 0, 0, 0]], jnp.int32),
             "lengths": jnp.asarray([4, 2], jnp.int32), "mask": jnp.asarray([True, True]),
             "index": jnp.asarray([0, 1], jnp.int32)}
    key, phase = jax.random.PRNGKey(3), {"step": jnp.asarray(4, jnp.int32)}  # Fixed ε.
    check_grads(jax.jit(lambda p: model.loss(p, {}, batch, key, phase)[0]), (params,), order=1,
                modes=["rev"], eps=1e-4)


def _chain_dataset(n_chains=20, chain_len=30, n_users=400, seed=0):
  """Users walk 8–14 steps forward along one of several item chains (sequential structure)."""
  rng = np.random.default_rng(seed)
  n_items = n_chains * chain_len
  users, items, ts = [], [], []
  for u in range(n_users):
    c, n = int(rng.integers(n_chains)), int(rng.integers(8, 15))
    start = int(rng.integers(0, chain_len - n + 1))
    its = c * chain_len + start + np.arange(n)
    users.extend([u] * n)
    items.extend(its)
    ts.extend(1000 * u + np.arange(n))
  perm = rng.permutation(len(users))  # File order is not time order.
  users, items, ts = (np.array(a, np.int64)[perm] for a in (users, items, ts))
  inter = Interactions(users=users, items=items, values=np.ones(len(users), np.float32),
                       timestamps=ts, user_ids=np.arange(n_users),
                       item_ids=np.arange(n_items), name="chains")
  return Dataset(name="chains", interactions=inter)


def test_end_to_end_learns_sequential_structure(tmp_path):
  ds = _chain_dataset()
  data = pipeline.DataConfig(protocol="strong-temporal-ordered", heldout_users=0.15)
  split, _ = pipeline.ranking_split(ds, data)
  train_cfg = TrainConfig(epochs=40, batch_size=64, eval_batch_size=64, checkpoint=False,
                          progress=False, metrics=("ndcg@100",))
  model = get_model("svae", {"embed_dim": 32, "rnn_dim": 32, "hidden_dim": 32, "latent_dim": 16,
                             "learning_rate": 1e-2, "coupled_l2": 0.0, "max_length": 16,
                             "total_anneal_steps": 100, "anneal_cap": 0.1})
  res = train_and_evaluate(model, split, train_cfg, tmp_path / "svae", log=lambda s: None)
  pop_split, _ = pipeline.ranking_split(
      ds, pipeline.DataConfig(protocol="strong-temporal", heldout_users=0.15))
  pop = train_and_evaluate(get_model("popularity"), pop_split,
                           TrainConfig(checkpoint=False, progress=False, metrics=("ndcg@100",)),
                           tmp_path / "pop", log=lambda s: None)
  assert res["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"] + 0.5, (res, pop)
