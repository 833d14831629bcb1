"""Both services as an operator runs them, as real processes on real sockets: ``--port``, the
liveness and readiness endpoints, JSON logs and the warnings about Rafiki settings that mean
nothing here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from tests.backend.harness import SECRET
from tests.connector.harness import KIUNGO, free_port
from tests.faults.test_store_restarts import StoppableRedis
from tests.process_output import CapturedOutput
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.config import RAFIKI_VARIABLES

# Every variable of the node's own, so the test's environment decides alone.
_NODE = (
    "NODE_ENV", "DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "ADMIN_PORT", "CONNECTOR_PORT",
    "ADMIN_API_SECRET", "STREAM_SECRET", "LOG_FORMAT", "LOG_LEVEL", "ILP_ADDRESS",
)  # fmt: skip


def node_env(database: str, redis_url: str, prefix: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NODE and k not in RAFIKI_VARIABLES}
    return {
        **env,
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "ADMIN_API_SECRET": SECRET,
        "STREAM_SECRET": base64.b64encode(os.urandom(32)).decode(),
        **more,
    }


@contextlib.asynccontextmanager
async def service(
    env: dict[str, str], url: str, *args: str, ready: str = "/healthz", clean_exit: bool = True
) -> AsyncIterator[CapturedOutput]:
    """`kiungo <args>` as a process, yielded (its stderr, read as it is written) once ``url``
    answers ``ready`` with 200; stopped with SIGTERM after, and required to exit 0 unless
    ``clean_exit`` is false."""
    process = await asyncio.create_subprocess_exec(
        KIUNGO, *args, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    stderr = CapturedOutput(process.stderr)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                if process.returncode is not None:
                    raise AssertionError(f"kiungo {' '.join(args)} exited: {stderr.text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}{ready}")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"kiungo {' '.join(args)} did not start: {stderr.text()}")
        yield stderr
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()
        await stderr.finish()
        assert process.returncode == 0 or not clean_exit, stderr.text()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        await stderr.finish()


async def test_port_option_overrides_the_environment(
    migrated_database: str, redis_server_url: str, redis_prefix: str
) -> None:
    """--port wins over CONNECTOR_PORT and ADMIN_PORT: each service answers on the port given on
    its command line, and nothing listens on the one its environment names."""
    env_ports = {"CONNECTOR_PORT": str(free_port()), "ADMIN_PORT": str(free_port())}
    env = node_env(migrated_database, redis_server_url, redis_prefix, **env_ports)
    for command, variable in (("connector", "CONNECTOR_PORT"), ("backend", "ADMIN_PORT")):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        async with (
            service(env, url, command, "--port", str(port)),
            httpx.AsyncClient() as client,
        ):
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
            try:
                await client.get(f"http://127.0.0.1:{env_ports[variable]}/healthz")
            except httpx.ConnectError:
                pass
            else:
                raise AssertionError(f"kiungo {command} also listens on {variable}")


@contextlib.asynccontextmanager
async def own_redis() -> AsyncIterator[StoppableRedis]:
    """A redis-server only this test uses (so that it may stop it), on a free port."""
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kiungo-ops-"))
    redis = StoppableRedis(directory, free_port())
    try:
        await redis.start()
        yield redis
    finally:
        await redis.stop()
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


async def test_livez_and_readyz_apart_on_both_services(
    migrated_database: str, redis_prefix: str
) -> None:
    """Both services answer /livez and /readyz with 200 while their stores answer. Once their
    Redis is gone, /readyz answers 503 naming Redis (and only Redis) on both, while /livez still
    answers 200: the process serves, and restarting it would not bring Redis back."""
    ports = {"connector": free_port(), "backend": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    async with own_redis() as redis:
        env = node_env(
            migrated_database, redis.url, redis_prefix,
            CONNECTOR_PORT=str(ports["connector"]), ADMIN_PORT=str(ports["backend"]),
        )  # fmt: skip
        async with (
            service(env, urls["connector"], "connector", ready="/readyz", clean_exit=False),
            service(env, urls["backend"], "backend", ready="/readyz", clean_exit=False),
            httpx.AsyncClient(timeout=10) as client,
        ):
            for url in urls.values():
                for path in ("/livez", "/readyz", "/healthz"):
                    response = await client.get(f"{url}{path}")
                    assert response.status_code == 200, (url, path, response.text)
                    assert response.json() == {"status": "ok"}

            await redis.stop()

            for name, url in urls.items():
                ready = await client.get(f"{url}/readyz")
                assert ready.status_code == 503, (name, ready.text)
                body = ready.json()
                assert body["status"] == "unavailable"
                assert set(body["reason"]) == {"redis"}, (name, body)
                live = await client.get(f"{url}/livez")
                assert live.status_code == 200, (name, live.text)
                assert live.json() == {"status": "ok"}


async def test_readyz_asks_tigerbeetle_when_the_ledger_lives_there(
    migrated_database: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """With USE_TIGERBEETLE=true, /readyz on both services answers 503 naming the ledger (and
    only the ledger) once the cluster is gone, and 200 again once it is back; /livez stays 200."""
    ports = {"connector": free_port(), "backend": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    async with tigerbeetle_server(tmp_path) as cluster:
        env = node_env(
            migrated_database, redis_server_url, redis_prefix,
            CONNECTOR_PORT=str(ports["connector"]), ADMIN_PORT=str(ports["backend"]),
            USE_TIGERBEETLE="true", TIGERBEETLE_REPLICA_ADDRESSES=cluster.address,
        )  # fmt: skip
        async with (
            service(env, urls["connector"], "connector", ready="/readyz", clean_exit=False),
            service(env, urls["backend"], "backend", ready="/readyz", clean_exit=False),
            httpx.AsyncClient(timeout=30) as client,
        ):
            await cluster.stop()
            for name, url in urls.items():
                ready = await client.get(f"{url}/readyz")
                assert ready.status_code == 503, (name, ready.text)
                assert set(ready.json()["reason"]) == {"ledger"}, (name, ready.text)
                assert (await client.get(f"{url}/livez")).status_code == 200
            await cluster.start()
            for name, url in urls.items():
                for _ in range(120):  # the client reconnects by itself, within seconds
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.25)
                else:
                    raise AssertionError(f"{name} not ready after the cluster came back")


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as a JSON object; fails naming the first line that is not one."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{text}") from None
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


async def test_json_logs_carry_uvicorn_records_too(
    migrated_database: str, redis_server_url: str, redis_prefix: str
) -> None:
    """With LOG_FORMAT=json every line either service writes to stderr is a JSON object,
    uvicorn's own records included: its start-up line, and its warning about a request that is
    not HTTP."""
    for command, variable in (("connector", "CONNECTOR_PORT"), ("backend", "ADMIN_PORT")):
        port = free_port()
        env = node_env(
            migrated_database, redis_server_url, redis_prefix,
            LOG_FORMAT="json", LOG_LEVEL="info", **{variable: str(port)},
        )  # fmt: skip
        async with service(env, f"http://127.0.0.1:{port}", command) as stderr:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(10):
                assert b" 400 " in await reader.readline()
            writer.close()
        entries = json_lines(stderr.text(1 << 20))
        uvicorn = [e for e in entries if str(e["logger"]).startswith("uvicorn")]
        assert any("Uvicorn running on" in str(e["msg"]) for e in uvicorn), entries
        assert any("Invalid HTTP request" in str(e["msg"]) for e in uvicorn), entries


async def test_json_logs_carry_the_traceback_that_stops_a_service(
    database_url: str, redis_server_url: str
) -> None:
    """A connector on a database that was never migrated stops at start with status 1, and says
    why in JSON lines: the traceback is a field of a record, not lines of text."""
    env = node_env(
        database_url, redis_server_url, "ops:", LOG_FORMAT="json", CONNECTOR_PORT=str(free_port())
    )
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "connector", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 1
    entries = json_lines(stderr.decode())
    assert any("UndefinedTableError" in str(e.get("exc", "")) for e in entries), entries


async def test_unused_rafiki_variables_are_warned_at_start(
    migrated_database: str, redis_server_url: str, redis_prefix: str
) -> None:
    """A connector started from a Rafiki environment logs one warning per Rafiki variable that
    means nothing here, and none for the Rafiki names it implements."""
    port = free_port()
    env = node_env(
        migrated_database, redis_server_url, redis_prefix, LOG_FORMAT="json",
        CONNECTOR_PORT=str(port), REDIS_TLS_CA_FILE_PATH="/ca.pem", COOKIE_KEY="secret", KEY_ID="",
        WEBHOOK_TIMEOUT="2000", SLIPPAGE="0.01",
    )  # fmt: skip
    async with service(env, f"http://127.0.0.1:{port}", "connector") as stderr:
        pass
    entries = json_lines(stderr.text(1 << 20))
    warned = [str(e["variable"]) for e in entries if e["logger"] == "kiungo.config"]
    assert sorted(warned) == ["COOKIE_KEY", "REDIS_TLS_CA_FILE_PATH"]
