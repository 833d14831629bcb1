"""ILP addresses (RFC 15): validation and the prefix relations routing needs."""

from __future__ import annotations

import re

__all__ = [
    "ADDRESS_PATTERN",
    "MAX_ADDRESS_LENGTH",
    "is_prefix_of",
    "is_valid_address",
    "is_valid_address_bytes",
]

MAX_ADDRESS_LENGTH = 1023

# The exact pattern JS ilp-packet and interledger-rs use, so that we accept what they accept.
ADDRESS_PATTERN = re.compile(r"(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+")
_fullmatch = ADDRESS_PATTERN.fullmatch


def is_valid_address(address: str) -> bool:
    """True when ``address`` is a well-formed ILP address of at most 1023 characters."""
    return len(address) <= MAX_ADDRESS_LENGTH and _fullmatch(address) is not None


_SCHEMES = frozenset(
    (
        b"g",
        b"private",
        b"example",
        b"peer",
        b"self",
        b"test",
        b"test1",
        b"test2",
        b"test3",
        b"local",
    )
)
_SEGMENT_AND_DOT_BYTES = b".-_~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def is_valid_address_bytes(raw: bytes) -> bool:
    """:func:`is_valid_address` on the wire bytes, without a regex (the packet decoder's path)."""
    if len(raw) > MAX_ADDRESS_LENGTH:
        return False
    scheme, dot, rest = raw.partition(b".")
    return (
        bool(dot)
        and scheme in _SCHEMES
        and bool(rest)
        and not rest.translate(None, _SEGMENT_AND_DOT_BYTES)
        and rest[0] != 0x2E
        and rest[-1] != 0x2E
        and b".." not in rest
    )


def is_prefix_of(prefix: str, address: str) -> bool:
    """True when ``address`` is ``prefix`` or lies under it, on a segment boundary."""
    return address == prefix or (address.startswith(prefix) and address[len(prefix)] == ".")
