"""Schema and fixtures data for ledger tests: the models' tables on a fresh database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

import kiungo.models  # noqa: F401  (registers every table on the metadata)
from kiungo.models.base import Base
from kiungo.runtime.db import async_url, plain_url


async def create_schema(database_url: str) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def schema_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on ``database_url`` once the models' tables are created there."""
    await create_schema(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def schema_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to ``database_url`` once the models' tables are created there: raw SQL
    checked there is checked against the models themselves (not the migrations)."""
    await create_schema(database_url)
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        yield connection
    finally:
        await connection.close()


# Every account's (debits posted, credits posted, debits pending, credits pending), by id.
Balances = dict[uuid.UUID, tuple[int, int, int, int]]


async def ledger_balances(pool: asyncpg.Pool) -> Balances:
    """Every ledger account's balances, to compare before and after what must move no money."""
    rows = await pool.fetch(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger_accounts"
    )
    return {
        row["id"]: (
            int(row["debits_posted"]),
            int(row["credits_posted"]),
            int(row["debits_pending"]),
            int(row["credits_pending"]),
        )
        for row in rows
    }


async def create_asset(pool: asyncpg.Pool, code: str, scale: int) -> uuid.UUID:
    asset_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO assets (id, code, scale) VALUES ($1, $2, $3)", asset_id, code, scale
        )
    return asset_id
