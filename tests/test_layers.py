"""The layers of ``qualys/`` depend on each other in one direction only (docs/architecture.md).

Checked on module-level imports (an import inside a function, like the Blob sink's lazy use of the
Azure identity, is a call-time choice and is not counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Layer -> the layers its modules may import at module level (besides itself).
ALLOWED = {
    "config": {"errors"},
    "api": {"config", "errors", "timestamps"},
    "output": {"config", "errors", "timestamps"},
    "sync": {"api", "output", "config", "errors", "timestamps"},
    "hosting": {"api", "sync", "output", "config", "errors", "timestamps"},
    "cli": {"api", "sync", "output", "hosting", "config", "errors", "timestamps"},
}


def layer_imports(path: Path) -> set[str]:
    """The ``qualys`` layers a module imports at module level (``if TYPE_CHECKING:`` blocks excluded)."""
    layers: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        layers.update(name.split(".")[1] for name in names if name.startswith("qualys.") and name.count(".") >= 1)
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    modules = sorted((ROOT / "qualys" / layer).glob("*.py"))
    assert modules
    for module in modules:
        imported = layer_imports(module) - {layer}
        assert imported <= ALLOWED[layer], (str(module.relative_to(ROOT)), imported - ALLOWED[layer])


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "x.py"
    module.write_text("from qualys.sync.run import run_sync\nimport qualys.output.sink\n")
    assert layer_imports(module) == {"sync", "output"}
