"""The suite collects as one: pytest imports test modules by basename (rootdir imports, no
packages), so two test files with one name in different folders stop `make test` at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_test_module_has_its_own_basename() -> None:
    names = Counter(
        path.name for path in TESTS.rglob("test_*.py") if "node_modules" not in path.parts
    )
    assert [name for name, count in names.items() if count > 1] == []
