"""``kiungo auth``: the GNAP authorization server (:mod:`kiungo.auth.app`) on AUTH_PORT."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import asyncpg
import httpx
from starlette.applications import Starlette

from kiungo.auth.app import auth_app
from kiungo.config import Settings
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.runtime.db import create_pool
from kiungo.runtime.receiver_fetch import receiver_client
from kiungo.runtime.runner import (
    command_settings,
    http_server,
    serve_command,
    serve_until_stopped,
)
from kiungo.store.local import postgres_url

__all__ = ["client_keys", "node_auth_app", "run"]


def run(args: argparse.Namespace) -> int:
    """kiungo auth (its arguments: kiungo.commands)."""
    settings = command_settings(args.port, "AUTH_PORT")
    where = f"http://{args.host}:{settings.auth_port} for {settings.auth_server_grant_url}"
    return serve_command(
        args,
        settings,
        settings.auth_port,
        _serve,
        lambda processes: print(f"auth server on {where}{processes}", flush=True),
    )


async def _serve(
    settings: Settings, host: str, listener: socket.socket | None, _group: Path | None = None
) -> None:
    async with postgres_url(settings) as database:
        pool = await create_pool(database)
        http = receiver_client(refuse_private=settings.refuse_private_receivers)
        try:
            app = node_auth_app(settings, pool, http)
            await serve_until_stopped(http_server(app, host, settings.auth_port), listener)
        finally:
            await http.aclose()
            await pool.close()


def node_auth_app(
    settings: Settings, pool: asyncpg.Pool, http: httpx.AsyncClient, *, consent_page: bool = False
) -> Starlette:
    """The authorization server of the node ``settings`` configure (its grants in ``pool``,
    clients' keys read with ``http``); with ``consent_page`` and no IDENTITY_SERVER_URL, its
    development consent page stands in for the identity provider (``kiungo up``, ``kiungo
    demo``; never ``kiungo auth``)."""
    return auth_app(
        pool,
        settings.auth_server_grant_url,
        client_keys=client_keys(settings, pool, http),
        expires_in=settings.access_token_expiry_seconds,
        identity_server_url=settings.identity_server_url,
        identity_server_secret=settings.identity_server_secret,
        interaction_expires_in=settings.interaction_expiry_seconds,
        consent_page=consent_page and settings.identity_server_url is None,
    )


def client_keys(settings: Settings, pool: asyncpg.Pool, http: httpx.AsyncClient) -> ClientKeys:
    """Clients' keys as the settings bound reading them: ``http`` is a
    :func:`~kiungo.runtime.receiver_fetch.receiver_client` (REFUSE_PRIVATE_RECEIVERS), each read
    within RECEIVER_FETCH_TIMEOUT_MS."""
    return ClientKeys(pool, http, max_seconds=settings.receiver_fetch_timeout_ms / 1000)
