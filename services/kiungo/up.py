"""``kiungo up``: the whole node with one command and no services installed.

Starts Postgres and Redis (the machine's, from DATABASE_URL/REDIS_URL, or embedded ones from
the pip wheels in KIUNGO_DATA_DIR), applies the migrations, and runs the connector, printing
where everything is. Ctrl-C (or SIGTERM) stops it all.
"""

from __future__ import annotations

import argparse
import contextlib

from kiungo.config import Settings
from kiungo.connector.app import serve_node
from kiungo.connector.command import http_server, run_service
from kiungo.log import configure_logging
from kiungo.migrations.run import upgrade
from kiungo.store.local import postgres_url, redis_url

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole node, with embedded Postgres and Redis when none are configured",
        description=__doc__,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    parser.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)

    async def run() -> None:
        async with postgres_url(settings) as database, redis_url(settings) as redis:
            await upgrade(database)
            async with serve_node(settings, database, redis) as node:
                connector = http_server(node, args.host, settings.connector_port)
                print(
                    "Kiungo is up\n"
                    f"  ILP address  {settings.ilp_address}\n"
                    f"  connector    http://{args.host}:{settings.connector_port}"
                    "  (POST /ilp, SPSP, /healthz, /metrics)\n"
                    f"  postgres     {'DATABASE_URL' if settings.database_url else database}\n"
                    f"  redis        {'REDIS_URL' if settings.redis_url else redis}\n"
                    "Ctrl-C stops everything.",
                    flush=True,
                )
                await connector.serve()

    with contextlib.suppress(KeyboardInterrupt):
        run_service(run())
    return 0
