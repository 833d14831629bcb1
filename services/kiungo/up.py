"""``kiungo up``: the whole node with one command and no services installed.

Starts Postgres and Redis (the machine's, from DATABASE_URL/REDIS_URL, or embedded ones from
the pip wheels in KIUNGO_DATA_DIR), applies the migrations, and runs the connector, the
backend (the admin API and its workers) and the authorization server (GNAP, on AUTH_PORT;
without IDENTITY_SERVER_URL, its development consent page asks for consent to interactive
grants), printing where everything is. Ctrl-C (or SIGTERM) stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from kiungo.auth.command import node_auth_app
from kiungo.backend.auto_peering import auto_peering_app
from kiungo.backend.command import check_bind
from kiungo.backend.service import serve_backend
from kiungo.config import Settings, warn_unused_rafiki_variables
from kiungo.connector.app import serve_node
from kiungo.connector.command import http_server
from kiungo.migrations.run import upgrade
from kiungo.runtime.log import configure_logging
from kiungo.runtime.runner import http_server as backend_http_server
from kiungo.runtime.runner import run_service
from kiungo.store.local import postgres_url, redis_url
from kiungo.store.tigerbeetle import tigerbeetle_settings

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """kiungo up (its arguments: kiungo.commands)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    warn_unused_rafiki_variables()
    check_bind(settings, args.host)

    async def run(configured: Settings) -> None:
        async with (
            postgres_url(configured) as database,
            redis_url(configured) as redis,
            # With USE_TIGERBEETLE and no cluster named, the addresses of a replica run here.
            tigerbeetle_settings(configured) as settings,
        ):
            await upgrade(database)
            async with (
                serve_node(settings, database, redis) as node,
                serve_backend(settings, database, redis) as (backend_state, admin_app),
            ):
                connector = http_server(node, args.host, settings.connector_port)
                backend = backend_http_server(admin_app, args.host, settings.admin_port)
                # Without an identity provider, the development consent page stands in.
                grants = node_auth_app(settings, node.pool, node.receiver_http, consent_page=True)
                auth = backend_http_server(grants, args.host, settings.auth_port)
                servers = [connector.serve(), backend.serve(), auth.serve()]
                peering = ""
                if settings.enable_auto_peering:
                    port = settings.auto_peering_server_port
                    servers.append(
                        backend_http_server(
                            auto_peering_app(backend_state), args.host, port
                        ).serve()
                    )
                    peering = f"  auto-peering http://{args.host}:{port}/  (ENABLE_AUTO_PEERING)\n"
                consent = settings.identity_server_url or "development page, no login"
                signed = "signed" if settings.admin_api_secret else "unsigned: loopback only"
                print(
                    "Kiungo is up\n"
                    f"  ILP address  {settings.ilp_address}\n"
                    f"  connector    http://{args.host}:{settings.connector_port}"
                    "  (POST /ilp, SPSP, /livez, /readyz, /metrics)\n"
                    f"  admin API    http://{args.host}:{settings.admin_port}/graphql"
                    f"  ({signed}; /livez, /readyz, /metrics)\n"
                    f"  auth server  http://{args.host}:{settings.auth_port}"
                    f"  (GNAP, for {settings.auth_server_grant_url}; consent: {consent})\n"
                    f"{peering}"
                    f"  postgres     {'DATABASE_URL' if settings.database_url else database}\n"
                    f"  redis        {'REDIS_URL' if settings.redis_url else redis}\n"
                    f"  ledger       {_ledger(settings)}\n"
                    "Ctrl-C stops everything.",
                    flush=True,
                )
                await asyncio.gather(*servers)

    with contextlib.suppress(KeyboardInterrupt):
        run_service(run(settings))
    return 0


def _ledger(settings: Settings) -> str:
    if not settings.use_tigerbeetle:
        return "postgres"
    return (
        f"TigerBeetle cluster {settings.tigerbeetle_cluster_id} at "
        f"{settings.tigerbeetle_replica_addresses}"
    )
