"""The ledger's tables are read only through ``kiungo.ledger`` (issue 15): no module of the
services names them, so a change of the ledger's storage (TigerBeetle keeps the balances
elsewhere) has one place to follow."""

from __future__ import annotations

import re
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
LEDGER_TABLES = re.compile(r"ledger_(accounts|transfers)")


def _mentions() -> list[str]:
    return [
        f"{path.relative_to(SERVICES)}:{number}: {line.strip()}"
        for path in sorted(SERVICES.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LEDGER_TABLES.search(line)
    ]


def test_the_services_scan_covers_the_backend_and_the_connector() -> None:
    scanned = {path.relative_to(SERVICES).parts[:3] for path in SERVICES.rglob("*.py")}
    assert {("kiungo", "backend", "workers.py"), ("kiungo", "connector", "app.py")} <= scanned


def test_no_service_module_names_a_ledger_table() -> None:
    assert _mentions() == [], "read the ledger's tables through kiungo.ledger.reads"
