"""The services' subcommands (connector, backend, schema, auth, up, demo): their arguments and help.

Only argparse here. Each handler imports its service when the command runs
(:func:`kiungo.cli.arguments.lazy_handler`): the services load uvicorn, Starlette, asyncpg,
SQLAlchemy and the GraphQL schema, seconds of imports that ``kiungo --help`` has no use for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiungo.cli.arguments import lazy_handler, paragraphs

__all__ = ["register"]

# What bob's incoming payment asks for in the demo, in EUR cents.
DEMO_PAYMENT = 1_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _connector(subparsers)
    _backend(subparsers)
    _auth(subparsers)
    _up(subparsers)
    _demo(subparsers)


def port_number(text: str) -> int:
    """A TCP port from the command line, 1 to 65535."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def _command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    *description: str,
) -> argparse.ArgumentParser:
    """A subcommand whose description is ``description``'s paragraphs."""
    return subparsers.add_parser(
        name,
        help=help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(*description),
    )


def _server(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    description: str,
    *,
    port_help: str,
    processes_help: str = (
        "serve from N processes sharing the port (needs DATABASE_URL and REDIS_URL)"
    ),
) -> argparse.ArgumentParser:
    """A serving subcommand: ``kiungo.<name>.command.run``, with --host, --port and
    --processes as every serving command takes them."""
    parser = _command(subparsers, name, help, description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port_number, help=port_help)
    parser.add_argument("--processes", type=int, default=1, metavar="N", help=processes_help)
    parser.set_defaults(handler=lazy_handler(f"kiungo.{name}.command", "run"))
    return parser


def _connector(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _server(
        subparsers,
        "connector",
        "run the connector",
        "Serve ILP over HTTP for peers (POST /ilp), SPSP on every wallet address, /livez, "
        "/readyz, /healthz and /metrics on CONNECTOR_PORT (3002 by default). Uses "
        "DATABASE_URL and REDIS_URL, or embedded servers in KIUNGO_DATA_DIR when unset. The "
        "database must be migrated first (kiungo migrate).",
        port_help="port to listen on, instead of CONNECTOR_PORT (the default of "
        "ILP_CONNECTOR_URL follows it)",
        processes_help="serve from N processes sharing the port, each a replica with its own "
        "pools and workers (needs DATABASE_URL and REDIS_URL)",
    )


def _backend(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _server(
        subparsers,
        "backend",
        "run the GraphQL admin API and its workers",
        "Serve the GraphQL admin API at /graphql (GraphiQL outside production), /livez, "
        "/readyz, /healthz and /metrics on ADMIN_PORT (3001 by default), and run the "
        "webhook, expiry and event workers. Requests must be signed with "
        "ADMIN_API_SECRET; without one the API listens on loopback only.",
        port_help="port to listen on, instead of ADMIN_PORT",
    )
    schema = subparsers.add_parser(
        "schema",
        help="print the admin API's GraphQL schema (SDL)",
        description="Print the schema, or write it to a file, or check a file is current.",
    )
    schema.add_argument("--output", "-o", type=Path, help="write the schema to this file")
    schema.add_argument(
        "--check", type=Path, metavar="FILE", help="exit 1 if FILE differs from the schema"
    )
    schema.set_defaults(handler=lazy_handler("kiungo.backend.command", "print_schema"))


def _auth(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _server(
        subparsers,
        "auth",
        "run the Open Payments authorization server (GNAP)",
        "Serve GNAP grant requests (POST /), token rotation and revocation (/token/{id}) "
        "and grant continuation (/continue/{id}) on AUTH_PORT (3006 by default), at the "
        "root of AUTH_SERVER_GRANT_URL, the URL clients sign for. Grants are non-"
        "interactive (incoming-payment, quote) for this node's wallet addresses as clients. "
        "State is in DATABASE_URL only, so any number of processes can serve.",
        port_help="port to listen on, instead of AUTH_PORT",
    )


def _up(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        subparsers,
        "up",
        "run the whole node, with embedded Postgres and Redis when none are configured",
        "The whole node with one command and no services installed. Starts Postgres and "
        "Redis (the machine's, from DATABASE_URL and REDIS_URL, or embedded ones from the "
        "pip wheels in KIUNGO_DATA_DIR), applies the migrations, and runs the connector on "
        "CONNECTOR_PORT and the backend (the admin API and its workers) on ADMIN_PORT, "
        "printing where everything is. Ctrl-C (or SIGTERM) stops it all.",
    )
    # No --port: up serves two ports; CONNECTOR_PORT and ADMIN_PORT choose them.
    parser.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    parser.set_defaults(handler=lazy_handler("kiungo.up", "run"))


def _demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        subparsers,
        "demo",
        "run two nodes on this machine and pay from one to the other",
        "Starts two complete nodes on loopback (a connector, a backend and an authorization "
        "server each, with their "
        "own databases on one Postgres and their own key prefixes on one Redis: the "
        "machine's from DATABASE_URL and REDIS_URL, or embedded ones in a temporary "
        "directory) and a rates service (1 USD = 0.9 EUR), and sets them up through their "
        "admin APIs as an integrator would: node A holds USD, node B holds USD and EUR; "
        "they are peered both ways in USD with liquidity; alice has a wallet address on A, "
        "bob one on B in EUR.",
        "Then alice pays bob's incoming payment: a quote on A, an outgoing payment, funded "
        "and sent in many small STREAM packets while a progress bar follows it. It prints "
        "what was sent and delivered, the rate and both nodes' balances, and ends with one "
        "JSON line. Exit status 0 when the payment completed with the exact amount.",
        "With --open-payments, alice's app pays as an Open Payments client: grants and the "
        "incoming payment on B, the quote and an interactive outgoing-payment grant on A, "
        "whose consent is given on A's development consent page (the demo follows its URL "
        "as a browser would; with --consent-in-browser you accept in your browser), then the "
        "outgoing payment, which the operator funds.",
    )
    parser.add_argument(
        "--amount",
        type=int,
        default=DEMO_PAYMENT,
        help=f"what bob's incoming payment asks for, in EUR cents (default {DEMO_PAYMENT})",
    )
    parser.add_argument(
        "--open-payments",
        action="store_true",
        help="pay as an Open Payments client app rather than through the admin APIs",
    )
    parser.add_argument(
        "--consent-in-browser",
        action="store_true",
        help="with --open-payments: print the consent URL and wait for you to accept there",
    )
    parser.set_defaults(handler=lazy_handler("kiungo.demo", "run"))
