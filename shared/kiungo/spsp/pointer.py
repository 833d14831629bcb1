"""Payment pointers (RFC 26, paymentpointers.org): ``$host/path`` ↔ ``https://host/path``.

A pointer has no userinfo, port, query or fragment; an empty path (or ``/``) means
``/.well-known/pay``; a trailing ``/`` is dropped as @interledger/pay does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = [
    "InvalidPaymentPointer",
    "normalise_pointer",
    "parse_payment_pointer",
    "resolve_receiver",
    "url_to_pointer",
]

WELL_KNOWN_PATH = "/.well-known/pay"
_LOOPBACK_HOSTS = frozenset(("localhost", "127.0.0.1", "::1", "[::1]"))


class InvalidPaymentPointer(ValueError):
    """Not a payment pointer (or receiver URL) this node can query."""


def _split_pointer(pointer: str) -> tuple[str, str]:
    if not pointer.startswith("$"):
        raise InvalidPaymentPointer(f"{pointer!r} is not a payment pointer: it must start with $")
    if any(c.isspace() for c in pointer):
        raise InvalidPaymentPointer(f"{pointer!r} contains whitespace")
    parts = urlsplit("https://" + pointer[1:])
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidPaymentPointer(f"{pointer!r} has user information, which pointers forbid")
    try:
        port = parts.port
    except ValueError:
        raise InvalidPaymentPointer(f"{pointer!r} has an invalid port") from None
    if port is not None or parts.netloc.endswith(":"):
        raise InvalidPaymentPointer(f"{pointer!r} has a port, which pointers forbid")
    if parts.query or "?" in pointer:
        raise InvalidPaymentPointer(f"{pointer!r} has a query, which pointers forbid")
    if parts.fragment or "#" in pointer:
        raise InvalidPaymentPointer(f"{pointer!r} has a fragment, which pointers forbid")
    host = parts.hostname or ""
    if not host or host != parts.netloc.lower():
        raise InvalidPaymentPointer(f"{pointer!r} has no valid host")
    return parts.netloc, parts.path.rstrip("/")


def parse_payment_pointer(pointer: str) -> str:
    """The https URL a payment pointer stands for."""
    host, path = _split_pointer(pointer)
    return f"https://{host}{path or WELL_KNOWN_PATH}"


def normalise_pointer(pointer: str) -> str:
    """The canonical spelling: no trailing slash, no ``/.well-known/pay``."""
    host, path = _split_pointer(pointer)
    if path == WELL_KNOWN_PATH:
        path = ""
    return f"${host}{path}"


def url_to_pointer(url: str) -> str | None:
    """The payment pointer for an https URL, or None when the URL cannot be one."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    if parts.username is not None or parts.port is not None or not parts.hostname:
        return None
    path = parts.path.rstrip("/")
    if path == WELL_KNOWN_PATH:
        path = ""
    return f"${parts.netloc}{path}"


def resolve_receiver(receiver: str, *, allow_http: bool = False) -> str:
    """The SPSP URL for a payment pointer or an https receiver URL.

    Plain http is accepted for loopback hosts only, or anywhere with ``allow_http`` (tests).
    """
    if receiver.startswith("$"):
        return parse_payment_pointer(receiver)
    parts = urlsplit(receiver)
    if parts.scheme == "https" and parts.hostname:
        return receiver
    if (
        parts.scheme == "http"
        and parts.hostname
        and (allow_http or parts.hostname in _LOOPBACK_HOSTS)
    ):
        return receiver
    raise InvalidPaymentPointer(f"{receiver!r} is neither a payment pointer nor an https URL")
