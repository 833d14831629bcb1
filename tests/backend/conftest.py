"""Fixtures of the backend tests: ``admin`` is a running backend on a migrated database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.stores import create_database, drop_database
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.migrations.run import upgrade


@pytest.fixture(scope="session")
async def migrated_template(postgres_server_url: str) -> AsyncIterator[str]:
    """A database migrated once per session, copied for each test (much faster than migrating)."""
    url = await create_database(postgres_server_url)
    await upgrade(url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def migrated_database(postgres_server_url: str, migrated_template: str) -> AsyncIterator[str]:
    url = await create_database(postgres_server_url, template=migrated_template)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def admin(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> AsyncIterator[Admin]:
    """A backend with its workers, signatures required; ``redis`` cleans the prefix after."""
    async with running_backend(
        migrated_database, redis_server_url, backend_settings(redis_prefix)
    ) as running:
        yield running


@pytest.fixture(params=("postgres", "tigerbeetle"))
async def admin_on_each_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_database: str,
    redis_server_url: str,
    redis_prefix: str,
    redis: object,
) -> AsyncIterator[Admin]:
    """``admin`` with its ledger on Postgres, then on a TigerBeetle server of its own."""
    async with contextlib.AsyncExitStack() as stack:
        settings = backend_settings(redis_prefix)
        if request.param == "tigerbeetle":
            server = await stack.enter_async_context(tigerbeetle_server(tmp_path))
            settings = replace(
                settings, use_tigerbeetle=True, tigerbeetle_replica_addresses=server.address
            )
        yield await stack.enter_async_context(
            running_backend(migrated_database, redis_server_url, settings)
        )
