"""``kiungo auth``: the GNAP authorization server (:mod:`kiungo.auth.app`) on AUTH_PORT."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from pathlib import Path

import asyncpg
import httpx
import uvicorn

from kiungo.auth.app import auth_app
from kiungo.config import Settings, warn_unused_rafiki_variables
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.runtime.db import create_pool
from kiungo.runtime.log import configure_logging
from kiungo.runtime.receiver_fetch import receiver_client
from kiungo.runtime.runner import check_processes, run_processes, run_service, serve_until_stopped
from kiungo.store.local import postgres_url

__all__ = ["client_keys", "run"]


def run(args: argparse.Namespace) -> int:
    """kiungo auth (its arguments: kiungo.commands)."""
    environ = dict(os.environ)
    if args.port is not None:
        environ["AUTH_PORT"] = str(args.port)
    settings = Settings.from_env(environ)
    configure_logging(settings.log_level, settings.log_format)
    warn_unused_rafiki_variables(environ)
    check_processes(args.processes, settings)
    where = f"http://{args.host}:{settings.auth_port} for {settings.auth_server_grant_url}"
    if args.processes == 1:
        print(f"auth server on {where}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            run_service(_serve(settings, args.host, None))
        return 0
    print(f"auth server on {where} ({args.processes} processes)", flush=True)
    return run_processes(
        args.processes,
        args.host,
        settings.auth_port,
        lambda listener, group: _serve(settings, args.host, listener),
    )


async def _serve(
    settings: Settings, host: str, listener: socket.socket | None, _group: Path | None = None
) -> None:
    async with postgres_url(settings) as database:
        pool = await create_pool(database)
        http = receiver_client(refuse_private=settings.refuse_private_receivers)
        try:
            app = auth_app(
                pool,
                settings.auth_server_grant_url,
                client_keys=client_keys(settings, pool, http),
                expires_in=settings.access_token_expiry_seconds,
            )
            config = uvicorn.Config(
                app,
                host=host,
                port=settings.auth_port,
                log_config=None,
                log_level=None,
                lifespan="off",
                access_log=False,
            )
            await serve_until_stopped(uvicorn.Server(config), listener)
        finally:
            await http.aclose()
            await pool.close()


def client_keys(settings: Settings, pool: asyncpg.Pool, http: httpx.AsyncClient) -> ClientKeys:
    """Clients' keys as the settings bound reading them: ``http`` is a
    :func:`~kiungo.runtime.receiver_fetch.receiver_client` (REFUSE_PRIVATE_RECEIVERS), each read
    within RECEIVER_FETCH_TIMEOUT_MS."""
    return ClientKeys(pool, http, max_seconds=settings.receiver_fetch_timeout_ms / 1000)
