"""The package's layering (STYLE.md item 12): imports only go downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tutormax
from harness import APP_SRC

PACKAGE = APP_SRC / "tutormax"
#: Layer of each top-level module or subpackage; a module may import only from lower layers or its own.
LAYERS = {
    "settings": 0,
    "domain": 0,
    "logconfig": 0,
    "migrations": 1,
    "data": 1,
    "services": 2,
    "api": 3,
    "worker": 3,
    "gunicorn_conf": 4,
    "cli": 4,
    "__main__": 5,
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tutormax":
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_from_lower_layers(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0].removesuffix(".py")
    if own == "__init__":
        return
    assert own in LAYERS, f"{own} has no layer: add it to LAYERS"
    for module in _imports(path):
        part = _part(module)
        if part is None or part == "":
            continue  # third-party, or the package root (its version)
        assert part in LAYERS, f"{module} has no layer"
        assert part == own or LAYERS[part] < LAYERS[own], f"{relative} imports {module} (upward or sideways)"


def test_version_comes_from_the_single_version_file() -> None:
    assert tutormax.__version__ == (PACKAGE / "VERSION").read_text().strip() == "1.0.0"
