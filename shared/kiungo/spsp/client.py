"""The SPSP client: query a payment pointer or receiver URL for STREAM credentials."""

from __future__ import annotations

import base64
import json

import httpx

from kiungo.spsp.pointer import InvalidPaymentPointer, resolve_receiver
from kiungo.spsp.response import SpspError, SpspResponse

__all__ = ["SpspQueryError", "query"]

ACCEPT = "application/spsp4+json, application/spsp+json"


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
) -> SpspResponse:
    """GET the receiver's SPSP endpoint; with a receipt nonce and secret, ask for receipts."""
    try:
        url = resolve_receiver(receiver, allow_http=allow_http)
    except InvalidPaymentPointer as exc:
        raise SpspQueryError(str(exc)) from None
    headers = {"Accept": ACCEPT}
    if (receipt_nonce is None) != (receipt_secret is None):
        raise SpspQueryError("give both a receipt nonce and a receipt secret, or neither")
    if receipt_nonce is not None and receipt_secret is not None:
        headers["Receipt-Nonce"] = base64.b64encode(receipt_nonce).decode("ascii")
        headers["Receipt-Secret"] = base64.b64encode(receipt_secret).decode("ascii")
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise SpspQueryError(f"SPSP query to {url} failed: {exc}") from None
    if response.status_code != 200:
        raise SpspQueryError(
            f"SPSP query to {url} answered {response.status_code}", response.status_code
        )
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SpspQueryError(f"SPSP response from {url} is not JSON") from None
    try:
        return SpspResponse.from_json(body)
    except SpspError as exc:
        raise SpspQueryError(str(exc)) from None
