"""Database connections: SQLAlchemy's async engine for models, asyncpg pools for the ledger.

URLs are given as operators write them (``postgresql://user@host:5432/db``; a unix socket as
``?host=/socket/dir``, which the embedded Postgres uses) and converted for each driver here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["async_url", "create_engine", "create_pool", "plain_url"]


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme or url!r}")
    return urlunsplit((scheme, *parts[1:]))


def async_url(url: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg://``) for a PostgreSQL URL."""
    return _with_scheme(url, "postgresql+asyncpg")


def plain_url(url: str) -> str:
    """The libpq/asyncpg URL (``postgresql://``) for a PostgreSQL URL."""
    return _with_scheme(url, "postgresql")


def create_engine(url: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(async_url(url), pool_pre_ping=True, **kwargs)


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    parts = urlsplit(plain_url(url))
    query = dict(parse_qsl(parts.query))
    dsn = urlunsplit((*parts[:3], urlencode(query), parts.fragment))
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    return pool
