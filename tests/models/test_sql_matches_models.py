"""The raw SQL the runtime keeps, checked against the models: every statement in
``shared/kiungo`` and ``services/kiungo`` is prepared (parsed, its tables and columns resolved,
by Postgres itself) on a database whose schema is ``Base.metadata.create_all`` — so a statement
naming a table or column the models do not have fails here, not in production.

Statements are discovered, so new SQL is covered without being registered:

- every module-level string of every ``kiungo`` module (imported, so f-strings built from
  column constants are checked as the runtime sends them) that starts with a statement keyword;
- every string literal that starts with one anywhere in the source (SQL written inline in a
  function body).

What cannot be prepared as written is listed below, each with why: templates filled at call
time and SQL assembled per call. A new one fails :func:`test_sql_built_per_call_is_listed` until
it is listed here (or written as a whole statement).

And the acceptance rule of issue 15: outside ``kiungo/models`` and ``kiungo/payments`` no state
name is spelled as a string literal (:func:`test_no_state_name_is_spelled_outside_the_models`).
"""

from __future__ import annotations

import ast
import enum
import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from tests.ledger.schema import schema_connection

import kiungo
from kiungo.ledger.rules import TransferState
from kiungo.models import (
    FeeType,
    IncomingPaymentState,
    LedgerTransfer,
    OutgoingPaymentState,
    WalletAddressStatus,
)
from kiungo.payments.outgoing import store as outgoing_store

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "shared" / "kiungo", ROOT / "services" / "kiungo")

_STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s")

# Not imported: alembic's env.py runs only inside alembic, and the migrations spell the schema
# as each revision left it (test_models_migrations checks they end at the models).
NOT_IMPORTED = ("kiungo.migrations",)

# Module-level statements with str.format fields, and the values the runtime fills in.
TEMPLATES: dict[str, list[dict[str, str]]] = {
    "kiungo.backend.api.payments._TRANSFERS": [{"side": "debit"}, {"side": "credit"}],
}

# Literals that start like a statement but are not SQL.
NOT_SQL = {
    # asyncpg's status line of a one-row UPDATE, compared against.
    "UPDATE 1",
}

# SQL assembled per call (an f-string in a function body): the set of columns or the WHERE
# clause depends on the request, so there is no one statement to prepare. Each is run by the
# tests of its module. Keyed "path under the repository: function".
BUILT_PER_CALL = {
    "services/kiungo/backend/api/assets.py: AssetMutation.create_asset.run",
    "services/kiungo/backend/api/assets.py: AssetMutation.delete_asset.run",
    "services/kiungo/backend/api/assets.py: AssetMutation.update_asset.run",
    "services/kiungo/backend/api/assets.py: AssetQuery.asset_by_code_and_scale",
    "services/kiungo/backend/api/assets.py: AssetQuery.assets",
    "services/kiungo/backend/api/assets.py: load_asset.load",
    "services/kiungo/backend/api/peers.py: PeerMutation.create_peer.run",
    "services/kiungo/backend/api/peers.py: PeerMutation.update_peer.run",
    "services/kiungo/backend/api/peers.py: PeerQuery.peer_by_address_and_asset",
    "services/kiungo/backend/api/peers.py: PeerQuery.peers",
    "services/kiungo/backend/api/peers.py: _load_peer",
    # The table is the asset's or the peer's, whichever crossed its threshold.
    "services/kiungo/backend/workers.py: raise_liquidity_alerts",
    # The SET list is the fields the update changes.
    "shared/kiungo/wallet_addresses.py: update",
}


def _modules() -> Iterator[tuple[str, object]]:
    for info in pkgutil.walk_packages(kiungo.__path__, "kiungo."):
        if info.name.startswith(NOT_IMPORTED):
            continue
        yield info.name, importlib.import_module(info.name)


def module_statements() -> dict[str, str]:
    """Every module-level statement, by value (a constant imported elsewhere is one statement),
    named by the first module that holds it; templates filled as the runtime fills them."""
    found: dict[str, str] = {}
    for module_name, module in _modules():
        for name, value in vars(module).items():
            if not isinstance(value, str) or not _STATEMENT.match(value):
                continue
            qualified = f"{module_name}.{name}"
            fills = TEMPLATES.get(qualified)
            if fills is None:
                found.setdefault(value, qualified)
            for fill in fills or ():
                found.setdefault(value.format(**fill), f"{qualified} {fill}")
    return found


class _Literals(ast.NodeVisitor):
    """String literals that start like a statement, and f-strings that do, by enclosing
    function."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.literals: list[tuple[str, int, str]] = []
        self.built: list[tuple[str, int]] = []

    def _enter(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _enter

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _STATEMENT.match(node.value):
            self.literals.append((".".join(self.scope), node.lineno, node.value))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        first = node.values[0] if node.values else None
        starts = isinstance(first, ast.Constant) and _STATEMENT.match(str(first.value))
        # At module level the import pass checks its value; in a function it is per call.
        if starts and self.scope:
            self.built.append((".".join(self.scope), node.lineno))


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def _visit() -> Iterator[tuple[str, _Literals]]:
    for path, tree in _sources():
        visitor = _Literals()
        visitor.visit(tree)
        yield path, visitor


def _template(qualified: str) -> str:
    module, _, name = qualified.rpartition(".")
    value: str = getattr(importlib.import_module(module), name)
    return value


def literal_statements() -> dict[str, str]:
    """Every statement written as one literal in the source, named by where it is (templates
    are checked filled, by the module pass)."""
    skipped = NOT_SQL | {_template(qualified) for qualified in TEMPLATES}
    found: dict[str, str] = {}
    for path, visitor in _visit():
        for scope, line, value in visitor.literals:
            if value not in skipped:
                found.setdefault(value, f"{path}:{line} ({scope or 'module'})")
    return found


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database whose schema is the models' own (``create_all``)."""
    async with schema_connection(database_url) as connection:
        yield connection


async def _refusals(conn: asyncpg.Connection, statements: dict[str, str]) -> list[str]:
    refused = []
    for statement, name in statements.items():
        try:
            await conn.prepare(statement)
        except asyncpg.PostgresError as error:
            refused.append(f"{name}: {type(error).__name__}: {error}")
    return refused


def test_discovery_finds_the_statements_of_both_services_and_the_shared_package() -> None:
    names = set(module_statements().values())
    assert {
        "kiungo.payments.outgoing.store._FAIL",
        "kiungo.payments.incoming.store._CREATE",
        "kiungo.ledger.service._WRITE",
        "kiungo.connector.sending.lease._CLAIM",
        "kiungo.backend.workers._CLAIM_WEBHOOKS",
        "kiungo.backend.api.payments._TRANSFERS {'side': 'credit'}",
    } <= names
    assert len(names) > 40
    assert len(literal_statements()) > 20


async def test_every_module_level_statement_prepares_against_the_models_schema(
    conn: asyncpg.Connection,
) -> None:
    assert await _refusals(conn, module_statements()) == []


async def test_every_inline_statement_prepares_against_the_models_schema(
    conn: asyncpg.Connection,
) -> None:
    assert await _refusals(conn, literal_statements()) == []


async def test_a_statement_naming_a_column_the_models_lack_is_refused(
    conn: asyncpg.Connection,
) -> None:
    # The check itself: one real statement with one column renamed.
    statement = outgoing_store._LOCKED
    assert "state_attempts" in statement
    renamed = {statement.replace("state_attempts", "state_attempt"): "renamed column"}
    refused = await _refusals(conn, renamed)
    assert len(refused) == 1
    assert "UndefinedColumnError" in refused[0]
    assert "state_attempt" in refused[0]
    gone = {statement.replace("outgoing_payments", "outgoing_payment"): "renamed table"}
    assert "UndefinedTableError" in (await _refusals(conn, gone))[0]


def test_sql_built_per_call_is_listed() -> None:
    built = {f"{path}: {scope}" for path, visitor in _visit() for scope, _line in visitor.built}
    unlisted = sorted(built - BUILT_PER_CALL)
    stale = sorted(BUILT_PER_CALL - built)
    assert (unlisted, stale) == ([], []), (
        "SQL assembled per call is not prepared by this module: list it in BUILT_PER_CALL "
        "(or write it as a whole statement); drop entries that are gone"
    )


# The states whose names must come from the models' enums.
STATES: tuple[type[enum.StrEnum], ...] = (
    IncomingPaymentState,
    OutgoingPaymentState,
    WalletAddressStatus,
)
# Names that are also another enum's value: a ledger transfer's state (PENDING, EXPIRED in
# ledger_transfers, the ledger's own raw SQL) or a fee type (SENDING). Spelled as a Python
# string they are not flagged (the text does not say which is meant); in SQL they are, unless
# the statement reads the ledger's transfers.
AMBIGUOUS = {s.value for e in STATES for s in e} & (
    {s.value for s in TransferState} | {s.value for s in FeeType}
)
LEDGER_TABLE = LedgerTransfer.__tablename__
# Where state names belong: the models define them, the payments package performs every
# transition, the migrations spell the schema as it was.
OWNERS = ("shared/kiungo/models/", "shared/kiungo/payments/", "shared/kiungo/migrations/")


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def state_literals() -> list[str]:
    """Every state name spelled as a literal outside its owners: quoted in SQL (``'FUNDING'``),
    or a Python string that is exactly a payment state's name."""
    states = {s.value for e in STATES for s in e}
    payment_states = {s.value for s in IncomingPaymentState} | {
        s.value for s in OutgoingPaymentState
    }
    found = []
    for path, tree in _sources():
        if path.startswith(OWNERS):
            continue
        for line, text in _strings(tree):
            for name in re.findall(r"'([A-Z_]+)'", text):
                ledger = name in AMBIGUOUS and LEDGER_TABLE in text
                if name in states and not ledger:
                    found.append(f"{path}:{line}: '{name}' in SQL")
            if text in payment_states and text not in AMBIGUOUS:
                found.append(f"{path}:{line}: {text!r}")
    return found


def test_no_state_name_is_spelled_outside_the_models() -> None:
    assert state_literals() == []
