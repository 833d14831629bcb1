"""Where the node's Postgres is: ``DATABASE_URL``, or the embedded server under the data dir.

The data dir is ``KIUNGO_DATA_DIR``, or ``~/.local/share/kiungo``; the embedded server keeps
its files there between runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from kiungo.store.embedded import EmbeddedPostgres

__all__ = ["data_dir", "postgres_url"]


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("KIUNGO_DATA_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "share" / "kiungo"


@contextlib.asynccontextmanager
async def postgres_url(environ: Mapping[str, str] = os.environ) -> AsyncIterator[str]:
    """The database URL to use, starting the embedded Postgres for as long as it is needed."""
    configured = environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    directory = data_dir(environ)
    directory.mkdir(parents=True, exist_ok=True)
    async with EmbeddedPostgres(directory) as server:
        yield server.url
