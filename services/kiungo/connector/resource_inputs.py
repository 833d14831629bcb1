"""What the resource server (:mod:`kiungo.connector.resource_server`) reads from a request and
how it refuses one: the spec's ``{"error": {"code", "description"}}`` answers (quoting's
refusals among them), and the parsers of bodies, amounts, metadata and page sizes, each
refusing bad input with a 400 that names it."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from kiungo.openpayments import incoming_payments as resources
from kiungo.payments.quotes import errors as quote_errors
from kiungo.payments.quotes.quoting import Amount
from kiungo.refusal import Refusal

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_U64",
    "Refused",
    "b64url",
    "bad",
    "check_fields",
    "is_uuid",
    "not_found",
    "parse_amount",
    "parse_fields",
    "parse_json_object",
    "parse_listing",
    "parse_metadata",
    "parse_page_size",
    "parse_quote_amount",
    "parse_wallet_url",
    "quote_refused",
    "storable",
]

MAX_METADATA_BYTES = 16 * 1024  # the admin API's limit
MAX_U64 = (1 << 64) - 1


class Refused(Exception):
    def __init__(self, status: int, code: str, description: str, challenge: str = "") -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.challenge = challenge

    def response(self) -> Response:
        headers = {"WWW-Authenticate": self.challenge} if self.challenge else None
        return JSONResponse(
            {"error": {"code": self.code, "description": self.description}},
            self.status,
            headers=headers,
        )


def bad(description: str) -> Refused:
    return Refused(400, "invalid_request", description)


def not_found() -> Refused:
    return Refused(404, "not_found", "incoming payment not found")


def storable(text: str) -> bool:
    """Whether Postgres can hold ``text``: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_fields(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object ``body``, refused when it has a field outside ``allowed``."""
    document = parse_json_object(body)
    check_fields(document, allowed)
    return document


def check_fields(document: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Refuses a request whose ``document`` has a field outside ``allowed``."""
    unknown = set(document) - allowed
    if unknown:
        raise bad(f"unknown fields: {', '.join(sorted(unknown))}")


def parse_wallet_url(raw: object) -> str:
    """A ``walletAddress`` field: a URL Postgres can hold (which wallet it is, is the caller's)."""
    if not isinstance(raw, str) or not storable(raw):
        raise bad("walletAddress must be a wallet address URL")
    return raw


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise bad("body must be JSON") from None
    if not isinstance(document, dict):
        raise bad("body must be a JSON object")
    return document


def parse_amount(raw: object, wallet: Mapping[str, Any]) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"value", "assetCode", "assetScale"}:
        raise bad("incomingAmount must be {value, assetCode, assetScale}")
    value, code, scale = raw["value"], raw["assetCode"], raw["assetScale"]
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise bad("incomingAmount.value must be an unsigned integer string")
    if len(value) > 20 or not 0 < int(value) <= MAX_U64:
        raise bad("incomingAmount.value must be above zero and fit 64 bits")
    if (code, scale) != (wallet["asset_code"], wallet["asset_scale"]) or isinstance(scale, bool):
        raise bad(
            f"incomingAmount must be in the wallet address's asset, {wallet['asset_code']}"
            f" at scale {wallet['asset_scale']}"
        )
    return int(value)


def parse_quote_amount(raw: object, what: str) -> Amount | None:
    """A quote's or an outgoing payment's amount (``debitAmount``, ``receiveAmount``), in any
    asset (whose asset it must be, quoting checks)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"value", "assetCode", "assetScale"}:
        raise bad(f"{what} must be {{value, assetCode, assetScale}}")
    value, code, scale = raw["value"], raw["assetCode"], raw["assetScale"]
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise bad(f"{what}.value must be an unsigned integer string")
    if not 0 < int(value) <= MAX_U64:
        raise bad(f"{what}.value must be above zero and fit 64 bits")
    if not isinstance(code, str) or not 0 < len(code) <= 16 or not storable(code):
        raise bad(f"{what}.assetCode must be an asset code")
    if type(scale) is not int or not 0 <= scale <= 255:
        raise bad(f"{what}.assetScale must be an integer from 0 to 255")
    return Amount(int(value), code, scale)


def quote_refused(exc: Refusal) -> Refused:
    """A refusal of quoting or of creating the payment as the resource server answers it.

    QuotingUnavailable (no rate, or the connector could not quote) stays a typed 400
    ``invalid_request``; Rafiki answers a 500 there (CouldNotFetchRates: errorToHTTPCode, a
    rate probe failure: its unhandled-error path)."""
    if isinstance(exc, quote_errors.InvalidReceiver | quote_errors.RateProbeFailed):
        return Refused(400, "invalid_receiver", exc.message)
    return bad(exc.message)


def parse_metadata(raw: object) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("metadata must be a JSON object")
    try:
        text = json.dumps(raw, allow_nan=False, ensure_ascii=False)
    except (ValueError, RecursionError):
        raise bad("metadata must be storable JSON") from None
    if not storable(text) or "\\u0000" in text:
        raise bad("metadata must be storable JSON: no NUL characters or lone surrogates")
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise bad(f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON")
    return raw


def parse_page_size(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3 or not 1 <= int(raw) <= 100:
        raise bad(f"{name} must be an integer from 1 to {resources.MAX_PAGE}")
    return int(raw)


def parse_listing(
    params: Mapping[str, str], allowed: frozenset[str], client: str
) -> tuple[int | None, int | None, str | None]:
    """A list request's page size, ``first`` or ``last`` (not both), and whose payments it
    lists: ``client``'s under a grant that allows ``list``, everyone's (None) under
    ``list-all``; a 403 under neither."""
    if "list-all" not in allowed and "list" not in allowed:
        raise Refused(403, "insufficient_grant", "the grant does not allow list here")
    first = parse_page_size(params.get("first"), "first")
    last = parse_page_size(params.get("last"), "last")
    if first is not None and last is not None:
        raise bad("first and last cannot both be given")
    return first, last, None if "list-all" in allowed else client


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
