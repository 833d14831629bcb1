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
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.types import ASGIApp

from kiungo.cli.arguments import CommandError
from kiungo.config import Settings, warn_unused_rafiki_variables
from kiungo.runtime.log import configure_logging

__all__ = [
    "check_processes",
    "command_settings",
    "http_server",
    "listening_url",
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


async def serve_until_stopped(server: uvicorn.Server, listener: socket.socket | None) -> None:
    """Serve until SIGINT or SIGTERM, then return, so that the caller's cleanup runs (its
    workers finish, pools close). Our own handlers: uvicorn re-raises the signal once it has
    stopped serving, which with the default SIGTERM action would kill the process first
    (Kubernetes stops pods with SIGTERM)."""

    def stop(*_: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    await server.serve(sockets=None if listener is None else [listener])


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
) -> int:
    """Serve from ``count`` forked processes, each with a listening socket of its own on
    ``host:port`` (SO_REUSEPORT: the kernel spreads connections over them, where one shared
    socket let the first to accept take every keep-alive connection), and a directory shared by
    all of them for their metrics (:mod:`kiungo.runtime.group_metrics`; removed once they have
    exited).
    SIGINT/SIGTERM reach every child; returns 1 when one of them failed."""
    with tempfile.TemporaryDirectory(prefix="kiungo-metrics-") as group:
        return _fork_and_wait(count, host, port, serve, Path(group))


def _fork_and_wait(
    count: int,
    host: str,
    port: int,
    serve: Callable[[socket.socket, Path], Coroutine[Any, Any, None]],
    group: Path,
) -> int:
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the child serves until told to stop
            status = 0
            try:
                listener = socket.create_server(
                    (host, port),
                    family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                    backlog=2048,
                    reuse_port=True,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    run_service(serve(listener, group))
            except BaseException:
                log.exception("serving process failed")
                status = 1
            os._exit(status)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or (1 if os.waitstatus_to_exitcode(code) > 0 else 0)
    return status
