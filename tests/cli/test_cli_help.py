"""``kiungo --version`` and ``--help``: through the installed console script, in plain words, and
without importing the services (their imports took two seconds before every help page)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

KIUNGO = Path(sys.executable).parent / "kiungo"

COMMANDS = [
    (),
    ("connector",),
    ("backend",),
    ("schema",),
    ("up",),
    ("demo",),
    ("migrate",),
    ("ledger",),
    ("ledger", "check"),
    ("packet",),
    ("receipt",),
]

# What the services and the store commands load; none of it is needed to print help.
HEAVY = (
    "kiungo.connector",
    "kiungo.backend",
    "kiungo.up",
    "kiungo.demo",
    "uvicorn",
    "starlette",
    "strawberry",
    "asyncpg",
    "sqlalchemy",
    "alembic",
    "redis",
    "httpx",
)


def kiungo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIUNGO), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version_prints_the_installed_package_version() -> None:
    result = kiungo("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kiungo {importlib.metadata.version('kiungo')}\n"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kiungo")
def test_help_is_plain_words(command: tuple[str, ...]) -> None:
    result = kiungo(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kiungo")
    # reStructuredText markup (``X``, :mod:`x`) belongs in docstrings, not in what users read.
    assert "`" not in result.stdout, result.stdout
    assert ":mod:" not in result.stdout and ":func:" not in result.stdout


def test_help_imports_no_service() -> None:
    """Every help page printed in one interpreter, then what it imported is listed: the parser
    must leave the services (and the drivers and servers they load) to the command that runs."""
    script = f"""
import contextlib, io, json, sys
from kiungo.cli import main
for command in {[list(c) for c in COMMANDS]!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*command, "--help"]) == 0
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout)
    loaded = [m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]
    assert loaded == []


def test_a_port_outside_the_range_is_a_usage_error() -> None:
    result = kiungo("connector", "--port", "70000")
    assert result.returncode == 2
    assert "expected a port from 1 to 65535" in result.stderr
