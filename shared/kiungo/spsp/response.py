"""The SPSP response (RFC 9): what a GET on a payment pointer returns.

We emit standard, padded base64 (interledger-rs reads nothing else) and accept both alphabets,
with or without padding (Rafiki emits unpadded base64url), insisting on 32 decoded bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from kiungo.ilp.address import is_valid_address

__all__ = [
    "SPSP_CONTENT_TYPE",
    "InvalidReceiptHeaders",
    "InvalidSpspResponse",
    "SpspError",
    "SpspResponse",
    "accepts_spsp",
    "decode_secret",
    "parse_receipt_headers",
]

SPSP_CONTENT_TYPE = "application/spsp4+json"


class SpspError(ValueError):
    """Any SPSP failure."""


class InvalidSpspResponse(SpspError):
    pass


class InvalidReceiptHeaders(SpspError):
    pass


def decode_secret(text: str) -> bytes:
    """Base64 or base64url, padded or not, to bytes; SpspError when it is neither."""
    if not isinstance(text, str) or not text.isascii():
        raise SpspError("a secret must be a base64 string")
    cleaned = text.strip().rstrip("=")
    if "-" in cleaned or "_" in cleaned:
        cleaned = cleaned.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SpspError("a secret must be base64 or base64url") from None


@dataclass(frozen=True, slots=True)
class SpspResponse:
    destination_account: str
    shared_secret: bytes
    receipts_enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "destination_account": self.destination_account,
            "shared_secret": base64.b64encode(self.shared_secret).decode("ascii"),
        }
        if self.receipts_enabled is not None:
            body["receipts_enabled"] = self.receipts_enabled
        return body

    @classmethod
    def from_json(cls, body: object) -> SpspResponse:
        if not isinstance(body, dict):
            raise InvalidSpspResponse("SPSP response is not a JSON object")
        address = body.get("destination_account")
        if not isinstance(address, str) or not is_valid_address(address):
            raise InvalidSpspResponse("SPSP destination_account is not a valid ILP address")
        secret_text = body.get("shared_secret")
        if not isinstance(secret_text, str):
            raise InvalidSpspResponse("SPSP shared_secret is missing")
        try:
            secret = decode_secret(secret_text)
        except SpspError as exc:
            raise InvalidSpspResponse(f"SPSP shared_secret: {exc}") from None
        if len(secret) != 32:
            raise InvalidSpspResponse(f"SPSP shared_secret is {len(secret)} bytes, not 32")
        receipts = body.get("receipts_enabled")
        if receipts is not None and not isinstance(receipts, bool):
            raise InvalidSpspResponse("SPSP receipts_enabled must be a boolean")
        return cls(address, secret, receipts)


def accepts_spsp(accept: str | None) -> bool:
    """True when an Accept header asks for ``application/spsp4+json`` (Rafiki answers 406
    otherwise)."""
    if not accept:
        return False
    return any(
        part.split(";", 1)[0].strip().lower() == SPSP_CONTENT_TYPE for part in accept.split(",")
    )


def parse_receipt_headers(
    nonce_b64: str | None, secret_b64: str | None
) -> tuple[bytes, bytes] | None:
    """``Receipt-Nonce`` and ``Receipt-Secret``: both or neither, 16 and 32 bytes."""
    if nonce_b64 is None and secret_b64 is None:
        return None
    if nonce_b64 is None or secret_b64 is None:
        raise InvalidReceiptHeaders("Receipt-Nonce and Receipt-Secret must be sent together")
    try:
        nonce = decode_secret(nonce_b64)
        secret = decode_secret(secret_b64)
    except SpspError as exc:
        raise InvalidReceiptHeaders(f"receipt headers: {exc}") from None
    if len(nonce) != 16:
        raise InvalidReceiptHeaders("Receipt-Nonce must be 16 bytes")
    if len(secret) != 32:
        raise InvalidReceiptHeaders("Receipt-Secret must be 32 bytes")
    return nonce, secret
