"""``kiungo backend`` (the admin API and its workers) and ``kiungo schema`` (its SDL)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path

from kiungo.backend.auto_peering import auto_peering_app
from kiungo.backend.schema import build_schema
from kiungo.backend.service import serve_backend
from kiungo.cli.arguments import CommandError
from kiungo.config import Settings
from kiungo.runtime.runner import (
    command_settings,
    http_server,
    reuse_port_listener,
    serve_command,
    serve_until_stopped,
)
from kiungo.store.local import postgres_url, redis_url

__all__ = ["check_bind", "print_schema", "run", "schema_sdl"]

log = logging.getLogger("kiungo.backend")


def schema_sdl() -> str:
    return str(build_schema()).rstrip("\n") + "\n"


def print_schema(args: argparse.Namespace) -> int:
    """kiungo schema (its arguments: kiungo.commands)."""
    sdl = schema_sdl()
    if args.check is not None:
        current = args.check.read_text() if args.check.exists() else ""
        if current != sdl:
            print(
                f"{args.check} is out of date: run kiungo schema -o {args.check}", file=sys.stderr
            )
            return 1
        return 0
    if args.output is not None:
        args.output.write_text(sdl)
    else:
        sys.stdout.write(sdl)
    return 0


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve beyond loopback without request signatures."""
    if settings.admin_api_secret is not None:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CommandError(
            f"ADMIN_API_SECRET is not set, so the admin API may only listen on loopback, not {host}"
        )


def run(args: argparse.Namespace) -> int:
    """kiungo backend (its arguments: kiungo.commands)."""
    settings = command_settings(args.port, "ADMIN_PORT")
    check_bind(settings, args.host)
    url = f"http://{args.host}:{settings.admin_port}/graphql"
    return serve_command(
        args,
        settings,
        settings.admin_port,
        _serve,
        lambda processes: _announce(settings, args.host, f"{url}{processes}"),
    )


def _announce(settings: Settings, host: str, where: str) -> None:
    print(f"backend on {where}", flush=True)
    if settings.enable_auto_peering:
        print(
            f"auto-peering on http://{host}:{settings.auto_peering_server_port}/ "
            "(ENABLE_AUTO_PEERING: any node reaching it becomes a peer)",
            flush=True,
        )
    if settings.admin_api_secret is None:
        print(
            "ADMIN_API_SECRET is not set: requests are not authenticated, so the API listens "
            "on loopback only",
            flush=True,
        )


async def _serve(
    settings: Settings, host: str, listener: socket.socket | None, group: Path | None = None
) -> None:
    async with (
        postgres_url(settings) as database,
        redis_url(settings) as redis,
        serve_backend(settings, database, redis, group=group) as (backend, app),
    ):
        admin = http_server(app, host, settings.admin_port)
        if not settings.enable_auto_peering:
            await serve_until_stopped(admin, listener)
            return
        port = settings.auto_peering_server_port
        # With --processes N, every process listens on the port too (SO_REUSEPORT), as on
        # ADMIN_PORT.
        peering_listener = None if listener is None else reuse_port_listener(host, port)
        peering = http_server(auto_peering_app(backend), host, port)
        await serve_until_stopped(admin, listener, (peering, peering_listener))
