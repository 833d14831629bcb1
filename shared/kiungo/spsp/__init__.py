"""SPSP (RFC 9) and payment pointers (RFC 26): parsing, the response body, the async client."""

from kiungo.spsp.client import SpspQueryError, query
from kiungo.spsp.pointer import (
    InvalidPaymentPointer,
    normalise_pointer,
    parse_payment_pointer,
    resolve_receiver,
    url_to_pointer,
)
from kiungo.spsp.response import (
    SPSP_CONTENT_TYPE,
    InvalidReceiptHeaders,
    InvalidSpspResponse,
    SpspError,
    SpspResponse,
    accepts_spsp,
    decode_secret,
    parse_receipt_headers,
)

__all__ = [
    "SPSP_CONTENT_TYPE",
    "InvalidPaymentPointer",
    "InvalidReceiptHeaders",
    "InvalidSpspResponse",
    "SpspError",
    "SpspQueryError",
    "SpspResponse",
    "accepts_spsp",
    "decode_secret",
    "normalise_pointer",
    "parse_payment_pointer",
    "parse_receipt_headers",
    "query",
    "resolve_receiver",
    "url_to_pointer",
]
