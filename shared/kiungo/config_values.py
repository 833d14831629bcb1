"""The parsers of kiungo.config: each turns one variable's text into its typed value or raises
ValueError with what was expected (kiungo.config names the variable)."""

from __future__ import annotations

import base64
import binascii
import enum
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from kiungo.ilp.address import is_valid_address
from kiungo.openpayments.jwk import InvalidPrivateKey, load_private_key_pem

U64_MAX = 2**64 - 1
INTEGER = re.compile(r"-?[0-9]+")

# Rafiki logs with pino, whose level names differ from Python's; both spellings are accepted.
LOG_LEVELS = {
    "trace": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
    "critical": "CRITICAL",
}


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "share" / "kiungo"


def environment(raw: str) -> Environment:
    try:
        return Environment(raw.lower())
    except ValueError:
        choices = ", ".join(e.value for e in Environment)
        raise ValueError(f"expected one of {choices}, got {raw!r}") from None


def log_level(raw: str) -> str:
    level = LOG_LEVELS.get(raw.lower())
    if level is None:
        raise ValueError(f"expected a log level such as debug, info, warning or error, got {raw!r}")
    return level


def log_format(raw: str) -> str:
    if raw.lower() not in ("text", "json"):
        raise ValueError(f"expected text or json, got {raw!r}")
    return raw.lower()


def whole_number(raw: str) -> int:
    # int() alone would also take "1_000" or "٣", which Rafiki's parseInt reads differently.
    if not INTEGER.fullmatch(raw):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return int(raw)


def positive_int(raw: str) -> int:
    value = whole_number(raw)
    if value <= 0:
        raise ValueError(f"expected a number above 0, got {raw!r}")
    return value


def non_negative_int(raw: str) -> int:
    value = whole_number(raw)
    if value < 0:
        raise ValueError(f"expected 0 or more, got {raw!r}")
    return value


def boolean(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def port(raw: str) -> int:
    value = whole_number(raw)
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a port from 1 to 65535, got {raw!r}")
    return value


def u64(raw: str) -> int:
    value = whole_number(raw)
    if not 0 < value <= U64_MAX:
        raise ValueError(f"expected an amount from 1 to {U64_MAX}, got {raw!r}")
    return value


def u128(raw: str) -> int:
    value = whole_number(raw)
    if not 0 <= value < 2**128:
        raise ValueError("must be an integer from 0 to 2^128-1")
    return value


def addresses(raw: str) -> str:
    parts = [p.strip() for p in raw.split(",")]
    if not all(parts):
        raise ValueError("must be host:port (or port) entries, comma-separated")
    return ",".join(parts)


def key_id(raw: str) -> str:
    if len(raw) > 1024 or not raw.isascii() or not raw.isprintable():
        raise ValueError("expected printable ASCII of at most 1024 characters")
    return raw


def private_key_file(raw: str) -> Path:
    # Read once here so that a missing or wrong key stops the node at start, not at its first
    # payment; kiungo.openpayments.identity reads it again to use it.
    path = Path(raw)
    try:
        load_private_key_pem(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {raw!r}: {exc.strerror or type(exc).__name__}") from None
    except InvalidPrivateKey as exc:
        raise ValueError(f"{raw!r} is not an Ed25519 PKCS#8 PEM private key: {exc}") from None
    return path


def slippage(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"expected a decimal fraction such as 0.01, got {raw!r}") from None
    if not value.is_finite() or not Decimal(0) <= value < Decimal(1):
        raise ValueError(f"expected a fraction from 0 up to (not including) 1, got {raw!r}")
    return value


def ilp_address(raw: str) -> str:
    if not is_valid_address(raw):
        raise ValueError(f"not an ILP address such as g.example or test.node: {raw!r}")
    return raw


def secret(raw: str) -> bytes:
    # The secret itself never goes into a message: these lines end up in logs.
    text = raw.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not valid base64 (expected 32 random bytes in base64)") from None
    if len(secret) != 32:
        raise ValueError(f"decodes to {len(secret)} bytes, expected 32")
    return secret


def url(raw: str, schemes: tuple[str, ...], example: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ValueError(f"expected a URL such as {example}, got {without_password(raw)!r}")
    return raw


def tenant_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValueError("must be a UUID") from None


def http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {without_password(raw)!r}")
    return raw


def http_urls(raw: str) -> tuple[str, ...]:
    # Comma-separated, blanks dropped, as Rafiki's envStringArray reads a list.
    return tuple(http_url(part.strip()) for part in raw.split(",") if part.strip())


def postgres_url(raw: str) -> str:
    return url(
        raw, ("postgres", "postgresql", "postgresql+asyncpg"), "postgresql://user@host:5432/kiungo"
    )


def redis_url(raw: str) -> str:
    return url(raw, ("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0")


def without_password(raw: str) -> str:
    # Database URLs carry passwords; an error line must not.
    try:
        parts = urlsplit(raw)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if password:
        return raw.replace(f":{password}@", ":***@", 1)
    return raw
