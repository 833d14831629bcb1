"""Rafiki's HMAC signatures: on admin API requests (header ``signature``) and on webhook
deliveries (header ``Rafiki-Signature``).

Both sign ``"<t>.<canonical JSON of the body>"`` with HMAC-SHA256 and send
``t=<unix ms>, v1=<hex digest>``; admin clients may append ``, n=<nonce>``, which is not signed.
The canonical JSON is RFC 8785 (JCS), as the ``json-canonicalize`` package Rafiki and its clients
use produces it: object members sorted by their UTF-16 code units, no whitespace, strings with
JSON's minimal escapes, numbers as ECMAScript prints them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SignatureError",
    "SignatureHeader",
    "canonical_json",
    "parse_signature",
    "sign",
    "signature_header",
    "verify",
]


class SignatureError(ValueError):
    """A signature header that is missing, malformed, stale or wrong."""


def _number(value: float) -> str:
    """ECMAScript's Number::toString for a finite double (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or Infinity")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    # repr gives the shortest digits that round-trip, as ECMAScript's algorithm does.
    mantissa, _, exponent_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + (int(exponent_text) if exponent_text else 0)
    if whole == "0":
        point -= len(fraction) - len(fraction.lstrip("0"))
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exponent = n - 1
    sign = "+" if exponent > 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(exponent)}"


def _utf16_key(key: str) -> list[int]:
    encoded = key.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def _write(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append(json.dumps(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be strings")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """The RFC 8785 canonical form of a parsed JSON value."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def sign(secret: str, timestamp_ms: int, body: Any) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp_ms>.<canonical JSON of body>"``."""
    payload = f"{timestamp_ms}.{canonical_json(body)}".encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: Any, *, timestamp_ms: int | None = None) -> str:
    """A header value ``t=<ms>, v1=<hex>`` for ``body``, signed now unless told when."""
    t = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return f"t={t}, v1={sign(secret, t, body)}"


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    timestamp_ms: int
    digest: str
    nonce: str | None


def parse_signature(header: str | None) -> SignatureHeader:
    """Read ``t=<ms>, v1=<hex>[, n=<nonce>]`` (spaces after the commas optional)."""
    if not header:
        raise SignatureError("the signature header is missing")
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value or name in fields:
            raise SignatureError("the signature header is malformed")
        fields[name] = value
    timestamp, digest = fields.get("t"), fields.get("v1")
    if timestamp is None or digest is None or not set(fields) <= {"t", "v1", "n"}:
        raise SignatureError("the signature header needs t= and v1= (and optionally n=)")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureError("the signature timestamp must be milliseconds since 1970")
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise SignatureError("the signature digest must be 64 lowercase hex digits")
    return SignatureHeader(int(timestamp), digest, fields.get("n"))


def verify(
    secret: str,
    header: str | None,
    body: Any,
    *,
    ttl_seconds: int,
    now_ms: int | None = None,
) -> SignatureHeader:
    """Check a signature header against ``body``; raises :class:`SignatureError`.

    The digest is compared in constant time; a timestamp more than ``ttl_seconds`` away from now
    (in either direction, for clocks that disagree) is stale.
    """
    parsed = parse_signature(header)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - parsed.timestamp_ms) > ttl_seconds * 1000:
        raise SignatureError("the signature is stale")
    try:
        expected = sign(secret, parsed.timestamp_ms, body)
    except (TypeError, ValueError):
        raise SignatureError("the body cannot be canonicalized") from None
    if not hmac.compare_digest(expected, parsed.digest):
        raise SignatureError("the signature does not match")
    return parsed
