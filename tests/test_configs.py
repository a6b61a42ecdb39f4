"""Every shipped experiment config loads and names a real model, dataset, protocol and fields.

A typo in a config (a renamed field, an unknown protocol) would otherwise only show up when
someone starts a long run.  Building the model also runs each model's own config checks.
"""

from pathlib import Path

import pytest

from experiments import train
from recjax.data import pipeline
from recjax.data import registry as data_registry
from recjax.models import registry as model_registry
from recjax.train.runner import TrainConfig

# Files starting with "_" are shared builders (e.g. _citeulike.py), not configs.
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "experiments" / "configs")
                 .glob("*.py") if not p.name.startswith("_"))


def test_there_are_configs():
  assert len(CONFIGS) > 40


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
  experiment = train.load_config_file(str(path))
  assert set(experiment) <= {"model", "dataset", "model_config", "data", "train"}, sorted(experiment)
  model_registry.get_model(experiment["model"], experiment.get("model_config", {}))
  spec = data_registry.dataset_spec(experiment["dataset"])
  data = pipeline.DataConfig(**experiment.get("data", {}))
  if data.protocol in ("P1", "P10"):  # The CVAE authors' splits, shipped with citeulike only.
    assert spec.loader == "citeulike", (data.protocol, spec)
  else:
    assert data.protocol == "strong" or data.protocol in pipeline.PROTOCOLS, data.protocol
  TrainConfig(**experiment.get("train", {}))


def test_citeulike_builder_cells_and_errors():
  from experiments.configs import _citeulike
  cell = _citeulike.hybrid("svdfeature", "citeulike-t", "P10")
  assert cell["dataset"] == "citeulike-t" and cell["data"] == {"protocol": "P10"}
  assert cell["model_config"]["n_words"] == 20000  # One word-table row per vocabulary word.
  assert _citeulike.hybrid("svdfeature", "citeulike-a", "P1")["model_config"]["n_words"] == 8000
  cell["model_config"]["dim"] = 7  # Cells are independent copies.
  assert _citeulike.hybrid("svdfeature", "citeulike-t", "P10")["model_config"]["dim"] == 50
  with pytest.raises(ValueError, match="no citeulike settings"):
    _citeulike.hybrid("ease", "citeulike-a", "P1")
  with pytest.raises(ValueError, match="dataset must be one of"):
    _citeulike.hybrid("cvae", "ml-100k", "P1")
