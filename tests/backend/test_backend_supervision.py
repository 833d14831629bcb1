"""``--processes N`` supervision (issue 17): a serving process that dies is replaced, its
metrics stop counting, and a crash loop stops the whole service loudly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.backend.test_backend_process import _until_healthy, serving_env
from tests.connector.harness import KIUNGO, free_port


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


async def _processes_metric(client: httpx.AsyncClient, url: str) -> int:
    families = text_string_to_metric_families((await client.get(f"{url}/metrics")).text)
    for family in families:
        for sample in family.samples:
            if sample.name == "kiungo_metrics_processes":
                return int(sample.value)
    raise AssertionError("no kiungo_metrics_processes")


async def test_a_killed_serving_process_is_replaced_and_stops_counting(
    migrated_database: str, redis_server_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serving_env(migrated_database, redis_server_url, redis_prefix, port)
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            KIUNGO, "backend", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=fresh) as client:
            await _until_healthy(client, url, process)
            # Deadlines of 30 s: a loaded machine starts a process slowly.
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                if len(_children(process.pid)) == 2 and await _processes_metric(client, url) == 2:
                    break
                await asyncio.sleep(0.05)
            before = _children(process.pid)
            assert len(before) == 2
            victim = min(before)
            os.kill(victim, signal.SIGKILL)

            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                after = _children(process.pid)
                if len(after) == 2 and victim not in after:
                    break
                await asyncio.sleep(0.05)
            assert len(after) == 2 and victim not in after, after
            await _until_healthy(client, url, process)
            # The dead one's file is gone: two processes counted, never the stale third.
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                if await _processes_metric(client, url) == 2:
                    break
                await asyncio.sleep(0.1)
            assert [await _processes_metric(client, url) for _ in range(10)] == [2] * 10
        log = stderr_path.read_text()
        (replacement,) = after - before
        assert f"serving process {victim} exited (signal 9); started {replacement}" in log
        # Stopping still stops every process, the replacement included, and cleanly.
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


CRASHING = textwrap.dedent(
    """
    import logging, sys
    from kiungo.runtime.runner import run_processes

    async def serve(listener, group):
        raise RuntimeError("cannot serve")

    logging.basicConfig(level=logging.INFO)
    sys.exit(run_processes(2, "127.0.0.1", int(sys.argv[1]), serve, restarts_allowed=3))
    """
)


async def test_a_crash_loop_stops_the_service_instead_of_restarting_forever() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING, str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    log = stderr.decode()
    assert log.count("started") == 3, log
    assert "4 processes died within 60 s, stopping the service" in log
