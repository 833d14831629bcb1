"""Scratch Postgres databases and Redis key prefixes: each test gets its own, removed after it.

The fixtures in ``tests/conftest.py`` are built on these; they are functions so that the cleanup
itself can be tested.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

__all__ = [
    "DatabaseFactory",
    "create_database",
    "delete_keys",
    "drop_database",
    "new_key_prefix",
    "with_database",
]

# The `make_database` fixture: each call creates one more fresh database and returns its URL.
DatabaseFactory = Callable[[], Awaitable[str]]

# The database every server has, from which the scratch databases are created and dropped.
MAINTENANCE_DATABASE = "postgres"

_SCRATCH_NAME = re.compile(r"kiungo_test_[0-9a-f]{32}")


def with_database(url: str, database: str) -> str:
    """``url`` naming ``database`` instead, everything else (driver, host, query) kept."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str, database: str) -> str:
    # asyncpg accepts only the plain scheme, not SQLAlchemy's ``postgresql+asyncpg``.
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


async def create_database(server_url: str, template: str | None = None) -> str:
    """Create a database ``kiungo_test_<hex>`` on the server of ``server_url``: empty, or a copy
    of the scratch database ``template`` (a URL; nobody may be connected to it).

    Returns its URL in the form of ``server_url``.
    """
    name = f"kiungo_test_{uuid.uuid4().hex}"
    # template0 because nobody connects to it, so concurrent creations never find it busy.
    source = "template0" if template is None else make_url(template).database
    if source != "template0" and (source is None or not _SCRATCH_NAME.fullmatch(source)):
        raise ValueError(f"not a scratch database: {source!r}")
    connection = await asyncpg.connect(_asyncpg_dsn(server_url, MAINTENANCE_DATABASE))
    try:
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


async def drop_database(database_url: str) -> None:
    """Drop the scratch database of ``database_url``, closing any connections still open to it."""
    name = make_url(database_url).database
    if name is None or not _SCRATCH_NAME.fullmatch(name):
        raise ValueError(f"not a scratch database: {name!r}")
    connection = await asyncpg.connect(_asyncpg_dsn(database_url, MAINTENANCE_DATABASE))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def new_key_prefix() -> str:
    """A Redis key prefix no other test uses: ``kiungo-test-<hex>:``."""
    return f"kiungo-test-{uuid.uuid4().hex}:"


async def delete_keys(client: Redis, prefix: str) -> int:
    """Delete every key that starts with ``prefix``; returns how many were deleted."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    deleted = 0
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += await client.delete(*batch)
            batch.clear()
    if batch:
        deleted += await client.delete(*batch)
    return deleted
