"""Starting and stopping one backend replica: its pools, ledger, workers and HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette

from kiungo.backend.app import create_app
from kiungo.backend.context import Backend
from kiungo.backend.metrics import BackendMetrics
from kiungo.backend.workers import Workers
from kiungo.config import Settings
from kiungo.ledger.backend import make_ledger
from kiungo.runtime.db import create_pool
from kiungo.runtime.runner import http_server, listening_url, started
from kiungo.runtime.tasks import stop_tasks

__all__ = ["RunningBackend", "backend_server", "serve_backend"]


@contextlib.asynccontextmanager
async def serve_backend(
    settings: Settings,
    database_url: str,
    redis_url: str,
    *,
    workers: bool = True,
    group: Path | None = None,
) -> AsyncIterator[tuple[Backend, Starlette]]:
    """A backend's resources and app, with its workers running unless told otherwise; with
    ``group`` (``--processes N``), its metrics served merged with the other processes'."""
    pool = await create_pool(database_url, min_size=2, max_size=20)
    # A plain pool: the admin API has far fewer requests in flight than the connector, and the
    # blocking pool's wait machinery cost a tenth of each request's CPU.
    redis = Redis.from_url(redis_url)
    ledger = await make_ledger(pool, settings)
    ledger.start()
    metrics = BackendMetrics()
    backend = Backend(settings=settings, pool=pool, ledger=ledger, redis=redis)
    running = Workers(backend, metrics)
    publishing = []
    if group is not None:
        publishing.append(asyncio.create_task(metrics.join(group).run(), name="group-metrics"))
    try:
        if workers:
            running.start()
        yield backend, create_app(backend, metrics)
    finally:
        await stop_tasks(publishing)
        await running.stop()
        await backend.close()
        await ledger.close()
        await redis.aclose()
        await pool.close()


@dataclass(frozen=True, slots=True)
class RunningBackend:
    backend: Backend
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return listening_url(self.server)


@contextlib.asynccontextmanager
async def backend_server(
    settings: Settings,
    database_url: str,
    redis_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    workers: bool = True,
) -> AsyncIterator[RunningBackend]:
    """A started backend listening on ``host:port`` (port 0: any free port)."""
    async with (
        serve_backend(settings, database_url, redis_url, workers=workers) as (backend, app),
        started(http_server(app, host, port), "backend") as server,
    ):
        yield RunningBackend(backend, server)
