"""``kiungo up`` migrates and serves the connector, with the stores it is given."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

KIUNGO = str(Path(sys.executable).parent / "kiungo")


async def test_kiungo_up_migrates_serves_and_stops_on_sigint(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    with socket.socket() as s, socket.socket() as t:
        s.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        port, admin_port = s.getsockname()[1], t.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "CONNECTOR_PORT": str(port),
        "ADMIN_PORT": str(admin_port),
        "ILP_ADDRESS": "test.up",
    }
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "up", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        banner = b""
        async with asyncio.timeout(60):
            while b"Ctrl-C" not in banner:
                line = await process.stdout.readline()
                assert line, (await process.stderr.read()).decode() if process.stderr else ""
                banner += line
        assert b"test.up" in banner
        assert f"http://127.0.0.1:{admin_port}/graphql".encode() in banner
        async with httpx.AsyncClient() as client:
            for service_port in (port, admin_port):  # the connector, then the backend
                for _ in range(100):
                    with contextlib.suppress(httpx.HTTPError):
                        health = await client.get(f"http://127.0.0.1:{service_port}/healthz")
                        if health.status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                assert health.json() == {"status": "ok"}
            # The admin API answers (no secret set: loopback only, unsigned).
            answer = await client.post(
                f"http://127.0.0.1:{admin_port}/graphql",
                json={"query": "{ assets { edges { cursor } } }"},
            )
            assert answer.json() == {"data": {"assets": {"edges": []}}}
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await process.wait()
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_malformed_setting_stops_the_start_with_one_line() -> None:
    for command, variable, value in (
        ("connector", "CONNECTOR_PORT", "abc"),
        ("up", "NODE_ENV", "production"),  # production without STREAM_SECRET
        ("connector", "ILP_ADDRESS", "not an address"),
    ):
        env = {**os.environ, variable: value}
        env.pop("STREAM_SECRET", None)
        process = await asyncio.create_subprocess_exec(
            KIUNGO, command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
        assert process.returncode == 2
        lines = stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("kiungo: error: ")
        assert "Traceback" not in stderr.decode()
