"""Peer protocols answered here and never forwarded: IL-DCP (``peer.config``, RFC 31)."""

from __future__ import annotations

from datetime import datetime

from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.ilp.errors import InvalidPacketError
from kiungo.ilp.ildcp import IldcpError, IldcpResponse, build_response, validate_request
from kiungo.ilp.packet import Prepare, encode_packet

__all__ = ["answer_peer_protocol"]


def answer_peer_protocol(node: Node, peer: PeerInfo, prepare: Prepare, now: datetime) -> bytes:
    if prepare.destination != "peer.config":
        raise InvalidPacketError(f"unsupported peer protocol {prepare.destination}")
    try:
        validate_request(prepare, now)
    except IldcpError as exc:
        raise InvalidPacketError(str(exc)) from None
    response = IldcpResponse(peer.static_ilp_address, peer.asset_scale, peer.asset_code)
    return encode_packet(build_response(response))
