"""Where the node's stores are: ``DATABASE_URL`` and ``REDIS_URL``, or embedded servers.

The data dir is ``KIUNGO_DATA_DIR`` (default ``~/.local/share/kiungo``); the embedded server
keeps its files there between runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from kiungo.config import Settings
from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis

__all__ = ["postgres_url", "redis_url"]


@contextlib.asynccontextmanager
async def postgres_url(settings: Settings) -> AsyncIterator[str]:
    """The database URL to use, starting the embedded Postgres for as long as it is needed."""
    if settings.database_url:
        yield settings.database_url
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with EmbeddedPostgres(settings.data_dir) as server:
        yield server.url


@contextlib.asynccontextmanager
async def redis_url(settings: Settings) -> AsyncIterator[str]:
    """The Redis URL to use, starting the embedded Redis for as long as it is needed."""
    if settings.redis_url:
        yield settings.redis_url
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with EmbeddedRedis(settings.data_dir) as server:
        yield server.url
