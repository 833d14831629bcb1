"""Fixtures of the Redis store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import BlockingConnectionPool, Redis


@pytest.fixture
async def replicas(redis_server_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two clients with pools of their own, as two connector processes would have."""
    clients = [
        Redis(connection_pool=BlockingConnectionPool.from_url(redis_server_url, max_connections=20))
        for _ in range(2)
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.aclose()
