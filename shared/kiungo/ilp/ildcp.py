"""Interledger Dynamic Configuration Protocol (RFC 31), both sides.

A child asks its parent for its ILP address and asset with a zero-amount Prepare to
``peer.config`` carrying the peer-protocol condition; the parent answers with a Fulfill of 32
zero bytes whose data is ``VarOctetString address || UInt8 scale || VarOctetString code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.oer import DecodeError, Reader, encode_var_octets
from kiungo.ilp.packet import (
    PEER_PROTOCOL_CONDITION,
    PEER_PROTOCOL_FULFILLMENT,
    Fulfill,
    Prepare,
)

__all__ = [
    "ILDCP_DESTINATION",
    "IldcpError",
    "IldcpResponse",
    "build_request",
    "build_response",
    "is_request",
    "parse_response",
    "validate_request",
]

ILDCP_DESTINATION = "peer.config"
REQUEST_TIMEOUT = timedelta(seconds=60)


class IldcpError(ValueError):
    """An IL-DCP request or response that cannot be used."""


@dataclass(frozen=True, slots=True)
class IldcpResponse:
    client_address: str
    asset_scale: int
    asset_code: str


def build_request(now: datetime) -> Prepare:
    """The child's request: amount 0, peer-protocol condition, expiring a minute after ``now``."""
    return Prepare(0, now + REQUEST_TIMEOUT, PEER_PROTOCOL_CONDITION, ILDCP_DESTINATION, b"")


def is_request(prepare: Prepare) -> bool:
    return prepare.destination == ILDCP_DESTINATION


def validate_request(prepare: Prepare, now: datetime) -> None:
    """Refuse what the JS server refuses: wrong destination or condition, or already expired."""
    if prepare.destination != ILDCP_DESTINATION:
        raise IldcpError("packet is not an IL-DCP request")
    if prepare.execution_condition != PEER_PROTOCOL_CONDITION:
        raise IldcpError("packet does not contain correct condition for a peer protocol request")
    if prepare.expires_at <= now:
        raise IldcpError("IL-DCP request packet is expired")


def build_response(response: IldcpResponse) -> Fulfill:
    """The parent's Fulfill carrying the child's address and asset."""
    if not is_valid_address(response.client_address):
        raise ValueError(f"{response.client_address!r} is not a valid ILP address")
    if not 0 <= response.asset_scale <= 255:
        raise ValueError("asset scale must fit in a UInt8")
    data = (
        encode_var_octets(response.client_address.encode("ascii"))
        + bytes((response.asset_scale,))
        + encode_var_octets(response.asset_code.encode("utf-8"))
    )
    return Fulfill(PEER_PROTOCOL_FULFILLMENT, data)


def parse_response(fulfill: Fulfill) -> IldcpResponse:
    """The child's reading of the parent's Fulfill."""
    if fulfill.fulfillment != PEER_PROTOCOL_FULFILLMENT:
        raise IldcpError("IL-DCP response does not contain the expected fulfillment")
    reader = Reader(fulfill.data)
    try:
        address = reader.read_ascii()
        scale = reader.read_uint8()
        code = reader.read_utf8()
    except DecodeError as exc:
        raise IldcpError(f"IL-DCP response data is malformed: {exc}") from None
    if not is_valid_address(address):
        raise IldcpError(f"IL-DCP response address {address!r} is not a valid ILP address")
    return IldcpResponse(address, scale, code)
