"""What the command-line subcommands share: reading their inputs, writing JSON, failing cleanly.

A handler raises :class:`CommandError` for anything wrong with what it was given; ``main`` prints
that as one ``kiungo: error: ...`` line on stderr and exits 2, the status argparse uses for bad
usage, so scripts can tell "bad input" from a negative answer (exit 1).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib
import json
import re
import sys
import textwrap
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = [
    "CommandError",
    "Handler",
    "Subcommands",
    "bytes_from_base64",
    "bytes_from_hex",
    "command_group",
    "lazy_handler",
    "paragraphs",
    "print_json",
    "read_argument",
    "secret_from_base64",
]

Handler = Callable[[argparse.Namespace], int]
"""A subcommand's function (``parser.set_defaults(handler=...)``); returns the exit status."""

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where commands are added (``add_parser``): ``kiungo``'s own, or a group's."""


def command_group(
    subparsers: Subcommands, name: str, help: str, description: str | None = None
) -> Subcommands:
    """The command ``kiungo NAME`` that only groups commands (``kiungo NAME COMMAND``): where
    its commands are added."""
    group = subparsers.add_parser(name, help=help, description=description)
    return group.add_subparsers(title="commands", metavar="COMMAND", required=True)


def lazy_handler(module: str, name: str) -> Handler:
    """A handler that imports ``module`` only when the command runs and calls its ``name``.

    The services pull in the web servers, the database drivers and the GraphQL schema (about
    two seconds); building the parser must not, so that ``kiungo --help`` answers at once."""

    def handler(args: argparse.Namespace) -> int:
        run: Handler = getattr(importlib.import_module(module), name)
        return run(args)

    return handler


_HEX = re.compile(r"[0-9a-fA-F]*")


class CommandError(Exception):
    """Input a command cannot work with; the message is shown to the user as it is."""


def read_argument(value: str) -> str:
    """The argument itself, or all of stdin when it is ``-``."""
    return sys.stdin.read() if value == "-" else value


def bytes_from_hex(text: str, what: str) -> bytes:
    """Hex digits (either case) to bytes; whitespace anywhere is ignored."""
    digits = "".join(text.split())
    if not digits:
        raise CommandError(f"{what}: no hex given")
    if not _HEX.fullmatch(digits):
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise CommandError(f"{what}: {bad!r} is not a hex digit")
    if len(digits) % 2:
        raise CommandError(f"{what}: odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def bytes_from_base64(text: str, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not; whitespace anywhere is ignored."""
    # SPSP servers differ here (Rafiki sends unpadded base64url), so both alphabets are read.
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/").rstrip("=")
    if not cleaned:
        raise CommandError(f"{what}: no base64 given")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except binascii.Error:
        raise CommandError(f"{what}: not valid base64") from None


def secret_from_base64(text: str, what: str) -> bytes:
    """A 32-byte secret given in base64."""
    secret = bytes_from_base64(text, what)
    if len(secret) != 32:
        hint = (
            " (it looks like hex; give it in base64)"
            if re.fullmatch(r"[0-9a-fA-F]{64}", text)
            else ""
        )
        raise CommandError(f"{what}: the secret is {len(secret)} bytes, not 32{hint}")
    return secret


def paragraphs(*texts: str) -> str:
    """Help text filled to the terminal's usual width, for parsers that keep their text as written
    (``RawDescriptionHelpFormatter``, so that JSON examples in the epilog keep their layout)."""
    return "\n\n".join(textwrap.fill(text, 79) for text in texts)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))
