"""``kiungo backend`` as a real process: configured by the environment alone, serving signed
requests, stopping cleanly on SIGTERM, and refusing to listen beyond loopback without a secret."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from tests.backend.harness import SECRET
from tests.connector.harness import KIUNGO, free_port

from kiungo.signatures import signature_header

CREATE = "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id code } } }"


def backend_env(**values: str) -> dict[str, str]:
    """This process's environment without any setting of the node's, plus ``values``."""
    ours = {"ADMIN_API_SECRET", "NODE_ENV", "ADMIN_PORT", "DATABASE_URL", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    return {**env, **values}


def serving_env(
    database: str, redis_url: str, prefix: str, port: int, **more: str
) -> dict[str, str]:
    """The environment of a signed backend on ``port`` with the test's stores, plus ``more``."""
    return backend_env(
        DATABASE_URL=database,
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=prefix,
        ADMIN_PORT=str(port),
        ADMIN_API_SECRET=SECRET,
        **more,
    )


async def _until_healthy(
    client: httpx.AsyncClient, url: str, process: asyncio.subprocess.Process
) -> None:
    """Return once the backend at ``url`` answers /healthz; fail if it exits or never does
    (within 60 s: a loaded machine starts a process slowly)."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{url}/healthz")).status_code == 200:
                return
        if process.returncode is not None:
            _, stderr = await process.communicate()
            raise AssertionError(f"kiungo backend exited: {(stderr or b'').decode()}")
        await asyncio.sleep(0.05)
    raise AssertionError("kiungo backend did not start")


async def test_kiungo_backend_serves_and_stops_on_sigterm(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serving_env(
        migrated_database, redis_server_url, redis_prefix, port, WORKER_INTERVAL_MS="100"
    )
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "backend", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await _until_healthy(client, url, process)

            body = {"query": CREATE, "variables": {"input": {"code": "USD", "scale": 2}}}
            unsigned = await client.post(f"{url}/graphql", json=body)
            assert unsigned.status_code == 401, unsigned.text
            signed = await client.post(
                f"{url}/graphql", json=body, headers={"signature": signature_header(SECRET, body)}
            )
            assert signed.status_code == 200, signed.text
            assert signed.json()["data"]["createAsset"]["asset"]["code"] == "USD"

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert f"backend on {url}/graphql" in stdout.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_kiungo_backend_will_not_listen_publicly_without_a_secret() -> None:
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "backend", "--host", "0.0.0.0",
        env=backend_env(ADMIN_PORT=str(free_port())),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("kiungo: error: ") and "ADMIN_API_SECRET" in lines[0], lines
    assert stdout == b""


async def test_kiungo_backend_processes_answer_metrics_for_all_of_them(
    migrated_database: str, redis_server_url: str, redis_prefix: str
) -> None:
    """`kiungo backend --processes 2`: requests spread over both processes (one connection
    each), and /metrics, whichever process answers it, counts every one of them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serving_env(migrated_database, redis_server_url, redis_prefix, port)
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "backend", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=fresh) as client:
            await _until_healthy(client, url, process)
            for n in range(30):  # a signature is good once: each body its own
                body = {"query": "{ assets { edges { cursor } } }", "extensions": {"n": n}}
                headers = {"signature": signature_header(SECRET, body)}
                answer = await client.post(f"{url}/graphql", json=body, headers=headers)
                assert answer.status_code == 200, answer.text

            async def counted() -> tuple[int, int]:
                families = text_string_to_metric_families((await client.get(f"{url}/metrics")).text)
                samples = {s.name + str(s.labels): s.value for f in families for s in f.samples}
                return (
                    int(samples.get("kiungo_graphql_requests_total{'outcome': 'ok'}", 0)),
                    int(samples.get("kiungo_metrics_processes{}", 0)),
                )

            # Each process publishes what it counted every second (the second may still be
            # starting on a loaded machine).
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                if await counted() == (30, 2):
                    break
                await asyncio.sleep(0.1)
            assert [await counted() for _ in range(20)] == [(30, 2)] * 20
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def test_kiungo_backend_serves_auto_peering_from_every_process_when_enabled(
    migrated_database: str, redis_server_url: str, redis_prefix: str
) -> None:
    """ENABLE_AUTO_PEERING with `--processes 2`: each process listens on
    AUTO_PEERING_SERVER_PORT too (SO_REUSEPORT); a request there is answered (an empty one
    refused with Rafiki's error), and SIGTERM stops both servers of every process."""
    port, peering_port = free_port(), free_port()
    env = serving_env(migrated_database, redis_server_url, redis_prefix, port)
    env |= {"ENABLE_AUTO_PEERING": "true", "AUTO_PEERING_SERVER_PORT": str(peering_port)}
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "backend", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=fresh) as client:
            await _until_healthy(client, f"http://127.0.0.1:{port}", process)
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:  # the second may be starting
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"http://127.0.0.1:{peering_port}/", json={})
                    break
                await asyncio.sleep(0.05)
            for _ in range(10):
                answer = await client.post(f"http://127.0.0.1:{peering_port}/", json={})
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"]["type"] == "InvalidPeerIlpConfiguration"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
