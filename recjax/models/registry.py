"""The explicit registry of models: name -> (config class, factory)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from recjax.models import cmf, ease, logmf, popularity, slim, wmf
from recjax.models import multvae
from recjax.models import autorec, deeprec
from recjax.models import cdae, ncf
from recjax.models import cdl, cvae
from recjax.models import ctr, deepmusic, svdfeature
from recjax.models import crae
from recjax.models import svae
from recjax.models import crnn, hmm, ngram
from recjax.models.base import Model

MODELS: dict[str, tuple[type, Any]] = {
    "popularity": (popularity.Config, popularity.make),
    "ease": (ease.Config, ease.make),
    "wmf": (wmf.Config, wmf.make),
    "cmf": (cmf.Config, cmf.make),
    "mf-logcount": (logmf.Config, logmf.make),
    "slim": (slim.Config, slim.make),
    "mult-vae": (multvae.VAEConfig, multvae.make_vae),
    "mult-dae": (multvae.DAEConfig, multvae.make_dae),
    "autorec": (autorec.Config, autorec.make),
    "deeprec": (deeprec.Config, deeprec.make),
    "cdae": (cdae.Config, cdae.make),
    "cvae": (cvae.Config, cvae.make), "cdl": (cdl.Config, cdl.make),
    "crae": (crae.Config, crae.make),
    "svae": (svae.Config, svae.make),
    "ctr": (ctr.Config, ctr.make), "deepmusic": (deepmusic.Config, deepmusic.make), "svdfeature": (svdfeature.Config, svdfeature.make),
    # Sequence models (the sequence-tail protocols): Ko et al. 2016's collaborative RNNs and baselines.
    "c-gru": (crnn.Config, crnn.make), "p-gru": (crnn.PooledConfig, crnn.make),
    "c-tanh": (crnn.TanhConfig, crnn.make), "p-tanh": (crnn.PooledTanhConfig, crnn.make),
    "uniform": (ngram.UniformConfig, ngram.make), "unigram": (ngram.UnigramConfig, ngram.make),
    "bigram": (ngram.Config, ngram.make), "hmm": (hmm.Config, hmm.make),
    "ncf-gmf": (ncf.Config, ncf.make_gmf), "ncf-mlp": (ncf.Config, ncf.make_mlp), "ncf-neumf": (ncf.Config, ncf.make_neumf),
}


def list_models() -> list[str]:
  return sorted(MODELS)


def did_you_mean(name: str, valid) -> str:
  """" (did you mean 'x'?)" for the closest valid name, or ""."""
  close = difflib.get_close_matches(str(name).lower(), [str(v) for v in valid], n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def model_config(name: str, overrides: dict[str, Any] | None = None):
  """The model's config dataclass with `overrides` applied (unknown keys raise)."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}{did_you_mean(name, list_models())}; "
                     f"valid models: {', '.join(list_models())}")
  config_cls, _ = MODELS[name]
  overrides = dict(overrides or {})
  fields = {f.name: f for f in dataclasses.fields(config_cls)}
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    hint = did_you_mean(unknown[0], fields)
    raise ValueError(
        f"model {name!r} has no config field(s) {unknown}{hint}; its fields: "
        f"{sorted(fields) or 'none'}")
  return config_cls(**overrides)


def get_model(name: str, overrides: dict[str, Any] | None = None) -> Model:
  """Builds a registered model from its name and config overrides."""
  config = model_config(name, overrides)
  return MODELS[name][1](config)
