"""Open Payments throughput: how fast a wallet can be paid the Open Payments way, with the real
`kiungo auth` and `kiungo connector` processes on Postgres and Redis. Prints one JSON line.

    .venv/bin/python -m tests.benchmarks.open_payments [--seconds 30] [--clients 5]
        [--auth-processes 1] [--connector-processes 1] [--profile DIR]

One iteration is what a paying wallet does before it streams money: a non-interactive grant
request for ``incoming-payment`` ``create`` to the authorization server, then ``POST
/incoming-payments`` with the token to the resource server (the connector), both RFC 9421-signed
by the client's Ed25519 key (the client is a wallet address of the node, its key made through
the admin API). ``--clients`` closed-loop clients, each with its own keep-alive connection to
each server, iterate for ``--seconds``; the figures are iterations/s and p50/p95/p99 of one
iteration's latency (both requests). The backend runs only to set the node up (asset, wallet
addresses, key) and is stopped before the load. Uses DATABASE_URL/REDIS_URL (a scratch
database and key prefix) or embedded engines. Not a test: it never fails on speed.
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

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.benchmarks.connector import KIUNGO, _Connection, free_port, process
from tests.stores import create_database, drop_database

from kiungo.migrations.run import upgrade
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import public_key_to_jwk
from kiungo.signatures import signature_header
from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis

SECRET = "benchmark-admin-secret"


async def _admin(client: httpx.AsyncClient, url: str, query: str, variables: Any = None) -> Any:
    body = {"query": query, "variables": variables}
    response = await client.post(
        url, json=body, headers={"signature": signature_header(SECRET, body)}
    )
    data = response.json()
    if data.get("errors"):
        raise RuntimeError(data["errors"])
    return data["data"]


async def _set_up(env: dict[str, str], open_payments_url: str) -> tuple[str, str]:
    """With the backend running: a USD asset, wallet addresses alice (the client, with a key)
    and bob (paid); returns their URLs. The key's private half is in ``_KEY``."""
    admin_port = free_port()
    url = f"http://127.0.0.1:{admin_port}/graphql"
    backend_env = {**env, "ADMIN_PORT": str(admin_port)}
    async with (
        process([KIUNGO, "backend"], backend_env, f"http://127.0.0.1:{admin_port}/healthz"),
        httpx.AsyncClient(timeout=30) as client,
    ):
        asset = await _admin(
            client, url, 'mutation { createAsset(input: {code: "USD", scale: 2}) { asset { id } } }'
        )
        asset_id = asset["createAsset"]["asset"]["id"]
        urls = []
        for name in ("alice", "bob"):
            made = await _admin(
                client,
                url,
                "mutation($input: CreateWalletAddressInput!) "
                "{ createWalletAddress(input: $input) { walletAddress { id } } }",
                {"input": {"assetId": asset_id, "address": f"{open_payments_url}/{name}"}},
            )
            urls.append((made["createWalletAddress"]["walletAddress"]["id"], name))
        jwk = public_key_to_jwk(_KEY.public_key(), _KID)
        await _admin(
            client,
            url,
            "mutation($input: CreateWalletAddressKeyInput!) "
            "{ createWalletAddressKey(input: $input) { walletAddressKey { id } } }",
            {
                "input": {
                    "walletAddressId": urls[0][0],
                    "jwk": {k: jwk[k] for k in ("kid", "x", "alg", "kty", "crv")},
                }
            },
        )
    return f"{open_payments_url}/alice", f"{open_payments_url}/bob"


_KEY = Ed25519PrivateKey.generate()
_KID = "bench-key"


def _request(url: httpx.URL, body: dict[str, Any], token: str | None) -> tuple[bytes, bytes]:
    """The head (up to ``Content-Length: ``) and body of a signed POST, as _Connection sends."""
    content = json.dumps(body, separators=(",", ":")).encode()
    headers = {} if token is None else {"Authorization": f"GNAP {token}"}
    signed = sign_request(
        method="POST",
        target_uri=str(url),
        headers=headers,
        body=content,
        private_key=_KEY,
        key_id=_KID,
        created=int(time.time()),
    )
    signed.pop("Content-Length")
    lines = [f"POST {url.raw_path.decode()} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{name}: {value}" for name, value in {**headers, **signed}.items()]
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode(), content


async def _load(
    auth_url: str, resource_url: str, alice: str, bob: str, seconds: float, clients: int
) -> dict[str, Any]:
    grant_url = httpx.URL(auth_url + "/")
    create_url = httpx.URL(resource_url + "/incoming-payments")
    latencies: list[float] = []
    grants: list[float] = []
    failures: list[str] = []
    deadline = time.perf_counter() + seconds
    grant_body = {
        "client": alice,
        "access_token": {
            "access": [{"type": "incoming-payment", "actions": ["create"], "identifier": bob}]
        },
    }
    create_body = {
        "walletAddress": bob,
        "incomingAmount": {"value": "1000", "assetCode": "USD", "assetScale": 2},
    }

    async def client() -> None:
        auth = _Connection(*await asyncio.open_connection(grant_url.host, grant_url.port))
        resource = _Connection(*await asyncio.open_connection(create_url.host, create_url.port))
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                granted = json.loads(await auth.post(*_request(grant_url, grant_body, None)))
                grants.append(time.perf_counter() - started)
                token = granted.get("access_token", {}).get("value")
                if token is None:
                    failures.append(json.dumps(granted)[:200])
                    continue
                created = json.loads(await resource.post(*_request(create_url, create_body, token)))
                latencies.append(time.perf_counter() - started)
                if "methods" not in created:
                    failures.append(json.dumps(created)[:200])
        finally:
            auth.writer.close()
            resource.writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    grants.sort()

    def at(q: float, values: list[float] = latencies) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 2)

    return {
        "iterations_per_second": round(len(latencies) / elapsed, 1),
        "iterations": len(latencies),
        "errors": len(failures),
        "first_error": failures[0] if failures else None,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        # The first request's share: the grant alone.
        "grant_p50_ms": at(0.50, grants),
        "grant_p95_ms": at(0.95, grants),
    }


async def bench(
    database_url: str,
    redis_url: str,
    seconds: float,
    clients: int,
    auth_processes: int,
    connector_processes: int,
    profile: Path | None = None,
) -> None:
    await upgrade(database_url)
    connector_port, auth_port = free_port(), free_port()
    resource_url = f"http://127.0.0.1:{connector_port}"
    auth_url = f"http://127.0.0.1:{auth_port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"kiungo-bench-{uuid.uuid4().hex}:",
        "CONNECTOR_PORT": str(connector_port),
        "AUTH_PORT": str(auth_port),
        "OPEN_PAYMENTS_URL": resource_url,
        "AUTH_SERVER_GRANT_URL": auth_url,
        "ADMIN_API_SECRET": SECRET,
        "NODE_ENV": "production",
        "STREAM_SECRET": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "LOG_LEVEL": "warning",
    }
    alice, bob = await _set_up(env, resource_url)

    def command(name: str, processes: int) -> list[str]:
        if profile is None:
            return [KIUNGO, name, "--processes", str(processes)]
        # cProfile of the one process (written when it stops on SIGTERM).
        return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{name}.prof"), KIUNGO, name]

    async with (
        process(command("connector", connector_processes), env, f"{resource_url}/healthz"),
        # Any answer below 500 means it serves (a POST to /livez is a 405).
        process(command("auth", auth_processes), env, f"{auth_url}/livez"),
    ):
        await _load(auth_url, resource_url, alice, bob, min(3.0, seconds / 10), clients)  # warm
        figures = await _load(auth_url, resource_url, alice, bob, seconds, clients)
    print(
        json.dumps(
            {
                "benchmark": "open_payments",
                "figure": "grant+createIncomingPayment",
                "auth_processes": auth_processes,
                "connector_processes": connector_processes,
                **figures,
            }
        ),
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--auth-processes", type=int, default=1)
    parser.add_argument("--connector-processes", type=int, default=1)
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each server as one process under cProfile, writing auth.prof and"
        " connector.prof into this directory",
    )
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
                await bench(
                    url,
                    redis_url,
                    args.seconds,
                    args.clients,
                    args.auth_processes,
                    args.connector_processes,
                    args.profile,
                )
            finally:
                await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
