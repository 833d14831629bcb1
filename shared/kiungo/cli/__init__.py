"""The ``kiungo`` command line: one argparse subcommand tree, one module per command group.

Each group module exposes ``register(subparsers)``, which adds its parser and sets a ``handler``
(see :mod:`kiungo.cli.arguments`). To add a group, write ``kiungo/cli/<group>.py`` and list its
``register`` in ``_GROUPS`` below. Building the parser imports no more than argparse needs: a
handler that needs the database drivers, the web servers or a service imports them when it runs
(:func:`kiungo.cli.arguments.lazy_handler`), so ``kiungo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

from kiungo.cli import ledger, migrate, packet, receipt
from kiungo.cli.arguments import CommandError, Handler
from kiungo.config import ConfigError

__all__ = ["build_parser", "main"]

_GROUPS = (packet.register, receipt.register, migrate.register, ledger.register)

# The services' commands (connector, backend, schema, up, demo): their parsers only. Imported by
# name when the parser is built, so this shared package does not depend on the services at import
# time (DESIGN §2: services depend on shared).
_SERVICE_COMMANDS = ("kiungo.commands",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiungo",
        description="Kiungo, an Interledger node.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('kiungo')}"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for register in _GROUPS:
        register(subparsers)
    for module_name in _SERVICE_COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: return the status rather than exit
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except (CommandError, ConfigError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
