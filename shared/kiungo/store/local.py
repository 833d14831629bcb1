"""Where the node's stores are: ``DATABASE_URL`` and ``REDIS_URL``, or embedded servers.

The data dir is ``KIUNGO_DATA_DIR`` (default ``~/.local/share/kiungo``); the embedded server
keeps its files there between runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from kiungo.config import Settings
from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis

__all__ = ["postgres_url", "redis_url"]


def postgres_url(settings: Settings) -> contextlib.AbstractAsyncContextManager[str]:
    """The database URL to use, starting the embedded Postgres for as long as it is needed."""
    return _url(settings.database_url, settings, EmbeddedPostgres)


def redis_url(settings: Settings) -> contextlib.AbstractAsyncContextManager[str]:
    """The Redis URL to use, starting the embedded Redis for as long as it is needed."""
    return _url(settings.redis_url, settings, EmbeddedRedis)


@contextlib.asynccontextmanager
async def _url(
    given: str | None,
    settings: Settings,
    engine: Callable[[Path], EmbeddedPostgres | EmbeddedRedis],
) -> AsyncIterator[str]:
    """``given``, else the URL of ``engine`` run in the data dir while the block runs."""
    if given:
        yield given
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with engine(settings.data_dir) as server:
        yield server.url
