"""The runtime's SQL is built from the models (issue 15): :class:`kiungo.models.sql.Statement`.

- A statement compiles to asyncpg's ``$n`` SQL with named binds, constants as literals and the
  models' Python defaults filled, and runs on a real Postgres.
- Every statement any ``kiungo`` module builds prepares against the schema the models create.
- Raw SQL naming a table is left only where :data:`RAW_SQL` says why.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import bindparam, func, insert, select, update
from tests.ledger.schema import schema_connection
from tests.models.test_sql_matches_models import (
    NOT_IMPORTED,
    literal_statements,
    module_statements,
)

import kiungo
from kiungo.models import (
    Asset,
    Base,
    IncomingPayment,
    IncomingPaymentState,
    WalletAddress,
)
from kiungo.models.sql import ALL, Statement, table

# Modules that keep raw SQL naming the node's tables, each with why. Everything else builds its
# statements from the models.
RAW_SQL = {
    # The ledger's batch, and only it: LOCK_TRANSFERS, LOCK_EXPIRED_HOLDS, LOCK_ACCOUNTS,
    # LOCK_MORE_ACCOUNTS and WRITE, the measured hot path (tests/benchmarks/ledger.py,
    # connector.py), one round trip of unnested arrays per batch of transfers. The ledger's
    # other statements (accounts, balances, history, the sweep's read, the balance copy) are
    # built from the models (kiungo.ledger.service_sql).
    "kiungo.ledger.batch_sql",
}

_TABLES = re.compile(
    r"\b(" + "|".join(sorted(Base.metadata.tables, key=len, reverse=True)) + r")\b"
)

_assets = table(Asset)
_wallets = table(WalletAddress)
_incoming = table(IncomingPayment)

_INSERT_ASSET = Statement(
    insert(_assets).values(code=bindparam("code"), scale=bindparam("scale")).returning(_assets.c.id)
)
_INSERT_WALLET = Statement(
    insert(_wallets)
    .values(
        url=bindparam("url"),
        asset_id=bindparam("asset_id"),
        public_name=bindparam("name"),
    )
    .returning(_wallets.c.id)
)
_INSERT_INCOMING = Statement(
    insert(_incoming)
    .values(
        wallet_address_id=bindparam("wallet"),
        asset_id=bindparam("asset"),
        incoming_amount=bindparam("amount"),
        metadata=bindparam("metadata"),
        expires_at=func.now() + func.make_interval(0, 0, 0, 1),
    )
    .returning(_incoming.c.id, _incoming.c.state)
)
_COMPLETE = Statement(
    update(_incoming)
    .where(
        _incoming.c.id == bindparam("id"),
        _incoming.c.state.in_([IncomingPaymentState.PENDING, IncomingPaymentState.PROCESSING]),
    )
    .values(state=IncomingPaymentState.COMPLETED, received_amount=bindparam("received"))
    .returning(_incoming.c.received_amount)
)
_OPEN_FOR_WALLET = Statement(
    select(func.count())
    .select_from(_incoming)
    .where(
        _incoming.c.wallet_address_id == bindparam("wallet"),
        _incoming.c.state == IncomingPaymentState.PENDING,
    )
)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with schema_connection(database_url) as connection:
        yield connection


def test_constants_are_literals_and_named_binds_are_numbered() -> None:
    assert "'PENDING', 'PROCESSING'" in _COMPLETE.sql
    assert "state='COMPLETED'" in _COMPLETE.sql.replace(" ", "")
    assert _COMPLETE.names == ("received", "id")
    # updated_at comes from the model's onupdate, written in SQL.
    assert "updated_at=now()" in _COMPLETE.sql.replace(" ", "")
    assert _COMPLETE.args({"id": 7, "received": 9}) == (9, 7)


def test_a_missing_or_unknown_bind_is_refused() -> None:
    with pytest.raises(TypeError, match="'id' needs a value"):
        _COMPLETE.args({"received": 1})
    with pytest.raises(TypeError, match="no bind named"):
        _COMPLETE.args({"id": 1, "received": 1, "recieved": 2})


def test_the_models_python_defaults_are_filled() -> None:
    # id's default is uuid4: not given, one is made per call.
    first = _INSERT_ASSET.args({"code": "USD", "scale": 2})
    second = _INSERT_ASSET.args({"code": "USD", "scale": 2})
    assert isinstance(first[-1], uuid.UUID) and first[-1] != second[-1]
    given = uuid.uuid4()
    assert given in _INSERT_ASSET.args({"code": "USD", "scale": 2, "id": given})


async def test_statements_run_on_postgres(conn: asyncpg.Connection) -> None:
    asset = await _INSERT_ASSET.fetchval(conn, code="USD", scale=2)
    wallet = await _INSERT_WALLET.fetchval(
        conn, url="https://wallet.example/alice", asset_id=asset, name="Alice"
    )
    row = await _INSERT_INCOMING.fetchrow(
        conn,
        wallet=wallet,
        asset=asset,
        amount=2**64 - 1,
        metadata=json.dumps({"k": "v"}),
    )
    assert row is not None and row["state"] == IncomingPaymentState.PENDING
    assert await _OPEN_FOR_WALLET.fetchval(conn, wallet=wallet) == 1
    received = await _COMPLETE.fetchval(conn, id=row["id"], received=2**64 - 1)
    assert received == 2**64 - 1
    # Completed: the guard leaves it alone the second time.
    assert await _COMPLETE.execute(conn, id=row["id"], received=1) == "UPDATE 0"
    assert await _OPEN_FOR_WALLET.fetchval(conn, wallet=wallet) == 0


def _import_all() -> None:
    for info in pkgutil.walk_packages(kiungo.__path__, "kiungo."):
        if not info.name.startswith(NOT_IMPORTED):
            importlib.import_module(info.name)


async def test_every_statement_built_prepares_against_the_models_schema(
    conn: asyncpg.Connection,
) -> None:
    _import_all()
    refused = []
    for statement in ALL:
        try:
            await conn.prepare(statement.sql)
        except asyncpg.PostgresError as error:
            refused.append(f"{statement.where}: {type(error).__name__}: {error}")
    assert refused == []
    assert len(ALL) >= 5


def _module_of(where: str) -> str:
    """``kiungo.x.y`` for a module name or a ``shared/kiungo/x/y.py:12 (…)`` location."""
    if "/" not in where:
        return where.rsplit(".", 1)[0]
    path = where.split(":", 1)[0].split("/", 1)[1]
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_raw_sql_naming_a_table_is_left_only_where_listed() -> None:
    raw: dict[str, list[str]] = {}
    statements = {**module_statements(), **literal_statements()}
    # A module may publish a statement's SQL as text (for callers that still compose text):
    # built from the models, not spelled by hand.
    _import_all()
    built = {statement.sql.strip() for statement in ALL}
    for sql, where in statements.items():
        if _TABLES.search(sql) and sql.strip() not in built:
            raw.setdefault(_module_of(where), []).append(where)
    allowed = RAW_SQL
    unlisted = {module: places for module, places in raw.items() if module not in allowed}
    assert unlisted == {}
    # A module listed that no longer needs it is taken off the list.
    assert allowed - set(raw) == set()
