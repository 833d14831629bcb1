"""Rafiki's HMAC signatures: on admin API requests (header ``signature``) and on webhook
deliveries (header ``Rafiki-Signature``).

Both sign ``"<t>.<canonical JSON of the body>"`` with HMAC-SHA256 and send
``t=<unix ms>, v1=<hex digest>``; admin clients may append ``, n=<nonce>``, which is not signed.
The canonical JSON is RFC 8785 (JCS), as the ``json-canonicalize`` package Rafiki and its clients
use produces it: object members sorted by their UTF-16 code units, no whitespace, strings with
JSON's minimal escapes, numbers as ECMAScript prints them. Where that package differs from the RFC
we follow the package, since that is what the other side computes: numbers are doubles (an integer
past 2^53 is rounded, one past the largest double and NaN are ``null``), a lone surrogate is
written ``\\udxxx``, and an object with a non-null ``toJSON`` member keeps JavaScript's key
order, as does everything in it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
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


# JavaScript holds every number as a double, exact for integers up to here only.
_SAFE_INTEGER = 2**53
# JavaScript's array-index keys (canonical decimals up to 2^32 - 2) come first in its key order.
_MAX_ARRAY_INDEX = 2**32 - 2
_SURROGATE = re.compile("[\ud800-\udfff]")


def _number(value: float) -> str:
    """ECMAScript's Number::toString for a double (RFC 8785 §3.2.2.3); JSON.stringify writes
    NaN and the infinities (a literal such as 1e400 parses as one) as null."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    # repr gives the shortest digits that round-trip, as ECMAScript's algorithm does:
    # value = 0.<digits> × 10^n once leading zeros are gone.
    mantissa, _, exponent_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    n = len(whole) + (int(exponent_text) if exponent_text else 0)
    significant = digits.lstrip("0")
    n -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)
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


def _integer(value: int) -> str:
    # Python's json keeps every digit of an integer; JavaScript's JSON.parse rounds it to a double.
    if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
        return str(value)
    try:
        return _number(float(value))
    except OverflowError:
        return "null"  # beyond the largest double: Infinity in JavaScript


def _string(text: str) -> str:
    """JSON.stringify of a string: minimal escapes, and a lone surrogate as ``\\udxxx``."""
    if _SURROGATE.search(text) is None:
        return json.dumps(text, ensure_ascii=False)
    # A surrogate pair held as two code points is one character; what is left is alone.
    text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "surrogatepass")
    quoted = json.dumps(text, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare as the code units do.
    return key.encode("utf-16-be", "surrogatepass")


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) <= _MAX_ARRAY_INDEX
    )


def _property_order(value: dict[str, Any]) -> list[str]:
    """The order JavaScript keeps an object's keys in: array indices ascending, then the rest as
    inserted (JSON.parse inserts in document order; a repeated key keeps its first place)."""
    indices = sorted((key for key in value if _is_array_index(key)), key=int)
    return indices + [key for key in value if not _is_array_index(key)]


def _write(value: Any, out: list[str], *, sort: bool = True) -> None:
    if value is None or value is True or value is False:
        out.append(json.dumps(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be strings")
        # json-canonicalize hands an object with a non-null "toJSON" member to JSON.stringify
        # whole, which keeps JavaScript's key order at every level below: so must we, to agree.
        sorted_here = sort and value.get("toJSON") is None
        keys = sorted(value, key=_utf16_key) if sorted_here else _property_order(value)
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out, sort=sorted_here)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, sort=sort)
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
