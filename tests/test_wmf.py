"""WMF: fold-in scoring against a brute-force solve, and a short run through the runner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toy_model
from recjax.models import wmf
from recjax.models.registry import get_model
from recjax.train.runner import TrainConfig, train_and_evaluate


def test_fold_in_scores_match_a_dense_solve():
  rng = np.random.default_rng(0)
  config = wmf.Config(dim=6, a=7.0, b=1.0, reg=0.3, fold_in_chunk=5)
  model = wmf.make(config)
  v = rng.standard_normal((23, 6)).astype(np.float32)
  x = (rng.random((4, 23)) < 0.3).astype(np.float32)
  scores = np.asarray(model.score({}, {"U": None, "V": jnp.asarray(v)}, jnp.asarray(x)))
  for b in range(4):
    c = np.where(x[b] > 0, config.a, config.b)
    a_mat = (v.T * c) @ v + config.reg * np.eye(6)
    u = np.linalg.solve(a_mat.astype(np.float64), (v.T * c) @ x[b])
    np.testing.assert_allclose(scores[b], v @ u, rtol=2e-3, atol=2e-4)


def test_wmf_trains_and_beats_popularity(tmp_path):
  split = toy_model.make_split()
  config = TrainConfig(epochs=4, n_devices=1, checkpoint=False, progress=False,
                       metrics=("recall@20", "ndcg@100"))
  res = train_and_evaluate(get_model("wmf", {"dim": 8, "a": 5.0, "reg": 0.1}), split, config,
                           tmp_path / "wmf", log=lambda s: None)
  pop = train_and_evaluate(get_model("popularity"), split, config, tmp_path / "pop",
                           log=lambda s: None)
  assert res["validation"]["ndcg@100"] > pop["validation"]["ndcg@100"]


def test_wmf_config_is_checked():
  with pytest.raises(ValueError, match="solver"):
    wmf.make(wmf.Config(solver="lu"))
  with pytest.raises(ValueError, match="a \\(clicks\\)"):
    wmf.make(wmf.Config(a=0.5, b=1.0))
