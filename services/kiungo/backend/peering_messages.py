"""Auto-peering's messages (:mod:`kiungo.backend.auto_peering`): the request a node sends to
peer, the answer it gets, Rafiki's refusal types, and their parsers. Every byte is hostile: each
parser checks the JSON's shape and every field (ILP addresses, http(s) URLs, printable ASCII
tokens, u64 amounts) and refuses with the :class:`AutoPeeringError` Rafiki answers."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from kiungo.backend import peers
from kiungo.refusal import Refusal

__all__ = [
    "MAX_BODY_BYTES",
    "AutoPeeringError",
    "AutoPeeringRefusal",
    "PeeringDetails",
    "PeeringRequest",
    "parse_peering_details",
    "parse_peering_request",
]

MAX_BODY_BYTES = 16 * 1024
"""The most a peering request, or a peer's answer to ours, may hold."""
_U64_MAX = 2**64 - 1
_MAX_ASSET_CODE = 64


class AutoPeeringError(enum.StrEnum):
    """Rafiki's auto-peering errors, by name."""

    INVALID_ILP_CONFIGURATION = "InvalidIlpConfiguration"
    INVALID_PEER_ILP_CONFIGURATION = "InvalidPeerIlpConfiguration"
    UNKNOWN_ASSET = "UnknownAsset"
    PEER_UNSUPPORTED_ASSET = "PeerUnsupportedAsset"
    INVALID_PEER_URL = "InvalidPeerUrl"
    INVALID_PEERING_REQUEST = "InvalidPeeringRequest"
    LIQUIDITY_ERROR = "LiquidityError"

    @property
    def status(self) -> int:
        """The HTTP status the endpoint answers it with."""
        return 404 if self is AutoPeeringError.UNKNOWN_ASSET else 400

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    AutoPeeringError.INVALID_ILP_CONFIGURATION: "The ILP configuration is misconfigured",
    AutoPeeringError.INVALID_PEER_ILP_CONFIGURATION: (
        "Requested peer's ILP configuration is misconfigured"
    ),
    AutoPeeringError.UNKNOWN_ASSET: "Unknown asset",
    AutoPeeringError.PEER_UNSUPPORTED_ASSET: "Peer does not support asset",
    AutoPeeringError.INVALID_PEER_URL: (
        "Peer URL is invalid or peer does not support auto-peering"
    ),
    AutoPeeringError.INVALID_PEERING_REQUEST: "Invalid peering request",
    AutoPeeringError.LIQUIDITY_ERROR: "Could not deposit liquidity to peer",
}


class AutoPeeringRefusal(Refusal):
    """Peering refused, nothing changed by it (but see :func:`initiate_peering`)."""

    def __init__(self, kind: AutoPeeringError, detail: str | None = None) -> None:
        message = kind.message if detail is None else f"{kind.message}: {detail}"
        super().__init__(message, autoPeeringError=kind.value)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PeeringRequest:
    """A peering request, its fields checked."""

    static_ilp_address: str
    ilp_connector_url: str
    asset_code: str
    asset_scale: int
    http_token: str
    max_packet_amount: int | None
    name: str | None


@dataclass(frozen=True, slots=True)
class PeeringDetails:
    """A peer's answer to our peering request, its fields checked."""

    static_ilp_address: str
    ilp_connector_url: str
    http_token: str
    name: str | None


# -- reading what the other node sends ------------------------------------------------------


def _json_object(body: bytes, kind: AutoPeeringError, what: str) -> dict[str, Any]:
    def not_json(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        value = json.loads(body, parse_constant=not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AutoPeeringRefusal(kind, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise AutoPeeringRefusal(kind, f"{what} must be a JSON object")
    return value


def _string(
    fields: dict[str, Any], name: str, kind: AutoPeeringError, *, optional: bool = False
) -> str | None:
    value = fields.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise AutoPeeringRefusal(kind, f"{name} must be a string")
    return value


def _peer_fields(
    fields: dict[str, Any], kind: AutoPeeringError
) -> tuple[str, str, str, str | None]:
    """The address, connector URL, token and name both messages carry, each checked; a bad
    address or URL is ``InvalidPeerIlpConfiguration`` (Rafiki's), anything else ``kind``."""
    misconfigured = AutoPeeringError.INVALID_PEER_ILP_CONFIGURATION
    address = _string(fields, "staticIlpAddress", misconfigured)
    url = _string(fields, "ilpConnectorUrl", misconfigured)
    token = _string(fields, "httpToken", kind)
    name = _string(fields, "name", kind, optional=True)
    if name is not None and not name.isprintable():
        # Nor NUL nor a lone surrogate, which Postgres cannot store.
        raise AutoPeeringRefusal(kind, "name must be printable text")
    assert address is not None and url is not None and token is not None
    try:
        peers.check_address(address, "staticIlpAddress")
        peers.check_endpoint(url)
    except peers.InvalidPeer as refusal:
        raise AutoPeeringRefusal(misconfigured, refusal.message) from None
    try:
        peers.check_outgoing_token(token)
        name = peers.check_name(name)
    except peers.InvalidPeer as refusal:
        raise AutoPeeringRefusal(kind, refusal.message.replace("authToken", "httpToken")) from None
    return address, url, token, name


def _printable_ascii(value: str, most: int) -> bool:
    return 0 < len(value) <= most and value.isascii() and value.isprintable()


def _amount(value: Any) -> int | None:
    """A u64 sent as a JSON number or a decimal string; none for null, absent or 0 (Rafiki
    sends ``null`` when it has no limit, and reads 0 as none)."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64_MAX:
        raise AutoPeeringRefusal(
            AutoPeeringError.INVALID_PEERING_REQUEST,
            f"maxPacketAmount must be a whole number from 0 to {_U64_MAX}",
        )
    return value or None


def parse_peering_request(body: bytes) -> PeeringRequest:
    """A peering request's body, checked; :class:`AutoPeeringRefusal` otherwise."""
    invalid = AutoPeeringError.INVALID_PEERING_REQUEST
    fields = _json_object(body, invalid, "the body")
    address, url, token, name = _peer_fields(fields, invalid)
    asset = fields.get("asset")
    if not isinstance(asset, dict):
        raise AutoPeeringRefusal(invalid, "asset must be an object with code and scale")
    code, scale = asset.get("code"), asset.get("scale")
    if not isinstance(code, str) or not _printable_ascii(code, _MAX_ASSET_CODE):
        raise AutoPeeringRefusal(invalid, "asset.code must be printable ASCII")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        raise AutoPeeringRefusal(invalid, "asset.scale must be a whole number from 0 to 255")
    return PeeringRequest(
        static_ilp_address=address,
        ilp_connector_url=url,
        asset_code=code,
        asset_scale=scale,
        http_token=token,
        max_packet_amount=_amount(fields.get("maxPacketAmount")),
        name=name,
    )


def parse_peering_details(body: bytes) -> PeeringDetails:
    """A peer's answer to our peering request, checked; :class:`AutoPeeringRefusal`
    otherwise."""
    invalid = AutoPeeringError.INVALID_PEERING_REQUEST
    fields = _json_object(body, invalid, "the peer's answer")
    address, url, token, name = _peer_fields(fields, invalid)
    return PeeringDetails(address, url, token, name)


# -- making the peer --------------------------------------------------------------------------
