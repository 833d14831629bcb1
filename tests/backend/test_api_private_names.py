"""A resolver module uses only what another resolver module makes public: what two of them share
lives in a domain module (or is public), so each can change its internals alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kiungo.backend.api

API = Path(kiungo.backend.api.__file__).parent
MODULES = sorted(path.stem for path in API.glob("*.py") if path.stem != "__init__")


def _private_names_imported(tree: ast.Module) -> list[tuple[int, str]]:
    """``from kiungo.backend.api.<module> import _name`` and ``<module>._name`` of an imported
    resolver module."""
    found: list[tuple[int, str]] = []
    resolver_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("kiungo.backend.api."):
                found.extend(
                    (node.lineno, f"{module}.{alias.name}")
                    for alias in node.names
                    if alias.name.startswith("_")
                )
            elif module == "kiungo.backend.api":
                resolver_aliases.update(alias.asname or alias.name for alias in node.names)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in resolver_aliases
            and node.attr.startswith("_")
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


@pytest.mark.parametrize("module", MODULES)
def test_a_resolver_module_imports_no_private_name_of_another(module: str) -> None:
    tree = ast.parse((API / f"{module}.py").read_text())
    assert _private_names_imported(tree) == []


def test_the_check_sees_a_private_import() -> None:
    tree = ast.parse(
        "from kiungo.backend.api.assets import Asset, _asset_by_id\n"
        "from kiungo.backend.api import peers\n"
        "peers._REFUSALS\n"
    )
    assert _private_names_imported(tree) == [
        (1, "kiungo.backend.api.assets._asset_by_id"),
        (3, "peers._REFUSALS"),
    ]
