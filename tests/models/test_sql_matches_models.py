"""The raw SQL the runtime keeps, checked against the models: every statement in
``shared/kiungo`` and ``services/kiungo`` is prepared (parsed, its tables and columns resolved,
by Postgres itself) on a database whose schema is ``Base.metadata.create_all`` — so a statement
naming a table or column the models do not have fails here, not in production.

Statements are discovered, so new SQL is covered without being registered:

- every module-level string of every ``kiungo`` module (imported, so f-strings built from
  column constants are checked as the runtime sends them) that starts with a statement keyword;
- every string literal that starts with one anywhere in the source (SQL written inline in a
  function body), and every f-string in a function body made of literals and module constants
  (resolved as the runtime builds it).

What cannot be prepared as written is listed below, each with why: a template whose filled
forms are checked instead, and SQL assembled per call. A new one of the latter fails
:func:`test_sql_built_per_call_is_listed` until it is listed (or written as a whole statement).

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

# Module-level str.format templates, not statements themselves, each with where its filled forms
# are (checked there).
TEMPLATES: dict[str, str] = {}

# Literals that start like a statement but are not SQL.
NOT_SQL = {
    # asyncpg's status line of a one-row UPDATE, compared against.
    "UPDATE 1",
}

# SQL assembled per call: an f-string in a function body with a part that is not a module
# constant (an f-string made only of literals and constants, such as
# f"SELECT {COLUMNS} FROM assets WHERE id = $1", is resolved and prepared). There is no
# one statement to prepare; each is run by the tests of its module. Keyed "path: function".
BUILT_PER_CALL: set[str] = set()


def _modules() -> Iterator[tuple[str, object]]:
    for info in pkgutil.walk_packages(kiungo.__path__, "kiungo."):
        if info.name.startswith(NOT_IMPORTED):
            continue
        yield info.name, importlib.import_module(info.name)


def module_statements() -> dict[str, str]:
    """Every module-level statement, by value (a constant imported elsewhere is one statement),
    named by the first module that holds it."""
    found: dict[str, str] = {}
    for module_name, module in _modules():
        for name, value in vars(module).items():
            qualified = f"{module_name}.{name}"
            if isinstance(value, str) and _STATEMENT.match(value) and qualified not in TEMPLATES:
                found.setdefault(value, qualified)
    return found


def _module_of(path: str) -> object:
    """The module of a source path under shared/ or services/."""
    dotted = path.split("/", 1)[1].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    return importlib.import_module(dotted)


def _constant(node: ast.expr, module: object) -> str | None:
    """The value of ``NAME`` or ``name.NAME`` when it is a str of ``module``'s globals (a
    constant the f-string is built from), else None."""
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        value = getattr(getattr(module, node.value.id, None), node.attr, None)
    else:
        return None
    return value if isinstance(value, str) else None


def _resolve(node: ast.JoinedStr, module: object) -> str | None:
    """The f-string's value when every part of it is a literal or a module constant."""
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
            continue
        assert isinstance(part, ast.FormattedValue)
        value = None if part.format_spec or part.conversion != -1 else _constant(part.value, module)
        if value is None:
            return None
        parts.append(value)
    return "".join(parts)


class _Literals(ast.NodeVisitor):
    """String literals that start like a statement, and f-strings in function bodies that do,
    by enclosing function (at module level the import pass sees an f-string's value)."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.literals: list[tuple[str, int, str]] = []
        self.fstrings: list[tuple[str, ast.JoinedStr]] = []

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
        if starts and self.scope:
            self.fstrings.append((".".join(self.scope), node))


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
    """Every statement written in a function body or as one literal, named by where it is:
    literals as written, f-strings of literals and module constants as resolved."""
    skipped = NOT_SQL | {_template(qualified) for qualified in TEMPLATES}
    found: dict[str, str] = {}
    for path, visitor in _visit():
        for scope, line, value in visitor.literals:
            if value not in skipped:
                found.setdefault(value, f"{path}:{line} ({scope or 'module'})")
        for scope, node in visitor.fstrings:
            resolved = _resolve(node, _module_of(path))
            if resolved is not None:
                found.setdefault(resolved, f"{path}:{node.lineno} ({scope}, an f-string)")
    return found


def built_per_call() -> set[str]:
    """Where an f-string statement has a part only known per call."""
    return {
        f"{path}: {scope}"
        for path, visitor in _visit()
        for scope, node in visitor.fstrings
        if _resolve(node, _module_of(path)) is None
    }


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


def test_discovery_finds_the_raw_sql_that_is_left() -> None:
    # Everything else builds its SQL as Statements (kiungo.models.sql, issue 15, checked by
    # tests/models/test_core_statements.py): what stays is the ledger's batch, and statements'
    # text published for callers that compose text.
    names = set(module_statements().values())
    batch = {
        f"kiungo.ledger.batch_sql.{name}"
        for name in ("LOCK_TRANSFERS", "LOCK_EXPIRED_HOLDS", "LOCK_ACCOUNTS", "WRITE")
    }
    assert batch <= names
    assert len(literal_statements()) >= 5


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
    statement = outgoing_store._LOCKED.sql
    assert "state_attempts" in statement
    renamed = {statement.replace("state_attempts", "state_attempt"): "renamed column"}
    refused = await _refusals(conn, renamed)
    assert len(refused) == 1
    assert "UndefinedColumnError" in refused[0]
    assert "state_attempt" in refused[0]
    gone = {statement.replace("outgoing_payments", "outgoing_payment"): "renamed table"}
    assert "UndefinedTableError" in (await _refusals(conn, gone))[0]


def test_sql_built_per_call_is_listed() -> None:
    built = built_per_call()
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
