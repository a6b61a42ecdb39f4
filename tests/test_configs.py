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

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.py"))


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
