"""A single-replica TigerBeetle server of a test's own: formatted in a temporary directory and
started on a free port, from the binary named by ``TIGERBEETLE_BIN`` (``.ci/run`` sets it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["TigerBeetleServer", "tigerbeetle_bin", "tigerbeetle_server"]


def tigerbeetle_bin() -> str | None:
    """The server binary, or None (then TigerBeetle tests skip, saying so)."""
    named = os.environ.get("TIGERBEETLE_BIN")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("tigerbeetle")


def require_tigerbeetle() -> str:
    binary = tigerbeetle_bin()
    if binary is None:
        pytest.skip(
            "no TigerBeetle server binary: set TIGERBEETLE_BIN (or put tigerbeetle on PATH)"
        )
    return binary


@dataclass
class TigerBeetleServer:
    binary: str
    data_file: Path
    port: int
    start_args: tuple[str, ...] = ()
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "start",
            f"--addresses={self.address}",
            "--development",
            *self.start_args,
            str(self.data_file),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # 60 s: on a loaded machine it has taken more than 10 s.
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"tigerbeetle exited with {self.process.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("tigerbeetle did not start listening in 60 s")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def tigerbeetle_server(directory: Path, *start_args: str) -> AsyncIterator[TigerBeetleServer]:
    """A formatted, started server whose data file is in ``directory``; killed afterwards.
    ``start_args`` go to ``tigerbeetle start`` (the benchmarks' larger requests and caches)."""
    binary = require_tigerbeetle()
    data_file = directory / "0_0.tigerbeetle"
    format_ = await asyncio.create_subprocess_exec(
        binary,
        "format",
        "--cluster=0",
        "--replica=0",
        "--replica-count=1",
        "--development",
        str(data_file),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await format_.communicate()
    if format_.returncode != 0:
        raise RuntimeError(f"tigerbeetle format failed: {err.decode(errors='replace')[-500:]}")
    server = TigerBeetleServer(binary, data_file, _free_port(), start_args)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        data_file.unlink(missing_ok=True)
