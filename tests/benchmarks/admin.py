"""Admin API throughput with the real `kiungo backend` process on Postgres and Redis, signatures
on: prints one JSON line per figure.

    .venv/bin/python -m tests.benchmarks.admin [--seconds 60] [--clients 5]

``--clients`` closed-loop clients, each on its own keep-alive connection, send signed
``createIncomingPayment`` mutations for ``--seconds``; the figures are requests/s and
p50/p95/p99 latency. Each mutation writes an ``incoming_payment.created`` webhook event, which
the backend's worker delivers to a receiver process (``tests.benchmarks.webhook_sink``); the
last line says how many events were still undelivered when the load stopped and how long the
worker took to catch up. Uses DATABASE_URL/REDIS_URL (a scratch database and key prefix) or
embedded engines. Not a test: it never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.benchmarks.connector import KIUNGO, _Connection, free_port, process
from tests.stores import create_database, drop_database

from kiungo.migrations.run import upgrade
from kiungo.signatures import signature_header
from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis

SECRET = "benchmark-admin-secret"
CREATE = (
    "mutation($input: CreateIncomingPaymentInput!) "
    "{ createIncomingPayment(input: $input) { payment { id state } } }"
)


async def _signed(client: httpx.AsyncClient, url: str, query: str, variables: Any) -> Any:
    body = {"query": query, "variables": variables}
    response = await client.post(
        url, json=body, headers={"signature": signature_header(SECRET, body)}
    )
    data = response.json()
    if data.get("errors"):
        raise RuntimeError(data["errors"])
    return data["data"]


async def _load(url: str, wallet: str, seconds: float, clients: int) -> dict[str, Any]:
    parts = httpx.URL(url)
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        connection = _Connection(reader, writer)
        try:
            while time.perf_counter() < deadline:
                body = {
                    "query": CREATE,
                    "variables": {
                        "input": {
                            "walletAddressId": wallet,
                            "incomingAmount": {
                                "value": "1000",
                                "assetCode": "USD",
                                "assetScale": 2,
                            },
                            # Integrators send one with every mutation; it also keeps two
                            # requests signed in the same millisecond distinct.
                            "idempotencyKey": uuid.uuid4().hex,
                        }
                    },
                }
                content = json.dumps(body).encode()
                head = (
                    f"POST {parts.path} HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
                    f"signature: {signature_header(SECRET, body)}\r\n"
                    "Content-Type: application/json\r\nContent-Length: "
                ).encode()
                started = time.perf_counter()
                reply = await connection.post(head, content)
                latencies.append(time.perf_counter() - started)
                if b'"errors"' in reply:
                    failures += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 2)

    return {
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": failures,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
    }


async def _delivered(client: httpx.AsyncClient, sink: str) -> tuple[int, int]:
    """Deliveries the receiver got, and how many distinct events they were."""
    deliveries, distinct = (await client.get(sink)).text.split()
    return int(deliveries), int(distinct)


async def bench(
    database_url: str, redis_url: str, seconds: float, clients: int, processes: int
) -> None:
    await upgrade(database_url)
    sink_port, admin_port = free_port(), free_port()
    sink = f"http://127.0.0.1:{sink_port}/"
    url = f"http://127.0.0.1:{admin_port}/graphql"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"kiungo-bench-{uuid.uuid4().hex}:",
        "ADMIN_PORT": str(admin_port),
        "ADMIN_API_SECRET": SECRET,
        "WEBHOOK_URL": sink,
        "SIGNATURE_SECRET": "benchmark-webhook-secret",
        "WORKER_INTERVAL_MS": "100",
        "NODE_ENV": "production",
        "STREAM_SECRET": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "LOG_LEVEL": "warning",
    }
    sink_args = [sys.executable, "-m", "tests.benchmarks.webhook_sink", "--port", str(sink_port)]
    async with (
        process(sink_args, env, sink),
        process(
            [KIUNGO, "backend", "--processes", str(processes)],
            env,
            f"http://127.0.0.1:{admin_port}/healthz",
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        asset = await _signed(
            client,
            url,
            'mutation { createAsset(input: {code: "USD", scale: 2}) { asset { id } } }',
            None,
        )
        asset_id = asset["createAsset"]["asset"]["id"]
        wallet = await _signed(
            client,
            url,
            "mutation($input: CreateWalletAddressInput!) "
            "{ createWalletAddress(input: $input) { walletAddress { id } } }",
            {"input": {"assetId": asset_id, "address": "http://127.0.0.1:3002/bench"}},
        )
        wallet_id = wallet["createWalletAddress"]["walletAddress"]["id"]
        await _load(url, wallet_id, min(3.0, seconds / 10), clients)  # warm up
        figures = await _load(url, wallet_id, seconds, clients)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            written = await pool.fetchval("SELECT count(*) FROM webhook_events")
            delivered = (await _delivered(client, sink))[1]
            stopped = time.perf_counter()
            caught_up = None
            while time.perf_counter() - stopped < 120:
                if (await _delivered(client, sink))[1] >= written:
                    caught_up = time.perf_counter() - stopped
                    break
                await asyncio.sleep(0.05)
            deliveries, distinct = await _delivered(client, sink)
        finally:
            await pool.close()
    print(
        json.dumps({"benchmark": "admin", "figure": "createIncomingPayment", **figures}), flush=True
    )
    print(
        json.dumps(
            {
                "benchmark": "admin",
                "figure": "webhook_lag",
                "events_written": written,
                "delivered_when_load_stopped": delivered,
                "behind_when_load_stopped": written - delivered,
                "seconds_to_catch_up": None if caught_up is None else round(caught_up, 2),
                "duplicate_deliveries": deliveries - distinct,
            }
        ),
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1, help="kiungo backend --processes")
    args = parser.parse_args()
    database_server = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if not database_server:
                database_server = (await stack.enter_async_context(EmbeddedPostgres(Path(tmp)))).url
            if not redis_url:
                redis_url = (await stack.enter_async_context(EmbeddedRedis(Path(tmp)))).url
            url = await create_database(database_server)
            try:
                await bench(url, redis_url, args.seconds, args.clients, args.processes)
            finally:
                await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
