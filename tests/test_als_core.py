"""The ALS model core (recjax.ops.als_core): config fields and rules, the sweep with a prior
mean, item vectors and fold-in scoring."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recjax.models.base import check_config
from recjax.ops import als, als_core


@dataclasses.dataclass(frozen=True)
class _Config(als_core.PriorALSConfig, als_core.ConfidenceConfig):
  dim: int = 4
  reg_u: float = 0.5  # A redeclared field changes its default and keeps its rules.
  extra: int = 1

  def __post_init__(self):
    check_config(self, "core", **als_core.merge_rules(
        als_core.PRIOR_ALS_RULES, als_core.CONFIDENCE_RULES, {"at_least": {"dim": 1, "extra": 0}}))


def _clicks(seed=0, n_users=30, n_items=20, density=0.2):
  m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed,
                dtype=np.float32)
  m.data[:] = 1.0
  m = sp.lil_matrix(m)
  m[:, 0] = 0  # Item 0 has no training click.
  return sp.csr_matrix(m)


def test_inherited_fields_are_flat_and_validated():
  config = _Config()
  assert (config.solver, config.cg_steps, config.reg_u, config.reg_v, config.confidence) == (
      "cholesky", 3, 0.5, 10.0, "constant")
  assert dataclasses.replace(config, solver="cg").solver == "cg"  # What --set solver=cg does.
  for field, value in (("solver", "qr"), ("cg_steps", 0), ("init_scale", 0.0),
                       ("bucket_growth", 1.0), ("fold_in_chunk", 0), ("a", 0.0), ("b", -1.0),
                       ("reg_u", -0.1), ("reg_v", -1.0), ("confidence", "sqrt"), ("extra", -1),
                       ("dim", 0)):
    with pytest.raises(ValueError, match=field):
      _Config(**{field: value})


def test_merge_rules_joins_dicts_and_chains_sequences():
  merged = als_core.merge_rules({"at_least": {"x": 1}, "fractions": ("p",)},
                                {"at_least": {"y": 0}, "fractions": ("q",)})
  assert merged == {"at_least": {"x": 1, "y": 0}, "fractions": ("p", "q")}


def test_prior_step_lowers_the_objective_and_keeps_its_prior():
  config = _Config()
  m = _clicks()
  factors = als_core.init_factors(jax.random.PRNGKey(0), m, config, prior="mu")
  np.testing.assert_array_equal(np.asarray(factors["rated"]), np.diff(m.tocsc().indptr) > 0)
  sides = als_core.prepare(m, config)
  prior = np.random.default_rng(1).normal(size=(m.shape[1], config.dim)).astype(np.float32)
  before = als_core.objective(factors, m, config, prior)
  after = als_core.prior_step(factors, sides, config, jnp.asarray(prior))
  assert als_core.objective(after, m, config, prior) < before
  np.testing.assert_array_equal(np.asarray(after["mu"]), prior)
  assert after["rated"] is factors["rated"]
  # V is exactly the half sweep against the new U with prior mean `prior`.
  v = als.half_sweep(after["V"], after["U"], sides["items"], reg=config.reg_v, prior=prior,
                     **als_core.sweep_kwargs(config))
  np.testing.assert_allclose(np.asarray(v), np.asarray(after["V"]), rtol=1e-4, atol=1e-5)


def test_item_vectors_are_v_for_rated_items_and_the_prior_otherwise():
  v = jnp.arange(6.0).reshape(3, 2)
  prior = -jnp.ones((3, 2))
  got = als_core.item_vectors(v, prior, jnp.asarray([True, False, True]))
  np.testing.assert_array_equal(np.asarray(got), [[0, 1], [-1, -1], [4, 5]])


@pytest.mark.parametrize("confidence", ["constant", "log"])
def test_scorers_agree_dense_padded_and_served(confidence):
  config = _Config(confidence=confidence, a=3.0, b=0.5)
  m = _clicks(seed=2)
  factors = als_core.init_factors(jax.random.PRNGKey(3), m, config, prior="mu")
  factors["V"] = factors["V"] * 30.0
  factors["mu"] = jnp.ones_like(factors["V"])
  vectors = als_core.prior_item_vectors("mu")
  score, score_padded, serving_factors = als_core.scorers(config, vectors)
  items = np.asarray([[1, 4, 7], [2, 3, 0]], np.int32)
  values = np.asarray([[1.0, 2.0, 5.0], [1.0, 3.0, 0.0]], np.float32)
  mask = np.asarray([[True, True, True], [True, True, False]])
  dense = np.zeros((2, m.shape[1]), np.float32)
  for r in range(2):
    dense[r, items[r][mask[r]]] = values[r][mask[r]]
  want = np.asarray(score({}, factors, jnp.asarray(dense)))
  u = als.fold_in_dense(factors["V"], jnp.asarray(dense), a=3.0, b=0.5, reg=config.reg_u,
                        **als_core.confidence_kwargs(config))
  np.testing.assert_allclose(want, np.asarray(u @ vectors({}, factors).T), rtol=1e-5)
  for f in (factors, serving_factors({}, factors)):
    got = np.asarray(score_padded({}, f, items, values, mask))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
