"""The store fixtures give each test a database and a Redis key prefix no other test sees."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from tests.stores import DatabaseFactory, create_database, delete_keys, drop_database, with_database


async def test_fresh_database_has_no_tables(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await connection.close()
    assert tables == []


async def test_table_created_in_one_database_is_absent_from_another(
    make_database: DatabaseFactory,
) -> None:
    first, second = await make_database(), await make_database()
    connection = await asyncpg.connect(first)
    try:
        await connection.execute("CREATE TABLE accounts (id bigint PRIMARY KEY)")
    finally:
        await connection.close()

    connection = await asyncpg.connect(second)
    try:
        found = await connection.fetchval("SELECT to_regclass('public.accounts')")
    finally:
        await connection.close()
    assert first != second
    assert found is None


async def test_dropping_a_database_closes_its_connections_and_removes_it(
    postgres_server_url: str,
) -> None:
    url = await create_database(postgres_server_url)
    name = make_url(url).database
    open_connection = await asyncpg.connect(url)
    try:
        await drop_database(url)
        assert open_connection.is_closed() or not await _answers(open_connection)
    finally:
        await open_connection.close()

    connection = await asyncpg.connect(with_database(postgres_server_url, "postgres"))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await connection.close()
    assert exists is None


async def _answers(connection: asyncpg.Connection) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


def test_database_url_keeps_driver_credentials_host_and_query() -> None:
    url = "postgresql+asyncpg://kiungo:secret@db.example:5433/postgres?ssl=disable"
    assert with_database(url, "kiungo_test_1") == (
        "postgresql+asyncpg://kiungo:secret@db.example:5433/kiungo_test_1?ssl=disable"
    )


async def test_redis_prefix_has_no_keys_when_the_test_starts(
    redis: Redis, redis_prefix: str
) -> None:
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")] == []


async def test_deleting_one_prefix_keeps_keys_of_another(redis: Redis, redis_prefix: str) -> None:
    mine, theirs = f"{redis_prefix}mine:", f"{redis_prefix}theirs:"
    await redis.set(f"{mine}a", "1")
    await redis.set(f"{mine}b", "2")
    await redis.set(f"{theirs}a", "3")
    await redis.set(f"{theirs}{mine}a", "4")  # holds the other prefix, but not at its start

    assert await delete_keys(redis, mine) == 2

    assert await redis.exists(f"{mine}a", f"{mine}b") == 0
    assert await redis.exists(f"{theirs}a", f"{theirs}{mine}a") == 2


async def test_deleting_a_prefix_takes_glob_characters_literally(
    redis: Redis, redis_prefix: str
) -> None:
    await redis.set(f"{redis_prefix}a*:1", "1")
    await redis.set(f"{redis_prefix}ab:1", "2")

    assert await delete_keys(redis, f"{redis_prefix}a*:") == 1

    assert await redis.exists(f"{redis_prefix}ab:1") == 1
