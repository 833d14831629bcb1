"""The ledger suites run on both backends: the ``ledger_backend`` parameter picks Postgres or a
TigerBeetle server of the test's own (tests/tigerbeetle.py; skipped without a binary)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from tests.ledger.schema import schema_pool
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.ledger import Ledger
from kiungo.ledger.tigerbeetle import TigerBeetleLedger

BACKENDS = ("postgres", "tigerbeetle")


@contextlib.asynccontextmanager
async def open_ledger(backend: str, pool: asyncpg.Pool, directory: Path) -> AsyncIterator[Ledger]:
    """A started ledger of ``backend`` whose accounts map is in ``pool``'s database."""
    if backend == "postgres":
        async with Ledger(pool) as ledger:
            yield ledger
        return
    async with (
        tigerbeetle_server(directory) as server,
        TigerBeetleLedger(pool, cluster_id=0, addresses=server.address) as ledger,
    ):
        yield ledger


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pool(database_url) as pool:
        yield pool


@pytest.fixture
async def ledger(ledger_backend: str, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(ledger_backend, pool, tmp_path) as ledger:
        yield ledger
