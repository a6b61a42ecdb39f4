"""The titles CRAE's BLEU binary scores (experiments/crae_bleu.py): generated, borrowed, regressed.

After a CRAE run with ``hidden_content_fraction`` > 0, `hidden_item_titles`
produces a title for every hidden-content item by one of `TITLE_METHODS`:

* "decoder": CRAE's decoder run greedily from the learned v_j
  (`recjax.models.crae.generate_titles`), the paper's sequence generation;
* "decoder_rescaled": the same from v_j rescaled to the visible items' mean
  γ_j norm (a hidden item's v_j has prior mean 0, so λ_v shrinks it);
* "decoder_regressed": the same from a ridge map (`ratings_to_codes`) of the
  ratings-only factors into the decoder's input space (not in the paper);
* "nearest" / "nearest_cosine": the nearest-neighbour baseline the paper uses
  for models that cannot generate, the title of the visible item whose v is
  nearest (`nearest_neighbour_titles`, Euclidean or cosine).

`visible_title_reconstruction` is the decoder's ceiling: visible items
decoded from their own clean titles' E[tanh(θ_j)].  numpy on the host, plus
the model's jitted network calls.
"""

from __future__ import annotations

import numpy as np

from recjax.data import titles as titles_lib
from recjax.models import crae
from recjax.ops import als, als_core


def nearest_neighbour_titles(queries, keys, key_titles: np.ndarray,
                             metric: str = "euclidean") -> np.ndarray:
  """For each query vector, the title of the key whose vector is nearest.

  `metric` "euclidean" (the smallest distance) or "cosine" (the largest cosine:
  only directions count, so a query shrunk towards 0 by its prior is not
  matched to whichever key has the smallest norm).

  Args:
    queries: [n, K] vectors of the items to give a title to.
    keys: [m, K] vectors of items whose titles are known.
    key_titles: int [m, L] their -1-padded titles.

  Returns:
    int32 [n, L] the borrowed titles.
  """
  q = np.asarray(queries, np.float64)
  k = np.asarray(keys, np.float64)
  if metric == "euclidean":
    d = np.sum(q * q, axis=1)[:, None] - 2.0 * q @ k.T + np.sum(k * k, axis=1)[None, :]
  elif metric == "cosine":
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    d = -(unit(q) @ unit(k).T)
  else:
    raise ValueError(f"nearest_neighbour_titles: metric must be 'euclidean' or 'cosine', "
                     f"got {metric!r}")
  return np.asarray(key_titles)[np.argmin(d, axis=1)].astype(np.int32)


TITLE_METHODS = ("decoder", "decoder_rescaled", "decoder_regressed", "nearest", "nearest_cosine")
RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # Candidate ridge λ of `ratings_to_codes`.


def ratings_only_factors(config: crae.Config, factors, aux) -> np.ndarray:
  """[n_items, K] item factors re-solved from the ratings alone (prior mean 0), U fixed.

  A hidden-content item's v_j is exactly this (its γ_j is 0); for the visible items
  it gives the collaborative code the content would otherwise pull towards γ_j.
  """
  v = als.half_sweep(factors["V"], factors["U"], aux["items"], reg=config.reg_v,
                     **als_core.sweep_kwargs(config))
  return np.asarray(v)


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
  """[K+1, D] W minimising ‖[x, 1] W − y‖² + λ‖W[:-1]‖² (the bias is not penalised)."""
  x1 = _with_bias(np.asarray(x, np.float64))
  reg = lam * np.eye(x1.shape[1])
  reg[-1, -1] = 0.0
  return np.linalg.solve(x1.T @ x1 + reg, x1.T @ np.asarray(y, np.float64))


def ratings_to_codes(x: np.ndarray, y: np.ndarray, seed: int = 0,
                     grid=RIDGE_GRID) -> tuple[np.ndarray, float, float]:
  """A ridge map from ratings-only factors x to decoder inputs y, fitted on visible items.

  λ is chosen from `grid` by the squared error on a random tenth of the rows,
  then the map is refitted on all of them.

  Returns:
    (W [K+1, D], chosen λ, its held-out mean squared error per coordinate).
  """
  rng = np.random.default_rng(seed)
  perm = rng.permutation(len(x))
  held, fit = perm[:max(1, len(x) // 10)], perm[max(1, len(x) // 10):]
  apply = lambda w, rows: _with_bias(rows) @ w
  errors = [float(np.mean((apply(fit_ridge(x[fit], y[fit], lam), x[held]) - y[held]) ** 2))
            for lam in grid]
  best = int(np.argmin(errors))
  return fit_ridge(x, y, grid[best]), float(grid[best]), errors[best]


def _with_bias(x: np.ndarray) -> np.ndarray:
  """[n, K] -> [n, K+1] with a column of ones (the ridge map's bias)."""
  return np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1)


def _batched_codes(config: crae.Config, params, aux, items, batch_size: int = 512) -> dict:
  """`decoder_codes` of the clean titles of `items`, batch by batch, as numpy arrays."""
  parts = [crae.decoder_codes(config, params, aux["tokens"][items[s:s + batch_size]],
                         aux["lengths"][items[s:s + batch_size]])
           for s in range(0, len(items), batch_size)]
  if not parts:
    empty = np.zeros((0, config.dim), np.float32)
    return {"decoder_input": empty, "gamma": empty}
  return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ("decoder_input", "gamma")}


def visible_title_reconstruction(config: crae.Config, params, aux, n_items: int = 1000,
                                 max_length: int = 20, seed: int = 0,
                                 batch_size: int = 256) -> dict:
  """Titles decoded from E[tanh(θ_j)] of visible items' own clean titles (the decoder's ceiling).

  Also reports how well γ_j matches the decoder's input on those items (mean
  cosine), which is what generation from v_j relies on.

  Returns:
    {"items", "candidates", "references", "cosine_gamma_decoder_input",
     "norm_gamma", "norm_decoder_input"}.
  """
  visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
  rng = np.random.default_rng(seed)
  items = np.sort(rng.choice(visible, min(n_items, len(visible)), replace=False))
  codes = _batched_codes(config, params, aux, items, batch_size)
  code, gamma = codes["decoder_input"], codes["gamma"]
  cos = np.sum(code * gamma, 1) / np.maximum(
      np.linalg.norm(code, axis=1) * np.linalg.norm(gamma, axis=1), 1e-12)
  generated = crae.generate_titles(config, params, code, max_length)
  return {"items": items, "candidates": titles_lib.as_lists(generated),
          "references": [[r] for r in titles_lib.as_lists(aux["titles"][items])],
          "cosine_gamma_decoder_input": float(cos.mean()),
          "norm_gamma": float(np.linalg.norm(gamma, axis=1).mean()),
          "norm_decoder_input": float(np.linalg.norm(code, axis=1).mean())}


def hidden_item_titles(config: crae.Config, params, factors, aux, method: str = "decoder",
                       max_length: int = 20) -> dict:
  """Titles produced for the hidden-content items, with their true titles (for BLEU).

  Score them with ``recjax.eval.bleu.corpus_bleu(out["candidates"], out["references"])``.

  Args:
    config: the model's config (``hidden_content_fraction`` > 0).
    params, factors: a trained state.
    aux: the model's `prepare` output.
    method: "decoder" (CRAE: greedy decoding from v_j), "decoder_rescaled"
      (the same from v_j rescaled to the mean norm of the visible items' γ_j:
      a hidden item's v_j has prior mean 0, so λ_v shrinks it far below the
      codes the decoder was trained on), "nearest" (the title of the
      visible item with the nearest v_j) or "nearest_cosine" (the same by
      cosine: the direction of v_j, not its shrunk norm), or "decoder_regressed"
      (decoding from a ridge map of v_j into the decoder's input space, fitted on
      the visible items between their ratings-only factors and their titles'
      E[tanh θ_j]: not in the paper; it asks whether the ratings carry the code
      at all when v_j itself is not in the decoder's space).
    max_length: longest generated title.

  Returns:
    {"items": int [n] the hidden items with a non-empty title, "candidates":
     n id lists, "references": n lists, each holding the item's true title}.
  """
  hidden = np.flatnonzero(aux["hidden"] & (aux["lengths"] > 0))
  if len(hidden) == 0:
    raise ValueError("hidden_item_titles: no hidden-content item with a title; set "
                     "hidden_content_fraction > 0")
  v = np.asarray(factors["V"])
  if method == "decoder":
    generated = crae.generate_titles(config, params, v[hidden], max_length)
  elif method == "decoder_rescaled":
    visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
    target = np.linalg.norm(np.asarray(factors["gamma"])[visible], axis=1).mean()
    norms = np.linalg.norm(v[hidden], axis=1, keepdims=True)
    generated = crae.generate_titles(config, params,
                                     v[hidden] * (target / np.maximum(norms, 1e-12)), max_length)
  elif method == "decoder_regressed":
    visible = np.flatnonzero(~aux["hidden"] & (aux["lengths"] > 0))
    x = ratings_only_factors(config, factors, aux)
    w, _, _ = ratings_to_codes(x[visible],
                               _batched_codes(config, params, aux, visible)["decoder_input"])
    z = _with_bias(x[hidden]) @ w
    generated = crae.generate_titles(config, params, z, max_length)
  elif method in ("nearest", "nearest_cosine"):
    visible = np.flatnonzero(~aux["hidden"])
    generated = nearest_neighbour_titles(v[hidden], v[visible], aux["titles"][visible],
                                         "cosine" if method == "nearest_cosine" else "euclidean")
  else:
    raise ValueError(f"hidden_item_titles: method must be one of {TITLE_METHODS}, "
                     f"got {method!r}")
  return {"items": hidden, "candidates": titles_lib.as_lists(generated),
          "references": [[r] for r in titles_lib.as_lists(aux["titles"][hidden])]}
