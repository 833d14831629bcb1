"""STREAM packets and frames (RFC 29 §5), plaintext form.

``version (1) || ilpPacketType || sequence VarUInt || prepareAmount VarUInt || frames``, each
frame ``type UInt8 || content VarOctetString``. Unknown frame types are kept as
:class:`UnknownFrame` (receivers ignore them), bytes after the frames are ignored, and
``receiveMax``/``sendMax`` of nine or more bytes saturate to 2^64-1. A known frame whose content
does not parse makes the whole packet invalid, as in the reference implementations. Every decoding
failure raises :class:`kiungo.ilp.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.oer import (
    MAX_UINT64,
    DecodeError,
    Reader,
    encode_var_octets,
    encode_var_uint,
)

__all__ = [
    "ConnectionAssetDetailsFrame",
    "ConnectionCloseFrame",
    "ConnectionDataBlockedFrame",
    "ConnectionMaxDataFrame",
    "ConnectionMaxStreamIdFrame",
    "ConnectionNewAddressFrame",
    "ConnectionStreamIdBlockedFrame",
    "ErrorCode",
    "Frame",
    "FrameType",
    "StreamCloseFrame",
    "StreamDataBlockedFrame",
    "StreamDataFrame",
    "StreamMaxDataFrame",
    "StreamMaxMoneyFrame",
    "StreamMoneyBlockedFrame",
    "StreamMoneyFrame",
    "StreamPacket",
    "StreamReceiptFrame",
    "UnknownFrame",
    "decode_stream_packet",
    "encode_stream_packet",
]

STREAM_VERSION = 1


class FrameType:
    CONNECTION_CLOSE = 0x01
    CONNECTION_NEW_ADDRESS = 0x02
    CONNECTION_MAX_DATA = 0x03
    CONNECTION_DATA_BLOCKED = 0x04
    CONNECTION_MAX_STREAM_ID = 0x05
    CONNECTION_STREAM_ID_BLOCKED = 0x06
    CONNECTION_ASSET_DETAILS = 0x07
    STREAM_CLOSE = 0x10
    STREAM_MONEY = 0x11
    STREAM_MAX_MONEY = 0x12
    STREAM_MONEY_BLOCKED = 0x13
    STREAM_DATA = 0x14
    STREAM_MAX_DATA = 0x15
    STREAM_DATA_BLOCKED = 0x16
    STREAM_RECEIPT = 0x17


class ErrorCode:
    """ConnectionClose / StreamClose codes (RFC 29 §5.4). Unknown codes stay raw integers."""

    NO_ERROR = 0x01
    INTERNAL_ERROR = 0x02
    ENDPOINT_BUSY = 0x03
    FLOW_CONTROL_ERROR = 0x04
    STREAM_ID_ERROR = 0x05
    STREAM_STATE_ERROR = 0x06
    FRAME_FORMAT_ERROR = 0x07
    PROTOCOL_VIOLATION = 0x08
    APPLICATION_ERROR = 0x09


def _u8(value: int, what: str) -> bytes:
    if not 0 <= value <= 255:
        raise ValueError(f"{what} must fit in a UInt8")
    return bytes((value,))


@dataclass(slots=True)
class ConnectionCloseFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_CLOSE
    error_code: int
    error_message: str = ""

    def encode_content(self) -> bytes:
        return _u8(self.error_code, "error code") + encode_var_octets(
            self.error_message.encode("utf-8")
        )

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionCloseFrame:
        return cls(r.read_uint8(), r.read_utf8())


@dataclass(slots=True)
class ConnectionNewAddressFrame:
    """The sender's address. @interledger/pay sends ``''`` in its first probe; we accept it."""

    TYPE: ClassVar[int] = FrameType.CONNECTION_NEW_ADDRESS
    source_account: str

    def encode_content(self) -> bytes:
        return encode_var_octets(self.source_account.encode("ascii"))

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionNewAddressFrame:
        address = r.read_ascii()
        if address and not is_valid_address(address):
            raise DecodeError(f"ConnectionNewAddress {address[:80]!r} is not an ILP address")
        return cls(address)


@dataclass(slots=True)
class ConnectionMaxDataFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_MAX_DATA
    max_offset: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.max_offset)

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionMaxDataFrame:
        return cls(r.read_var_uint())


@dataclass(slots=True)
class ConnectionDataBlockedFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_DATA_BLOCKED
    max_offset: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.max_offset)

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionDataBlockedFrame:
        return cls(r.read_var_uint())


@dataclass(slots=True)
class ConnectionMaxStreamIdFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_MAX_STREAM_ID
    max_stream_id: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.max_stream_id)

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionMaxStreamIdFrame:
        return cls(r.read_var_uint())


@dataclass(slots=True)
class ConnectionStreamIdBlockedFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_STREAM_ID_BLOCKED
    max_stream_id: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.max_stream_id)

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionStreamIdBlockedFrame:
        return cls(r.read_var_uint())


@dataclass(slots=True)
class ConnectionAssetDetailsFrame:
    TYPE: ClassVar[int] = FrameType.CONNECTION_ASSET_DETAILS
    source_asset_code: str
    source_asset_scale: int

    def encode_content(self) -> bytes:
        return encode_var_octets(self.source_asset_code.encode("utf-8")) + _u8(
            self.source_asset_scale, "asset scale"
        )

    @classmethod
    def decode_content(cls, r: Reader) -> ConnectionAssetDetailsFrame:
        return cls(r.read_utf8(), r.read_uint8())


@dataclass(slots=True)
class StreamCloseFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_CLOSE
    stream_id: int
    error_code: int
    error_message: str = ""

    def encode_content(self) -> bytes:
        return (
            encode_var_uint(self.stream_id)
            + _u8(self.error_code, "error code")
            + encode_var_octets(self.error_message.encode("utf-8"))
        )

    @classmethod
    def decode_content(cls, r: Reader) -> StreamCloseFrame:
        return cls(r.read_var_uint(), r.read_uint8(), r.read_utf8())


@dataclass(slots=True)
class StreamMoneyFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_MONEY
    stream_id: int
    shares: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.stream_id) + encode_var_uint(self.shares)

    @classmethod
    def decode_content(cls, r: Reader) -> StreamMoneyFrame:
        return cls(r.read_var_uint(), r.read_var_uint())


@dataclass(slots=True)
class StreamMaxMoneyFrame:
    """``receive_max`` of 2^64-1 means unlimited; larger values saturate to it."""

    TYPE: ClassVar[int] = FrameType.STREAM_MAX_MONEY
    stream_id: int
    receive_max: int
    total_received: int

    def encode_content(self) -> bytes:
        return (
            encode_var_uint(self.stream_id)
            + encode_var_uint(min(self.receive_max, MAX_UINT64))
            + encode_var_uint(self.total_received)
        )

    @classmethod
    def decode_content(cls, r: Reader) -> StreamMaxMoneyFrame:
        return cls(r.read_var_uint(), r.read_var_uint_saturating(), r.read_var_uint())


@dataclass(slots=True)
class StreamMoneyBlockedFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_MONEY_BLOCKED
    stream_id: int
    send_max: int
    total_sent: int

    def encode_content(self) -> bytes:
        return (
            encode_var_uint(self.stream_id)
            + encode_var_uint(min(self.send_max, MAX_UINT64))
            + encode_var_uint(self.total_sent)
        )

    @classmethod
    def decode_content(cls, r: Reader) -> StreamMoneyBlockedFrame:
        return cls(r.read_var_uint(), r.read_var_uint_saturating(), r.read_var_uint())


@dataclass(slots=True)
class StreamDataFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_DATA
    stream_id: int
    offset: int
    data: bytes

    def encode_content(self) -> bytes:
        return (
            encode_var_uint(self.stream_id)
            + encode_var_uint(self.offset)
            + encode_var_octets(self.data)
        )

    @classmethod
    def decode_content(cls, r: Reader) -> StreamDataFrame:
        return cls(r.read_var_uint(), r.read_var_uint(), r.read_var_octets())


@dataclass(slots=True)
class StreamMaxDataFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_MAX_DATA
    stream_id: int
    max_offset: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.stream_id) + encode_var_uint(self.max_offset)

    @classmethod
    def decode_content(cls, r: Reader) -> StreamMaxDataFrame:
        return cls(r.read_var_uint(), r.read_var_uint())


@dataclass(slots=True)
class StreamDataBlockedFrame:
    TYPE: ClassVar[int] = FrameType.STREAM_DATA_BLOCKED
    stream_id: int
    max_offset: int

    def encode_content(self) -> bytes:
        return encode_var_uint(self.stream_id) + encode_var_uint(self.max_offset)

    @classmethod
    def decode_content(cls, r: Reader) -> StreamDataBlockedFrame:
        return cls(r.read_var_uint(), r.read_var_uint())


@dataclass(slots=True)
class StreamReceiptFrame:
    """A 58-byte RFC 39 receipt (removed from RFC 29 in 2026; JS senders still read it)."""

    TYPE: ClassVar[int] = FrameType.STREAM_RECEIPT
    stream_id: int
    receipt: bytes

    def encode_content(self) -> bytes:
        return encode_var_uint(self.stream_id) + encode_var_octets(self.receipt)

    @classmethod
    def decode_content(cls, r: Reader) -> StreamReceiptFrame:
        return cls(r.read_var_uint(), r.read_var_octets())


@dataclass(slots=True)
class UnknownFrame:
    """A frame type this implementation does not know, kept so it re-encodes unchanged."""

    frame_type: int
    content: bytes

    @property
    def TYPE(self) -> int:
        return self.frame_type

    def encode_content(self) -> bytes:
        return self.content


Frame = (
    ConnectionCloseFrame
    | ConnectionNewAddressFrame
    | ConnectionMaxDataFrame
    | ConnectionDataBlockedFrame
    | ConnectionMaxStreamIdFrame
    | ConnectionStreamIdBlockedFrame
    | ConnectionAssetDetailsFrame
    | StreamCloseFrame
    | StreamMoneyFrame
    | StreamMaxMoneyFrame
    | StreamMoneyBlockedFrame
    | StreamDataFrame
    | StreamMaxDataFrame
    | StreamDataBlockedFrame
    | StreamReceiptFrame
    | UnknownFrame
)

_DECODERS = {
    cls.TYPE: cls.decode_content
    for cls in (
        ConnectionCloseFrame,
        ConnectionNewAddressFrame,
        ConnectionMaxDataFrame,
        ConnectionDataBlockedFrame,
        ConnectionMaxStreamIdFrame,
        ConnectionStreamIdBlockedFrame,
        ConnectionAssetDetailsFrame,
        StreamCloseFrame,
        StreamMoneyFrame,
        StreamMaxMoneyFrame,
        StreamMoneyBlockedFrame,
        StreamDataFrame,
        StreamMaxDataFrame,
        StreamDataBlockedFrame,
        StreamReceiptFrame,
    )
}


@dataclass(slots=True)
class StreamPacket:
    sequence: int
    ilp_packet_type: int
    prepare_amount: int
    frames: list[Frame] = field(default_factory=list)

    def find(self, frame_type: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if type(f) is frame_type]


def encode_stream_packet(packet: StreamPacket) -> bytes:
    parts = [
        bytes((STREAM_VERSION,)),
        _u8(packet.ilp_packet_type, "ILP packet type"),
        encode_var_uint(packet.sequence),
        encode_var_uint(packet.prepare_amount),
        encode_var_uint(len(packet.frames)),
    ]
    for frame in packet.frames:
        parts.append(_u8(frame.TYPE, "frame type"))
        parts.append(encode_var_octets(frame.encode_content()))
    return b"".join(parts)


def decode_stream_packet(raw: bytes) -> StreamPacket:
    r = Reader(raw)
    version = r.read_uint8()
    if version != STREAM_VERSION:
        raise DecodeError(f"unsupported STREAM version {version}")
    packet_type = r.read_uint8()
    if packet_type not in (12, 13, 14):
        raise DecodeError(f"STREAM packet names ILP packet type {packet_type}")
    sequence = r.read_var_uint()
    prepare_amount = r.read_var_uint()
    count = r.read_var_uint()
    frames: list[Frame] = []
    for _ in range(count):
        frame_type = r.read_uint8()
        content = r.read_var_octets()
        decoder = _DECODERS.get(frame_type)
        if decoder is None:
            frames.append(UnknownFrame(frame_type, content))
        else:
            try:
                frames.append(decoder(Reader(content)))
            except DecodeError as exc:
                raise DecodeError(f"frame type {frame_type}: {exc}") from None
    return StreamPacket(sequence, packet_type, prepare_amount, frames)
