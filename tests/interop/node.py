"""Running the pinned JavaScript implementations (tests/js) as child processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
LINE_LIMIT = 1 << 20


def require_node() -> str:
    """The node binary, or skip: `make test` installs tests/js, so CI always has it."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules").is_dir():
        pytest.skip("node or tests/js/node_modules missing (run `make npm`)")
    return node


class NodeProcess:
    """A script that speaks JSON lines on stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def read(self, seconds: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds):
            line = await self.process.stdout.readline()
        if not line:
            stderr = b""
            if self.process.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        stderr = await self.process.stderr.read()
            raise AssertionError(f"node script ended: {stderr.decode(errors='replace')[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def command(self, line: str | dict[str, Any], seconds: float = 30.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        text = line if isinstance(line, str) else json.dumps(line)
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read(seconds)


@contextlib.asynccontextmanager
async def node_script(script: str, *args: str) -> AsyncIterator[NodeProcess]:
    node = require_node()
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        *args,
        cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    try:
        yield NodeProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def run_script(script: str, *args: str, seconds: float = 60.0) -> tuple[int, dict[str, Any]]:
    """Run a one-shot script; return its exit status and its one JSON line."""
    node = require_node()
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        *args,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    try:
        async with asyncio.timeout(seconds):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(f"{script} printed nothing: {stderr.decode(errors='replace')[-2000:]}")
    assert process.returncode is not None
    return process.returncode, json.loads(lines[-1])
