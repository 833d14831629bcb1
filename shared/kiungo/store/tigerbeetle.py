"""A single-replica TigerBeetle for ``kiungo up`` when USE_TIGERBEETLE names no cluster.

The data file is ``KIUNGO_DATA_DIR/tigerbeetle/0_0.tigerbeetle``, formatted on first use and
kept between runs; the replica listens on a free loopback port, written to ``address`` beside
it so that ``kiungo ledger check`` finds it while the node runs. The binary is the one
``TIGERBEETLE_BIN`` names, else ``tigerbeetle`` on PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from kiungo.config import ConfigError, Settings

__all__ = ["local_address", "tigerbeetle_settings"]

_WHERE = (
    "USE_TIGERBEETLE=true with no TIGERBEETLE_REPLICA_ADDRESSES runs a TigerBeetle replica, "
    "but there is no server binary: set TIGERBEETLE_BIN to one, or put `tigerbeetle` on PATH "
    "(releases: https://github.com/tigerbeetle/tigerbeetle/releases, the version of the "
    "`tigerbeetle` Python client Kiungo pins)"
)


def _directory(settings: Settings) -> Path:
    return settings.data_dir / "tigerbeetle"


def local_address(settings: Settings) -> str | None:
    """The address of the replica ``kiungo up`` runs for this data dir, if it wrote one."""
    with contextlib.suppress(OSError):
        return (_directory(settings) / "address").read_text().strip() or None
    return None


def _binary() -> str:
    named = os.environ.get("TIGERBEETLE_BIN")
    if named:
        if not os.access(named, os.X_OK):
            raise ConfigError(f"TIGERBEETLE_BIN: {named} is not an executable file")
        return named
    found = shutil.which("tigerbeetle")
    if found is None:
        raise ConfigError(_WHERE)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def tigerbeetle_settings(settings: Settings) -> AsyncIterator[Settings]:
    """``settings`` with the replica addresses to use: as given, or those of a replica run
    here for as long as the context lasts."""
    if not settings.use_tigerbeetle or settings.tigerbeetle_replica_addresses:
        yield settings
        return
    binary = _binary()
    directory = _directory(settings)
    directory.mkdir(parents=True, exist_ok=True)
    data_file = directory / "0_0.tigerbeetle"
    log_file = directory / "tigerbeetle.log"
    if not data_file.exists():
        await _run(
            binary, "format", f"--cluster={settings.tigerbeetle_cluster_id}",
            "--replica=0", "--replica-count=1", "--development", str(data_file),
            log_file=log_file,
        )  # fmt: skip
    address = f"127.0.0.1:{_free_port()}"
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            binary, "start", f"--addresses={address}", "--development", str(data_file),
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        host, port = address.split(":")
        for _ in range(400):
            if process.returncode is not None:
                raise RuntimeError(
                    f"tigerbeetle exited with status {process.returncode}; see {log_file}"
                )
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"tigerbeetle did not listen on {address} in 20 s; see {log_file}")
        (directory / "address").write_text(address + "\n")
        yield dataclasses.replace(settings, tigerbeetle_replica_addresses=address)
    finally:
        (directory / "address").unlink(missing_ok=True)
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _run(binary: str, *args: str, log_file: Path) -> None:
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(binary, *args, stdout=log, stderr=log)
        status = await process.wait()
    if status != 0:
        raise RuntimeError(f"tigerbeetle {args[0]} failed with status {status}; see {log_file}")
