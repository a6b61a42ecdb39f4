"""Trained models as products: load a workdir, recommend, find similar items, train from a matrix.

    import recjax.serve as serve
    tm = serve.load("workdirs/ease-ml-100k")
    serve.recommend(tm, [196, 22], k=10).to_records()
    serve.recommend_histories(tm, {"new": [50, 172, 181]}, k=10)
    serve.similar_items(tm, [50], k=10)
    tm = serve.fit(user_item_csr, "wmf", workdir="workdirs/mine", config={"dim": 64})
"""

from recjax.serve.fit import fit
from recjax.serve.answers import QueryNotSupported, Recommendations, candidates
from recjax.serve.query import history_rows, recommend, recommend_all, recommend_histories
from recjax.serve.similar import similar_items, unit_item_vectors
from recjax.train.artifact import ModelLoadError, TrainedModel, load

__all__ = ["fit", "load", "recommend", "recommend_all", "recommend_histories", "similar_items",
           "candidates", "history_rows", "unit_item_vectors", "Recommendations", "TrainedModel",
           "QueryNotSupported", "ModelLoadError"]
