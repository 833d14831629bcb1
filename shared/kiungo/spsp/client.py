"""The SPSP client: query a payment pointer or receiver URL for STREAM credentials.

The query is bounded in time and size (:mod:`kiungo.runtime.receiver_fetch`); read with a
client from :func:`kiungo.runtime.receiver_fetch.receiver_client` it also refuses receivers on
private addresses.
"""

from __future__ import annotations

import base64
import json

import httpx

from kiungo.runtime.receiver_fetch import DEFAULT_TIMEOUT_SECONDS, ReceiverFetchError, fetch
from kiungo.spsp.pointer import InvalidPaymentPointer, resolve_receiver
from kiungo.spsp.response import SpspError, SpspResponse

__all__ = ["MAX_SPSP_BYTES", "SpspQueryError", "query"]

ACCEPT = "application/spsp4+json, application/spsp+json"
MAX_SPSP_BYTES = 16 * 1024
"""An SPSP answer is two short strings and a flag: a few hundred bytes."""


class SpspQueryError(SpspError):
    """The receiver could not be queried or did not answer with usable SPSP."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


async def query(
    receiver: str,
    *,
    client: httpx.AsyncClient,
    receipt_nonce: bytes | None = None,
    receipt_secret: bytes | None = None,
    allow_http: bool = False,
    max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> SpspResponse:
    """GET the receiver's SPSP endpoint; with a receipt nonce and secret, ask for receipts.
    The whole query takes at most ``max_seconds`` seconds."""
    try:
        url = resolve_receiver(receiver, allow_http=allow_http)
    except InvalidPaymentPointer as exc:
        raise SpspQueryError(str(exc)) from None
    headers: dict[str, str] = {}
    if (receipt_nonce is None) != (receipt_secret is None):
        raise SpspQueryError("give both a receipt nonce and a receipt secret, or neither")
    if receipt_nonce is not None and receipt_secret is not None:
        headers["Receipt-Nonce"] = base64.b64encode(receipt_nonce).decode("ascii")
        headers["Receipt-Secret"] = base64.b64encode(receipt_secret).decode("ascii")
    try:
        response = await fetch(
            client,
            url,
            accept=ACCEPT,
            max_bytes=MAX_SPSP_BYTES,
            max_seconds=max_seconds,
            headers=headers,
        )
    except ReceiverFetchError as exc:
        raise SpspQueryError(f"SPSP query to {url}: {exc}") from None
    if response.status_code != 200:
        raise SpspQueryError(
            f"SPSP query to {url} answered {response.status_code}", response.status_code
        )
    if not response.is_json:
        raise SpspQueryError(f"SPSP response from {url} is not JSON (no JSON content type)")
    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SpspQueryError(f"SPSP response from {url} is not JSON") from None
    try:
        return SpspResponse.from_json(body)
    except SpspError as exc:
        raise SpspQueryError(str(exc)) from None
