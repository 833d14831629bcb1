"""Both services as an operator runs them, as real processes on real sockets: ``--port``, the
liveness and readiness endpoints, JSON logs and the warnings about Rafiki settings that mean
nothing here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import httpx
from tests.backend.harness import SECRET
from tests.connector.harness import KIUNGO, free_port
from tests.process_output import CapturedOutput

# Every variable of the node's own, so the test's environment decides alone.
_NODE = (
    "NODE_ENV", "DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "ADMIN_PORT", "CONNECTOR_PORT",
    "ADMIN_API_SECRET", "STREAM_SECRET", "LOG_FORMAT", "LOG_LEVEL", "ILP_ADDRESS",
)  # fmt: skip


def node_env(database: str, redis_url: str, prefix: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NODE}
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
    env: dict[str, str], url: str, *args: str, ready: str = "/healthz"
) -> AsyncIterator[CapturedOutput]:
    """`kiungo <args>` as a process, yielded (its stderr, read as it is written) once ``url``
    answers ``ready`` with 200; stopped with SIGTERM after, and required to exit 0."""
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
        assert process.returncode == 0, stderr.text()
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
