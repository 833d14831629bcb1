"""STREAM receipts (deprecated RFC 39, still spoken by Web Monetization verifiers).

A receipt is 58 bytes: ``version (1) || nonce (16) || streamId UInt8 || totalReceived UInt64 ||
HMAC-SHA256(receiptSecret, first 26 bytes)``. Verification compares the HMAC in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from kiungo.ilp.oer import MAX_UINT64

__all__ = [
    "RECEIPT_LENGTH",
    "Receipt",
    "ReceiptError",
    "create_receipt",
    "decode_receipt",
    "verify_receipt",
]

RECEIPT_LENGTH = 58
RECEIPT_VERSION = 1
_SIGNED_LENGTH = 26


class ReceiptError(ValueError):
    """A receipt that is malformed or does not verify."""


@dataclass(frozen=True, slots=True)
class Receipt:
    nonce: bytes
    stream_id: int
    total_received: int


def create_receipt(nonce: bytes, stream_id: int, total_received: int, secret: bytes) -> bytes:
    if len(nonce) != 16:
        raise ValueError("receipt nonce must be 16 bytes")
    if len(secret) != 32:
        raise ValueError("receipt secret must be 32 bytes")
    if not 0 <= stream_id <= 255:
        raise ValueError("receipt stream id must fit in one byte")
    if not 0 <= total_received <= MAX_UINT64:
        raise ValueError("total received must be a UInt64")
    signed = (
        bytes((RECEIPT_VERSION,)) + nonce + bytes((stream_id,)) + total_received.to_bytes(8, "big")
    )
    return signed + hmac.digest(secret, signed, "sha256")


def decode_receipt(receipt: bytes) -> Receipt:
    """The receipt's fields, without checking its HMAC."""
    if len(receipt) != RECEIPT_LENGTH:
        raise ReceiptError(f"receipt malformed: {len(receipt)} bytes, expected {RECEIPT_LENGTH}")
    if receipt[0] != RECEIPT_VERSION:
        raise ReceiptError(f"invalid version {receipt[0]}")
    return Receipt(receipt[1:17], receipt[17], int.from_bytes(receipt[18:26], "big"))


def verify_receipt(receipt: bytes, secret: bytes) -> Receipt:
    """Decode ``receipt`` and check its HMAC under ``secret``; raise ReceiptError otherwise."""
    decoded = decode_receipt(receipt)
    expected = hmac.digest(secret, receipt[:_SIGNED_LENGTH], "sha256")
    if not hmac.compare_digest(expected, receipt[_SIGNED_LENGTH:]):
        raise ReceiptError("invalid hmac")
    return decoded
