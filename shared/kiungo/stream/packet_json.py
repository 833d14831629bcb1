"""The JSON form of plaintext STREAM packets (RFC 29 §5), as in RFC 29's packet fixtures.

The shape is ilp-protocol-stream's (``StreamPacketFixtures.json``): ``sequence``, ``packetType``,
``amount`` (the prepare amount) and ``frames``, each frame ``{type, name, ...}`` with camelCase
fields. UInt64 values are decimal strings, small integers (error codes, asset scale) numbers,
StreamData ``data`` and StreamReceipt ``receipt`` base64. A frame type this implementation does
not know is ``{type, name: "Unknown", data: <hex of its content>}``; reading accepts that form for
any type, so a deliberately malformed known frame can be written too.

Reading is strict like :mod:`kiungo.ilp.packet_json`: unknown fields are refused and every error
is a ``ValueError`` naming the field, e.g. ``frames[1].shares``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.packet_json import (
    hex_from_json,
    object_from_json,
    string_from_json,
    u64_from_json,
)
from kiungo.stream.packet import (
    ConnectionAssetDetailsFrame,
    ConnectionCloseFrame,
    ConnectionDataBlockedFrame,
    ConnectionMaxDataFrame,
    ConnectionMaxStreamIdFrame,
    ConnectionNewAddressFrame,
    ConnectionStreamIdBlockedFrame,
    Frame,
    StreamCloseFrame,
    StreamDataBlockedFrame,
    StreamDataFrame,
    StreamMaxDataFrame,
    StreamMaxMoneyFrame,
    StreamMoneyBlockedFrame,
    StreamMoneyFrame,
    StreamPacket,
    StreamReceiptFrame,
    UnknownFrame,
)

__all__ = [
    "UNKNOWN_FRAME_NAME",
    "frame_from_json",
    "frame_to_json",
    "stream_packet_from_json",
    "stream_packet_to_json",
]

UNKNOWN_FRAME_NAME = "Unknown"

# name -> (frame class, [(JSON key, attribute, kind)]) with kind one of:
# "u64" decimal string, "u8" JSON number 0-255, "text" UTF-8 string, "address" ILP address or "",
# "base64" bytes.
_FrameSpec = tuple[type[Frame], tuple[tuple[str, str, str], ...]]
_FRAMES: dict[str, _FrameSpec] = {
    "ConnectionClose": (
        ConnectionCloseFrame,
        (("errorCode", "error_code", "u8"), ("errorMessage", "error_message", "text")),
    ),
    "ConnectionNewAddress": (
        ConnectionNewAddressFrame,
        (("sourceAccount", "source_account", "address"),),
    ),
    "ConnectionMaxData": (ConnectionMaxDataFrame, (("maxOffset", "max_offset", "u64"),)),
    "ConnectionDataBlocked": (ConnectionDataBlockedFrame, (("maxOffset", "max_offset", "u64"),)),
    "ConnectionMaxStreamId": (
        ConnectionMaxStreamIdFrame,
        (("maxStreamId", "max_stream_id", "u64"),),
    ),
    "ConnectionStreamIdBlocked": (
        ConnectionStreamIdBlockedFrame,
        (("maxStreamId", "max_stream_id", "u64"),),
    ),
    "ConnectionAssetDetails": (
        ConnectionAssetDetailsFrame,
        (
            ("sourceAssetCode", "source_asset_code", "text"),
            ("sourceAssetScale", "source_asset_scale", "u8"),
        ),
    ),
    "StreamClose": (
        StreamCloseFrame,
        (
            ("streamId", "stream_id", "u64"),
            ("errorCode", "error_code", "u8"),
            ("errorMessage", "error_message", "text"),
        ),
    ),
    "StreamMoney": (
        StreamMoneyFrame,
        (("streamId", "stream_id", "u64"), ("shares", "shares", "u64")),
    ),
    "StreamMaxMoney": (
        StreamMaxMoneyFrame,
        (
            ("streamId", "stream_id", "u64"),
            ("receiveMax", "receive_max", "u64"),
            ("totalReceived", "total_received", "u64"),
        ),
    ),
    "StreamMoneyBlocked": (
        StreamMoneyBlockedFrame,
        (
            ("streamId", "stream_id", "u64"),
            ("sendMax", "send_max", "u64"),
            ("totalSent", "total_sent", "u64"),
        ),
    ),
    "StreamData": (
        StreamDataFrame,
        (("streamId", "stream_id", "u64"), ("offset", "offset", "u64"), ("data", "data", "base64")),
    ),
    "StreamMaxData": (
        StreamMaxDataFrame,
        (("streamId", "stream_id", "u64"), ("maxOffset", "max_offset", "u64")),
    ),
    "StreamDataBlocked": (
        StreamDataBlockedFrame,
        (("streamId", "stream_id", "u64"), ("maxOffset", "max_offset", "u64")),
    ),
    "StreamReceipt": (
        StreamReceiptFrame,
        (("streamId", "stream_id", "u64"), ("receipt", "receipt", "base64")),
    ),
}
_NAME_BY_CLASS = {cls: name for name, (cls, _) in _FRAMES.items()}
_NAME_BY_TYPE = {cls.TYPE: name for name, (cls, _) in _FRAMES.items()}


def stream_packet_to_json(packet: StreamPacket) -> dict[str, Any]:
    """``packet`` in the fixtures' shape."""
    return {
        "sequence": str(packet.sequence),
        "packetType": packet.ilp_packet_type,
        "amount": str(packet.prepare_amount),
        "frames": [frame_to_json(frame) for frame in packet.frames],
    }


def stream_packet_from_json(obj: object) -> StreamPacket:
    """The STREAM packet a JSON object describes; ``ValueError`` naming the field otherwise.

    ``frames`` may be left out (no frames).
    """
    fields = object_from_json(
        obj, "STREAM packet", ("sequence", "packetType", "amount"), ("frames",)
    )
    packet_type = fields["packetType"]
    if isinstance(packet_type, bool) or packet_type not in (12, 13, 14):
        raise ValueError(f"packetType: {packet_type!r} is not 12, 13 or 14")
    frames = fields.get("frames", [])
    if not isinstance(frames, list):
        raise ValueError("frames: must be a JSON array")
    return StreamPacket(
        sequence=u64_from_json(fields["sequence"], "sequence"),
        ilp_packet_type=packet_type,
        prepare_amount=u64_from_json(fields["amount"], "amount"),
        frames=[frame_from_json(frame, f"frames[{i}]") for i, frame in enumerate(frames)],
    )


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """One frame as ``{type, name, ...fields}``."""
    if isinstance(frame, UnknownFrame):
        return {"type": frame.frame_type, "name": UNKNOWN_FRAME_NAME, "data": frame.content.hex()}
    name = _NAME_BY_CLASS[type(frame)]
    out: dict[str, Any] = {"type": frame.TYPE, "name": name}
    for key, attr, kind in _FRAMES[name][1]:
        value = getattr(frame, attr)
        if kind == "u64":
            out[key] = str(value)
        elif kind == "base64":
            out[key] = base64.b64encode(value).decode("ascii")
        else:
            out[key] = value
    return out


def frame_from_json(obj: object, where: str = "frame") -> Frame:
    """One frame from ``{type, name, ...fields}``; either ``type`` or ``name`` may be left out."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: must be a JSON object")
    name = obj.get("name")
    frame_type = obj.get("type")
    if frame_type is not None and (
        isinstance(frame_type, bool)
        or not isinstance(frame_type, int)
        or not 0 <= frame_type <= 255
    ):
        raise ValueError(f"{where}.type: {frame_type!r} is not a frame type (0-255)")
    if name is None:
        if frame_type is None:
            raise ValueError(f"{where}: needs a 'name' or a 'type'")
        if frame_type not in _NAME_BY_TYPE:
            raise ValueError(
                f"{where}: frame type {frame_type} is unknown; write it as "
                f'{{"type": {frame_type}, "name": "Unknown", "data": "<hex>"}}'
            )
        name = _NAME_BY_TYPE[frame_type]
    fields = {k: v for k, v in obj.items() if k not in ("type", "name")}
    if name == UNKNOWN_FRAME_NAME:
        if frame_type is None:
            raise ValueError(f"{where}: an Unknown frame needs its 'type'")
        object_from_json(fields, where, ("data",))
        return UnknownFrame(frame_type, hex_from_json(fields["data"], f"{where}.data"))
    if name not in _FRAMES:
        raise ValueError(f"{where}.name: {name!r} is not a STREAM frame name")
    cls, spec = _FRAMES[name]
    if frame_type is not None and frame_type != cls.TYPE:
        raise ValueError(f"{where}: type {frame_type} does not match {name} ({cls.TYPE})")
    object_from_json(fields, where, tuple(key for key, _, _ in spec))
    kwargs = {
        attr: _field_from_json(fields[key], f"{where}.{key}", kind) for key, attr, kind in spec
    }
    return cls(**kwargs)


def _field_from_json(value: object, field: str, kind: str) -> Any:
    if kind == "u64":
        return u64_from_json(value, field)
    if kind == "u8":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise ValueError(f"{field}: {value!r} is not a number from 0 to 255")
        return value
    if kind == "base64":
        if not isinstance(value, str):
            raise ValueError(f"{field}: must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"{field}: {value[:40]!r} is not standard base64") from None
    value = string_from_json(value, field)
    if kind == "address" and value and not is_valid_address(value):
        raise ValueError(f"{field}: {value[:80]!r} is not an ILP address")
    return value
