"""Test-wide settings: strict numpy rank promotion, so silent broadcasting bugs fail loudly."""

import os
import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).parent))
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECJAX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
  """The real datasets beside the repository (../shared/data); skips when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared datasets not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
  """Drops every compiled program after each test module.

  Each model's `make` jits closures of its own, so one process running the
  whole suite kept thousands of executables alive (5 GB resident by the middle
  of the run, and a crash inside XLA's compiler late in it); what one module
  compiled is of no use to the next.
  """
  yield
  jax.clear_caches()
