"""Liveness and readiness, the same on every service: ``GET /livez``, ``GET /readyz`` and
``GET /healthz``.

``/livez`` answers 200 whenever the process serves HTTP and touches no store: an orchestrator
restarts a process whose liveness fails, and restarting cures neither a Postgres nor a Redis
outage. ``/readyz`` answers 200 only when Postgres and Redis both answer within
``READY_TIMEOUT`` seconds, else 503 with which of them did not, so that the replica is taken out
of its load balancer until they do; a service whose ledger lives in TigerBeetle asks the cluster
too (a lookup round trip), under the name ``ledger``. ``/healthz`` stays as it was: the stores
asked once, without a bound of its own, 503 with the type of the first failure. A service
without Redis (the authorization server) checks Postgres alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["READY_TIMEOUT", "health_routes", "store_problems"]

log = logging.getLogger("kiungo.runtime.health")

# Below the probes' own timeouts (deploy/k8s: 3 s): a hung store answers 503, not a probe timeout.
READY_TIMEOUT = 2.0


LedgerProbe = Callable[[], Awaitable[None]]
"""One round trip to a ledger engine outside Postgres (``Ledger.readiness_probe``)."""


async def store_problems(
    pool: asyncpg.Pool,
    redis: Redis | None,
    timeout: float = READY_TIMEOUT,  # noqa: ASYNC109  (each store's own bound, not the call's)
    ledger: LedgerProbe | None = None,
) -> dict[str, str]:
    """``{"postgres": ..., "redis": ..., "ledger": ...}`` for each store that did not answer,
    each checked at the same time and for at most ``timeout`` seconds; empty when all
    answered. Without ``redis``, no Redis check; without ``ledger``, no ledger check."""

    async def postgres() -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def ping() -> None:
        assert redis is not None
        await redis.ping()

    async def check(name: str, probe: Awaitable[None]) -> tuple[str, str | None]:
        try:
            async with asyncio.timeout(timeout):
                await probe
        except TimeoutError:
            log.warning("readiness: %s did not answer within %g s", name, timeout)
            return name, f"no answer within {timeout:g} s"
        except Exception as exc:
            # Only the exception's type goes out (the connector's port faces peers: no store
            # hosts in answers); the log line has the whole message.
            log.warning("readiness: %s unreachable: %r", name, exc)
            return name, type(exc).__name__
        return name, None

    checks = [check("postgres", postgres())]
    if redis is not None:
        checks.append(check("redis", ping()))
    if ledger is not None:
        checks.append(check("ledger", ledger()))
    results = await asyncio.gather(*checks)
    return {name: problem for name, problem in results if problem is not None}


def health_routes(
    pool: asyncpg.Pool, redis: Redis | None, ledger: LedgerProbe | None = None
) -> list[Route]:
    """``GET /healthz``, ``GET /livez`` and ``GET /readyz`` for a service whose stores are
    ``pool`` and ``redis`` (None: a service on Postgres alone), and ``ledger`` when its
    balances live in an engine of their own (``/readyz`` only)."""

    async def healthz(request: Request) -> Response:
        try:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            if redis is not None:
                await redis.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok"})

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = await store_problems(pool, redis, ledger=ledger)
        if problems:
            return JSONResponse({"status": "unavailable", "reason": problems}, 503)
        return JSONResponse({"status": "ok"})

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
