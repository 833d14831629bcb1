"""The Interledger Protocol v4 core, sans-IO: OER, packets, addresses, errors, IL-DCP."""

from kiungo.ilp.address import is_prefix_of, is_valid_address
from kiungo.ilp.errors import (
    AmountTooLargeError,
    IlpError,
    decode_amount_too_large_data,
    encode_amount_too_large_data,
)
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import (
    PEER_PROTOCOL_CONDITION,
    PEER_PROTOCOL_FULFILLMENT,
    Fulfill,
    Packet,
    PacketType,
    Prepare,
    Reject,
    decode_packet,
    decode_prepare,
    decode_reply,
    encode_packet,
    fulfillment_matches,
    rewrite_prepare,
)

__all__ = [
    "PEER_PROTOCOL_CONDITION",
    "PEER_PROTOCOL_FULFILLMENT",
    "AmountTooLargeError",
    "DecodeError",
    "Fulfill",
    "IlpError",
    "Packet",
    "PacketType",
    "Prepare",
    "Reject",
    "decode_amount_too_large_data",
    "decode_packet",
    "decode_prepare",
    "decode_reply",
    "encode_amount_too_large_data",
    "encode_packet",
    "fulfillment_matches",
    "is_prefix_of",
    "is_valid_address",
    "rewrite_prepare",
]
