"""ILP addresses (RFC 15): validation and the prefix relations routing needs."""

from __future__ import annotations

import re

__all__ = ["ADDRESS_PATTERN", "MAX_ADDRESS_LENGTH", "is_prefix_of", "is_valid_address"]

MAX_ADDRESS_LENGTH = 1023

# The exact pattern JS ilp-packet and interledger-rs use, so that we accept what they accept.
ADDRESS_PATTERN = re.compile(r"(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+")
_fullmatch = ADDRESS_PATTERN.fullmatch


def is_valid_address(address: str) -> bool:
    """True when ``address`` is a well-formed ILP address of at most 1023 characters."""
    return len(address) <= MAX_ADDRESS_LENGTH and _fullmatch(address) is not None


def is_prefix_of(prefix: str, address: str) -> bool:
    """True when ``address`` is ``prefix`` or lies under it, on a segment boundary."""
    return address == prefix or (address.startswith(prefix) and address[len(prefix)] == ".")
