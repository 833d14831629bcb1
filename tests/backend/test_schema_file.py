"""``schema.graphql`` at the repository root is the admin API's schema as ``kiungo schema`` prints
it, so a change to the API shows up in review as a change to that file."""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

from tests.connector.harness import KIUNGO

from kiungo.backend.command import schema_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_graphql_is_current() -> None:
    sdl = schema_sdl()
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    if current != sdl:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                sdl.splitlines(keepends=True),
                "schema.graphql",
                "kiungo schema",
                n=1,
            )
        )
        raise AssertionError(
            "schema.graphql is not the admin API's schema: run `kiungo schema -o schema.graphql` "
            f"and commit it.\n{diff[:4000]}"
        )


def kiungo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KIUNGO, *args], capture_output=True, text=True, timeout=60, check=False)


def test_kiungo_schema_prints_writes_and_checks(tmp_path: Path) -> None:
    sdl = schema_sdl()
    printed = kiungo("schema")
    assert (printed.returncode, printed.stdout) == (0, sdl), printed.stderr

    written = tmp_path / "schema.graphql"
    done = kiungo("schema", "-o", str(written))
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert written.read_text() == sdl

    current = kiungo("schema", "--check", str(written))
    assert (current.returncode, current.stderr) == (0, ""), current.stderr

    written.write_text(sdl.replace("type Query", "type Query2", 1))
    stale = kiungo("schema", "--check", str(written))
    assert stale.returncode == 1
    expected = f"{written} is out of date: run kiungo schema -o {written}"
    assert stale.stderr.strip() == expected, stale.stderr
    assert written.read_text() != sdl  # --check only looks

    missing = kiungo("schema", "--check", str(tmp_path / "nowhere.graphql"))
    assert missing.returncode == 1, missing.stderr
