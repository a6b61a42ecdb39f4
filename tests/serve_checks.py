"""Serving checks shared by the registry-wide tests: load the exported model, ask every query.

`check_served(model, split, params, factors, workdir)` is called after the runner
trained `model` into `workdir`; it loads ``workdir/model`` and checks that every
query either answers correctly or refuses in one line (`QueryNotSupported`).
"""

import jax.numpy as jnp
import numpy as np

from recjax import serve


def check_served(model, split, params, factors, workdir, rows):
  tm = serve.load(workdir, n_devices=1)
  assert tm.model.name == model.name and tm.model.config == model.config
  np.testing.assert_allclose(np.asarray(tm.model.score(tm.params, tm.factors, rows)),
                             np.asarray(model.score(params, factors, rows)), rtol=1e-5, atol=1e-6)
  if model.score_padded is not None:  # Serving's padded item lists score as the dense rows do.
    dense = np.asarray(rows)
    width = max(1, int((dense != 0).sum(axis=1).max()))
    items = np.zeros((len(dense), width), np.int32)
    values = np.zeros((len(dense), width), np.float32)
    mask = np.zeros((len(dense), width), bool)
    for r, row in enumerate(dense):
      cols = np.flatnonzero(row)[::-1]  # Any order: the sums must not depend on it.
      items[r, :len(cols)], values[r, :len(cols)], mask[r, :len(cols)] = cols, row[cols], True
    np.testing.assert_allclose(
        np.asarray(model.score_padded(params, factors, items, values, mask)),
        np.asarray(model.score(params, factors, rows)), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(  # The loaded factors carry serving_factors' derived arrays.
        np.asarray(tm.model.score_padded(tm.params, tm.factors, items, values, mask)),
        np.asarray(model.score(params, factors, rows)), rtol=2e-4, atol=2e-5)
  if model.serving_factors is not None:
    assert set(tm.factors) > set(factors)
  rated = tm.input_values == "rating"
  users = list(tm.user_ids[:3])
  k = 4
  known = serve.recommend(tm, users, k=k)
  for r, u in enumerate(users):  # Training items never come back; k answers.
    row = tm.train[r]
    assert len(known.items[r]) == k and not set(known.items[r]) & set(tm.item_ids[row.indices])
  # A known user's answer is the fold-in of its own training row, given as raw ids in order.
  histories = {}
  for r, u in enumerate(users):
    row = tm.train[r]
    order = np.argsort(row.data, kind="stable") if tm.input_values == "time_rank" else np.arange(
        row.nnz)
    ids = tm.item_ids[row.indices[order]]
    histories[u] = list(zip(ids, row.data[order])) if rated else list(ids)
  folded = serve.recommend_histories(tm, histories, k=k)
  for r in range(len(users)):
    assert list(folded.items[r]) == list(known.items[r]), (model.name, r)
    np.testing.assert_allclose(folded.scores[r], known.scores[r], rtol=1e-4, atol=1e-5)
  first = tm.item_ids[0]
  new = serve.recommend_histories(
      tm, {"new": [(first, 5.0)] if rated else [first], "ghost": ["no-such-item"], "empty": []},
      k=k)
  assert new.unknown == {"ghost": ["no-such-item"]} and list(new.fallback) == [False, True, True]
  assert first not in list(new.items[0])
  try:
    similar = serve.similar_items(tm, [first], k=k)
  except serve.QueryNotSupported as e:
    assert model.item_vectors is None and "\n" not in str(e)
  else:
    assert len(similar.items[0]) == k and first not in list(similar.items[0])
  return tm
