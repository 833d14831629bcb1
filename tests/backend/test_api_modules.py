"""The admin API's resolver modules import one another only at the top, so that a cycle between
them fails at import instead of hiding in a function-level or type-checking-only import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kiungo.backend.api

API = Path(kiungo.backend.api.__file__).parent
MODULES = sorted(path.stem for path in API.glob("*.py") if path.stem != "__init__")


def _hidden_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports of kiungo modules that are not top-level statements of the module."""
    top = set(map(id, tree.body))
    hidden: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kiungo"):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("kiungo")]
        else:
            continue
        if names and id(node) not in top:
            hidden.extend((node.lineno, name) for name in names)
    return hidden


@pytest.mark.parametrize("module", MODULES)
def test_a_resolver_module_imports_kiungo_only_at_the_top(module: str) -> None:
    tree = ast.parse((API / f"{module}.py").read_text())
    assert _hidden_imports(tree) == []
