"""The layer rule of DESIGN.md, checked on the source: imports point down only.

serve > train > eval > models > nn > ops > data.  `recjax/data` imports no jax;
a model file imports no other model file (only the protocol, `models/base.py`;
the registry is the one module that imports every model).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "recjax"
LAYERS = ("data", "ops", "nn", "models", "eval", "train", "serve")
ACCELERATOR_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "orbax")


def _imports(path: Path) -> list[tuple[int, str]]:
  """(line, module) of every import in `path`, relative imports resolved."""
  out = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        package = path.relative_to(ROOT.parent).with_suffix("").parts[:-node.level]
        base = ".".join(package + ((node.module,) if node.module else ()))
      else:
        base = node.module or ""
      out.append((node.lineno, base))
      out += [(node.lineno, f"{base}.{a.name}") for a in node.names if base == "recjax.models"]
  return out


def _violations(path: Path) -> list[str]:
  layer = path.relative_to(ROOT).parts[0]
  if layer not in LAYERS:
    return []
  rank = LAYERS.index(layer)
  bad = []
  for line, module in _imports(path):
    where = f"{path.relative_to(ROOT.parent)}:{line}"
    parts = module.split(".")
    if layer == "data" and parts[0] in ACCELERATOR_PACKAGES:
      bad.append(f"{where}: recjax/data imports {module}")
    if parts[0] != "recjax" or len(parts) < 2 or parts[1] not in LAYERS:
      continue
    if LAYERS.index(parts[1]) > rank:
      bad.append(f"{where}: {layer} imports {module} (a layer above)")
    if (layer == "models" and parts[1] == "models" and len(parts) > 2
        and parts[2] not in ("base",) and path.name != "registry.py"):
      bad.append(f"{where}: a model file imports another model file ({module})")
  return bad


def test_imports_point_down_only():
  files = sorted(ROOT.rglob("*.py"))
  assert len(files) > 50
  bad = [v for f in files for v in _violations(f)]
  assert not bad, "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
  fake = tmp_path / "recjax"
  (fake / "ops").mkdir(parents=True)
  (fake / "models").mkdir()
  (fake / "ops" / "x.py").write_text("from recjax.models import wmf\n")
  (fake / "models" / "y.py").write_text("from recjax.models.cvae import item_vectors\n")
  monkeypatch.setattr(__import__(__name__), "ROOT", fake)
  assert _violations(fake / "ops" / "x.py") == [
      "recjax/ops/x.py:1: ops imports recjax.models (a layer above)",
      "recjax/ops/x.py:1: ops imports recjax.models.wmf (a layer above)"]
  assert _violations(fake / "models" / "y.py") == [
      "recjax/models/y.py:1: a model file imports another model file (recjax.models.cvae)"]


def test_no_file_over_500_lines():
  long = {str(f.relative_to(ROOT.parent)): n for f in ROOT.rglob("*.py")
          if (n := len(f.read_text().splitlines())) > 500}
  assert not long, f"files over 500 lines: {long}"
