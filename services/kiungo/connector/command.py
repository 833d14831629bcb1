"""``kiungo connector``: run the connector (ILP over HTTP, SPSP, STREAM receiving)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from kiungo.config import Settings
from kiungo.connector.app import create_app, serve_node
from kiungo.connector.ilp_protocol import ilp_protocol
from kiungo.connector.node import Node
from kiungo.runtime.runner import (
    command_settings,
    listening_url,
    run_service,
    serve_command,
    serve_until_stopped,
    started,
)
from kiungo.runtime.runner import http_server as app_server
from kiungo.store.local import postgres_url, redis_url

__all__ = [
    "RunningConnector",
    "connector_server",
    "http_server",
    "run",
    "run_service",
]

log = logging.getLogger("kiungo.connector")


@dataclass(frozen=True, slots=True)
class RunningConnector:
    node: Node
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return listening_url(self.server)


def http_server(node: Node, host: str, port: int) -> uvicorn.Server:
    """The uvicorn server of a node's connector app (not yet serving)."""
    # Nothing here reads the client's address or the request's scheme and host (SPSP resolves
    # paths under OPEN_PAYMENTS_URL), and rewriting them costs every packet.
    # POST /ilp is answered by the protocol itself, everything else by the ASGI app.
    return app_server(create_app(node), host, port, proxy_headers=False, http=ilp_protocol(node))


@contextlib.asynccontextmanager
async def connector_server(
    settings: Settings, database: str, redis: str, host: str, port: int
) -> AsyncIterator[RunningConnector]:
    """A started connector listening on ``host:port`` (port 0: any free port)."""
    async with (
        serve_node(settings, database, redis) as node,
        started(http_server(node, host, port), "connector") as server,
    ):
        yield RunningConnector(node, server)


def run(args: argparse.Namespace) -> int:
    """kiungo connector (its arguments: kiungo.commands)."""
    # Through the environment, so that ILP_CONNECTOR_URL follows it.
    settings = command_settings(args.port, "CONNECTOR_PORT")
    where = f"http://{args.host}:{settings.connector_port}"
    return serve_command(
        args,
        settings,
        settings.connector_port,
        _serve,
        lambda processes: print(
            f"connector on {where}{processes}, ILP address {settings.ilp_address}", flush=True
        ),
    )


async def _serve(
    settings: Settings, host: str, listener: socket.socket | None, group: Path | None = None
) -> None:
    async with (
        postgres_url(settings) as database,
        redis_url(settings) as redis,
        serve_node(settings, database, redis) as node,
    ):
        if group is not None:  # --processes N: /metrics answers for all N
            node.spawn(node.metrics.join(group).run(), name="group-metrics")
        # Stopping lets the outgoing payments' packets finish and hands the payments back.
        await serve_until_stopped(http_server(node, host, settings.connector_port), listener)
