"""The embedded Postgres and Redis start, serve, stop, and keep their data (DESIGN §5).

These start their own engines even when ``DATABASE_URL`` and ``REDIS_URL`` are set, so that CI,
which otherwise uses the machine's servers, still runs the embedded ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from kiungo.store import EmbeddedPostgres, EmbeddedRedis


@pytest.fixture
def engine_directory() -> Iterator[Path]:
    # Not tmp_path: see _engine_directory in tests/conftest.py.
    with tempfile.TemporaryDirectory(prefix="kiungo-engines-") as directory:
        yield Path(directory)


async def test_embedded_postgres_answers_queries_until_stopped(engine_directory: Path) -> None:
    postgres = EmbeddedPostgres(engine_directory)
    await postgres.start()
    url = postgres.url
    try:
        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
    finally:
        await postgres.stop()

    with pytest.raises(OSError):
        await asyncpg.connect(url)


async def test_embedded_postgres_keeps_its_data_across_a_restart(engine_directory: Path) -> None:
    async with EmbeddedPostgres(engine_directory) as postgres:
        connection = await asyncpg.connect(postgres.url)
        try:
            await connection.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        finally:
            await connection.close()

    async with EmbeddedPostgres(engine_directory) as postgres:
        connection = await asyncpg.connect(postgres.url)
        try:
            assert await connection.fetchval("SELECT answer FROM kept") == 42
        finally:
            await connection.close()


async def test_embedded_redis_answers_commands_until_stopped(engine_directory: Path) -> None:
    redis = EmbeddedRedis(engine_directory)
    await redis.start()
    client = Redis.from_url(redis.url)
    try:
        await client.set("greeting", "jambo")
        assert await client.get("greeting") == b"jambo"
        await redis.stop()

        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await client.aclose()
        await redis.stop()


async def test_embedded_redis_keeps_its_data_across_a_restart(engine_directory: Path) -> None:
    async with EmbeddedRedis(engine_directory) as redis:
        client = Redis.from_url(redis.url)
        await client.set("greeting", "jambo")
        await client.aclose()

    async with EmbeddedRedis(engine_directory) as redis:
        client = Redis.from_url(redis.url)
        try:
            assert await client.get("greeting") == b"jambo"
        finally:
            await client.aclose()


async def test_embedded_redis_is_append_only_and_keeps_a_write_through_a_kill(
    engine_directory: Path,
) -> None:
    """Append-only, synced each second: a write answered before the server is killed (no
    snapshot on SIGKILL) is there after a restart, as an owed post must be."""
    async with EmbeddedRedis(engine_directory) as redis:
        client = Redis.from_url(redis.url)
        try:
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
            assert await client.config_get("appendfsync") == {"appendfsync": "everysec"}
            await client.rpush("kiungo:posts-owed", "an owed post")
            pid = int((await client.info("server"))["process_id"])
        finally:
            await client.aclose()
        os.kill(pid, signal.SIGKILL)

    async with EmbeddedRedis(engine_directory) as redis:
        client = Redis.from_url(redis.url)
        try:
            assert await client.lrange("kiungo:posts-owed", 0, -1) == [b"an owed post"]
        finally:
            await client.aclose()


async def test_embedded_redis_from_before_append_only_keeps_its_snapshot(
    engine_directory: Path,
) -> None:
    """A data directory written without append-only persistence (a snapshot, no AOF) keeps its
    data when the embedded Redis starts append-only, and is append-only from then on."""
    async with EmbeddedRedis(engine_directory) as redis:
        client = Redis.from_url(redis.url)
        try:
            await client.config_set("appendonly", "no")
            await client.rpush("kiungo:posts-owed", "an owed post")
            await client.save()
        finally:
            await client.aclose()
    for aof in (engine_directory / "redis").glob("appendonly*"):
        shutil.rmtree(aof) if aof.is_dir() else aof.unlink()

    for _ in range(2):  # the first start turns it on, the second reads the AOF
        async with EmbeddedRedis(engine_directory) as redis:
            client = Redis.from_url(redis.url)
            try:
                assert await client.config_get("appendonly") == {"appendonly": "yes"}
                assert await client.lrange("kiungo:posts-owed", 0, -1) == [b"an owed post"]
            finally:
                await client.aclose()
