"""experiments.beta_select: the β of each evaluated epoch of the annealing run."""

import json

import pytest

from experiments.beta_select import beta_at_epochs


def test_beta_is_that_of_the_epochs_last_update_capped_at_one(tmp_path):
  path = tmp_path / "metrics.jsonl"
  records = [{"epoch": 1, "validation": {"ndcg@100": 0.1}}, {"epoch": 2},  # Epoch 2 not evaluated.
             {"epoch": 3, "validation": {"ndcg@100": 0.3}},
             {"epoch": 4, "validation": {"ndcg@100": 0.2}}]
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  curve = beta_at_epochs(path, "ndcg@100", batches_per_epoch=4, anneal_steps=13)
  # Epoch e ends with update e * 4 - 1 (0-based): β = min(1, (4e - 1) / 13).
  assert [r["epoch"] for r in curve] == [1, 3, 4]
  assert [r["beta"] for r in curve] == pytest.approx([3 / 13, 11 / 13, 1.0])
  assert [r["ndcg@100"] for r in curve] == [0.1, 0.3, 0.2]


def test_a_run_without_validation_is_an_error(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text(json.dumps({"epoch": 1}) + "\n")
  with pytest.raises(ValueError, match="no validation records"):
    beta_at_epochs(path, "ndcg@100", batches_per_epoch=2, anneal_steps=4)
