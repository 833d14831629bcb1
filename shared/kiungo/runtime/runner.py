"""Running a service's main coroutine, in one process or several sharing a port (both services
use it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.types import ASGIApp

from kiungo.cli.arguments import CommandError
from kiungo.config import Settings, warn_unused_rafiki_variables
from kiungo.runtime.gc_tuning import tune_gc
from kiungo.runtime.log import configure_logging

__all__ = [
    "RESTARTS_ALLOWED",
    "RESTART_WINDOW_SECONDS",
    "check_processes",
    "command_settings",
    "http_server",
    "listening_url",
    "reuse_port_listener",
    "run_processes",
    "run_service",
    "serve_command",
    "serve_until_stopped",
    "started",
]

log = logging.getLogger("kiungo.runtime.runner")


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop: it about doubles what one process serves."""
    uvloop.run(main)


def http_server(app: ASGIApp, host: str, port: int, **options: Any) -> uvicorn.Server:
    """The uvicorn server of a service's app (not yet serving), ``options`` added to its config.
    uvicorn's records go through kiungo.runtime.log's handler (JSON with LOG_FORMAT=json), at
    LOG_LEVEL, rather than through handlers of its own that print plain text."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=None,
        lifespan="off",
        access_log=False,
        **options,
    )
    return uvicorn.Server(config)


@contextlib.asynccontextmanager
async def started(server: uvicorn.Server, what: str) -> AsyncIterator[uvicorn.Server]:
    """``server`` serving (in a task) once it listens, until the block ends; if it stops while
    starting, its error (or one saying the ``what`` stopped)."""
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the {what} stopped while starting")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def listening_url(server: uvicorn.Server) -> str:
    """``http://host:port`` of a started server's first socket."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"


async def serve_until_stopped(
    server: uvicorn.Server,
    listener: socket.socket | None,
    *others: tuple[uvicorn.Server, socket.socket | None],
) -> None:
    """Serve until SIGINT or SIGTERM, then return, so that the caller's cleanup runs (its
    workers finish, pools close). Our own handlers: uvicorn re-raises the signal once it has
    stopped serving, which with the default SIGTERM action would kill the process first
    (Kubernetes stops pods with SIGTERM). ``others`` (servers of the same process on other
    ports, each with its listener or None) serve and stop alongside. The garbage collector is
    tuned for serving first (kiungo.runtime.gc_tuning)."""
    servers = [(server, listener), *others]

    def stop(*_: object) -> None:
        for each, _listener in servers:
            each.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    tune_gc()
    await asyncio.gather(
        *(each.serve(sockets=None if sock is None else [sock]) for each, sock in servers)
    )


def check_processes(count: int, settings: Settings) -> None:
    """Refuse a ``--processes`` count the node cannot run: below 1, or several processes on
    embedded engines (each would start its own Postgres and Redis)."""
    if count < 1:
        raise CommandError("--processes must be at least 1")
    if count > 1 and (settings.database_url is None or settings.redis_url is None):
        raise CommandError(
            "--processes above 1 needs DATABASE_URL and REDIS_URL: every process must use the "
            "same Postgres and Redis, not embedded ones of its own"
        )


RESTARTS_ALLOWED = 5
"""How many serving processes may die within :data:`RESTART_WINDOW_SECONDS` before the whole
service stops instead of restarting them (a child that dies at once would otherwise be
restarted forever, hiding the fault)."""
RESTART_WINDOW_SECONDS = 60.0


def command_settings(port: int | None, port_variable: str) -> Settings:
    """A serving command's settings: the environment's, with ``--port`` (when given) as
    ``port_variable`` (so that what follows that variable follows it); logging configured and
    Rafiki's variables that do nothing here warned of."""
    environ = dict(os.environ)
    if port is not None:
        environ[port_variable] = str(port)
    settings = Settings.from_env(environ)
    configure_logging(settings.log_level, settings.log_format)
    warn_unused_rafiki_variables(environ)
    return settings


def serve_command(
    args: argparse.Namespace,
    settings: Settings,
    port: int,
    serve: Callable[[Settings, str, socket.socket | None, Path | None], Coroutine[Any, Any, None]],
    announce: Callable[[str], None],
) -> int:
    """Run a serving command (``args``: its --host and --processes): ``serve`` in this process
    (no listener, no metrics group) or in --processes of them sharing ``host:port``
    (:func:`run_processes`), after ``announce`` of what is served (given "" or
    " (N processes)"). Its exit status."""
    check_processes(args.processes, settings)
    if args.processes == 1:
        announce("")
        with contextlib.suppress(KeyboardInterrupt):
            run_service(serve(settings, args.host, None, None))
        return 0
    announce(f" ({args.processes} processes)")
    return run_processes(
        args.processes,
        args.host,
        port,
        lambda listener, group: serve(settings, args.host, listener, group),
    )


def run_processes(
    count: int,
    host: str,
    port: int,
    serve: Callable[[socket.socket, Path], Coroutine[Any, Any, None]],
    *,
    restarts_allowed: int = RESTARTS_ALLOWED,
    restart_window: float = RESTART_WINDOW_SECONDS,
) -> int:
    """Serve from ``count`` forked processes, each with a listening socket of its own on
    ``host:port`` (SO_REUSEPORT: the kernel spreads connections over them, where one shared
    socket let the first to accept take every keep-alive connection), and a directory shared by
    all of them for their metrics (:mod:`kiungo.runtime.group_metrics`; removed once they have
    exited).

    A process that dies while the service runs is replaced by a new one (its metrics file is
    removed, so its gauges stop counting), loudly in the log; when more than
    ``restarts_allowed`` die within ``restart_window`` seconds, the service stops every process
    and returns 1 rather than restart a crash loop. SIGINT/SIGTERM reach every child, and then
    none is restarted; returns 1 when one of them failed."""
    with tempfile.TemporaryDirectory(prefix="kiungo-metrics-") as group:
        return _Supervisor(count, host, port, serve, Path(group)).run(
            restarts_allowed, restart_window
        )


def reuse_port_listener(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may listen on too
    (SO_REUSEPORT: the kernel spreads connections over them)."""
    return socket.create_server(
        (host, port),
        family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        backlog=2048,
        reuse_port=True,
    )


class _Supervisor:
    """The parent of ``--processes N``: forks the children, restarts the ones that die."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        serve: Callable[[socket.socket, Path], Coroutine[Any, Any, None]],
        group: Path,
    ) -> None:
        self.count, self.host, self.port, self.serve, self.group = count, host, port, serve, group
        self.children: set[int] = set()
        self.stopping = False

    def _fork(self) -> int:
        pid = os.fork()
        if pid == 0:  # the child serves until told to stop
            status = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                listener = reuse_port_listener(self.host, self.port)
                with contextlib.suppress(KeyboardInterrupt):
                    run_service(self.serve(listener, self.group))
            except BaseException:
                log.exception("serving process failed")
                status = 1
            os._exit(status)
        self.children.add(pid)
        return pid

    def _stop(self, signum: int) -> None:
        self.stopping = True
        for child in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    def run(self, restarts_allowed: int, restart_window: float) -> int:
        for _ in range(self.count):
            self._fork()
        signal.signal(signal.SIGTERM, lambda signum, _frame: self._stop(signum))
        signal.signal(signal.SIGINT, lambda signum, _frame: self._stop(signum))
        status = 0
        deaths: list[float] = []
        while self.children:
            pid, code = os.wait()
            if pid not in self.children:
                continue
            self.children.discard(pid)
            exit_code = os.waitstatus_to_exitcode(code)
            if self.stopping:
                status = status or (1 if exit_code > 0 else 0)
                continue
            # Died on its own: its last metrics must not keep counting in the merged answer.
            with contextlib.suppress(FileNotFoundError):
                (self.group / f"{pid}.prom").unlink()
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < restart_window] + [now]
            how = f"signal {-exit_code}" if exit_code < 0 else f"status {exit_code}"
            if len(deaths) > restarts_allowed:
                log.error(
                    "serving process %d exited (%s): %d processes died within %.0f s, "
                    "stopping the service",
                    pid, how, len(deaths), restart_window,
                )  # fmt: skip
                self._stop(signal.SIGTERM)
                status = 1
                continue
            replacement = self._fork()
            log.error(
                "serving process %d exited (%s); started %d in its place", pid, how, replacement
            )
        return status
