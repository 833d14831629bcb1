"""``kiungo up`` migrates and serves the connector, with the stores it is given."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx
from tests.tigerbeetle_server import require_tigerbeetle

KIUNGO = str(Path(sys.executable).parent / "kiungo")


async def test_kiungo_up_migrates_serves_and_stops_on_sigint(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    with socket.socket() as s, socket.socket() as t, socket.socket() as u, socket.socket() as v:
        s.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        u.bind(("127.0.0.1", 0))
        v.bind(("127.0.0.1", 0))
        port, admin_port = s.getsockname()[1], t.getsockname()[1]
        auth_port, peering_port = u.getsockname()[1], v.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "CONNECTOR_PORT": str(port),
        "ADMIN_PORT": str(admin_port),
        "AUTH_PORT": str(auth_port),
        "ILP_ADDRESS": "test.up",
        "ENABLE_AUTO_PEERING": "true",
        "AUTO_PEERING_SERVER_PORT": str(peering_port),
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
            # The authorization server answers: an unsigned grant request is refused.
            grant = await client.post(f"http://127.0.0.1:{auth_port}/", json={})
            assert grant.status_code == 400
            assert grant.json()["error"]["code"] == "invalid_client"
            for probe in ("livez", "readyz"):
                answer = await client.get(f"http://127.0.0.1:{auth_port}/{probe}")
                assert answer.json() == {"status": "ok"}, probe
            # The auto-peering endpoint answers (ENABLE_AUTO_PEERING): an empty request is
            # refused with Rafiki's error.
            assert f"http://127.0.0.1:{peering_port}/".encode() in banner
            peering = await client.post(f"http://127.0.0.1:{peering_port}/", json={})
            assert peering.status_code == 400
            assert peering.json()["error"]["type"] == "InvalidPeerIlpConfiguration"
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await process.wait()
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_kiungo_up_with_tigerbeetle_runs_a_replica_in_the_data_dir_and_keeps_money_there(
    database_url: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    binary = require_tigerbeetle()
    with socket.socket() as s, socket.socket() as t, socket.socket() as u:
        s.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        u.bind(("127.0.0.1", 0))
        port, admin_port = s.getsockname()[1], t.getsockname()[1]
        auth_port = u.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "CONNECTOR_PORT": str(port),
        "ADMIN_PORT": str(admin_port),
        "AUTH_PORT": str(auth_port),
        "KIUNGO_DATA_DIR": str(tmp_path),
        "USE_TIGERBEETLE": "true",
        "TIGERBEETLE_BIN": binary,
    }
    env.pop("TIGERBEETLE_REPLICA_ADDRESSES", None)
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
        assert b"ledger       TigerBeetle cluster 0 at 127.0.0.1:" in banner
        assert (tmp_path / "tigerbeetle" / "0_0.tigerbeetle").exists()
        graphql = f"http://127.0.0.1:{admin_port}/graphql"
        async with httpx.AsyncClient() as client:
            created = await client.post(
                graphql,
                json={"query": 'mutation { createAsset(input: {code: "USD", scale: 2}) '
                      "{ asset { id } } }"},
            )  # fmt: skip
            asset = created.json()["data"]["createAsset"]["asset"]["id"]
            deposited = await client.post(
                graphql,
                json={
                    "query": "mutation($a: String!, $id: String!) { depositAssetLiquidity("
                    'input: {assetId: $a, amount: "500", id: $id, idempotencyKey: $id}) '
                    "{ success } }",
                    "variables": {"a": asset, "id": str(uuid.uuid4())},
                },
            )
            assert deposited.json() == {"data": {"depositAssetLiquidity": {"success": True}}}
            liquidity = await client.post(
                graphql,
                json={"query": "query($a: String!) { asset(id: $a) { liquidity } }",
                      "variables": {"a": asset}},
            )  # fmt: skip
            assert liquidity.json() == {"data": {"asset": {"liquidity": "500"}}}
        # The money is in TigerBeetle, not in Postgres's balance columns, and the replica's
        # address is where `kiungo ledger check` finds it while the node runs.
        check = await asyncio.create_subprocess_exec(
            KIUNGO, "ledger", "check", env=env, stdout=asyncio.subprocess.PIPE
        )
        output, _ = await check.communicate()
        assert check.returncode == 0, output
        assert b"ok   tigerbeetle_accounts" in output
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await process.wait()
        assert process.returncode == 0
        assert not (tmp_path / "tigerbeetle" / "address").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_kiungo_up_with_tigerbeetle_and_no_binary_says_where_to_get_one(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "USE_TIGERBEETLE": "true",
        "KIUNGO_DATA_DIR": str(tmp_path),
        "PATH": str(tmp_path),
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none",
    }
    env.pop("TIGERBEETLE_BIN", None)
    env.pop("TIGERBEETLE_REPLICA_ADDRESSES", None)
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "up", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr
    assert b"TIGERBEETLE_BIN" in stderr
    assert b"github.com/tigerbeetle/tigerbeetle/releases" in stderr


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
