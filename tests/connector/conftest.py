"""Fixtures of the connector suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tests.connector.harness import Connector, fulfilling_hop, next_hop, running_connector


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Connector]:
    """A seeded in-process connector on Postgres whose next hop fulfills every packet."""
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        yield connector


@pytest.fixture(params=("postgres", "tigerbeetle"))
async def connector_on_each_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    redis: Redis,
) -> AsyncIterator[Connector]:
    """``connector`` with its ledger on Postgres, then on a TigerBeetle server of its own."""
    directory = tmp_path if request.param == "tigerbeetle" else None
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop,
            tigerbeetle_dir=directory,
        ) as connector,
    ):  # fmt: skip
        yield connector
