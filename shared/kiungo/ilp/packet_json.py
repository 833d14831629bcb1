"""The JSON form of ILPv4 packets (RFC 27), in the field names of JS ilp-packet.

``type`` (12, 13, 14) plus the packet's fields: Prepare ``amount`` (decimal string), ``expiresAt``
(ISO 8601 UTC with milliseconds, ``2017-12-23T01:21:40.549Z``), ``executionCondition``,
``destination``, ``data``; Fulfill ``fulfillment``, ``data``; Reject ``code``, ``triggeredBy``,
``message``, ``data``. Binary fields are lowercase hex here, where ilp-packet's own fixtures use
base64: hex is what packet dumps and logs show, and it is what people compare by eye.

Reading is strict so that a typo is an error rather than a silently different packet: unknown
fields are refused, binary fields must be hex of the right length, and every error is a
``ValueError`` naming the field. ``data`` and a Reject's ``message`` may be left out (empty).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.oer import MAX_UINT64
from kiungo.ilp.packet import (
    MAX_DATA_LENGTH,
    MAX_MESSAGE_LENGTH,
    Fulfill,
    Packet,
    PacketType,
    Prepare,
    Reject,
    encode_expiry,
)

__all__ = [
    "hex_from_json",
    "object_from_json",
    "packet_from_json",
    "packet_to_json",
    "packet_type_from_json",
    "string_from_json",
    "u64_from_json",
]

_TYPE_NAMES = {
    "prepare": PacketType.PREPARE,
    "fulfill": PacketType.FULFILL,
    "reject": PacketType.REJECT,
}
_FIELDS = {
    PacketType.PREPARE: (
        ("amount", "expiresAt", "executionCondition", "destination"),
        ("data",),
    ),
    PacketType.FULFILL: (("fulfillment",), ("data",)),
    PacketType.REJECT: (("code", "triggeredBy"), ("message", "data")),
}
_PACKET_NAMES = {
    PacketType.PREPARE: "Prepare",
    PacketType.FULFILL: "Fulfill",
    PacketType.REJECT: "Reject",
}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_DECIMAL = re.compile(r"[0-9]+")


def packet_to_json(packet: Packet) -> dict[str, Any]:
    """``packet`` as a JSON-ready dict: ``type`` first, then the fields in wire order."""
    if isinstance(packet, Prepare):
        return {
            "type": PacketType.PREPARE,
            "amount": str(packet.amount),
            "expiresAt": _expiry_to_json(packet.expires_at),
            "executionCondition": packet.execution_condition.hex(),
            "destination": packet.destination,
            "data": packet.data.hex(),
        }
    if isinstance(packet, Fulfill):
        return {
            "type": PacketType.FULFILL,
            "fulfillment": packet.fulfillment.hex(),
            "data": packet.data.hex(),
        }
    return {
        "type": PacketType.REJECT,
        "code": packet.code,
        "triggeredBy": packet.triggered_by,
        "message": packet.message,
        "data": packet.data.hex(),
    }


def packet_from_json(obj: object) -> Packet:
    """The packet a JSON object describes; ``ValueError`` naming the field if it is not one.

    ``type`` is 12, 13 or 14, or the name ``"prepare"``, ``"fulfill"`` or ``"reject"``.
    """
    if not isinstance(obj, dict):
        raise ValueError("an ILP packet must be a JSON object")
    packet_type = packet_type_from_json(obj.get("type"))
    required, optional = _FIELDS[packet_type]
    fields = object_from_json(
        {k: v for k, v in obj.items() if k != "type"},
        _PACKET_NAMES[packet_type],
        required,
        optional,
    )
    data = hex_from_json(fields.get("data", ""), "data")
    if len(data) > MAX_DATA_LENGTH:
        raise ValueError(f"data: {len(data)} bytes is more than {MAX_DATA_LENGTH}")
    if packet_type == PacketType.PREPARE:
        destination = string_from_json(fields["destination"], "destination")
        if not is_valid_address(destination):
            raise ValueError(f"destination: {destination[:80]!r} is not a valid ILP address")
        return Prepare(
            amount=u64_from_json(fields["amount"], "amount"),
            expires_at=_expiry_from_json(fields["expiresAt"]),
            execution_condition=hex_from_json(
                fields["executionCondition"], "executionCondition", length=32
            ),
            destination=destination,
            data=data,
        )
    if packet_type == PacketType.FULFILL:
        return Fulfill(hex_from_json(fields["fulfillment"], "fulfillment", length=32), data)
    code = string_from_json(fields["code"], "code")
    if len(code) != 3 or not code.isascii():
        raise ValueError(f"code: {code!r} is not 3 ASCII characters")
    triggered_by = string_from_json(fields["triggeredBy"], "triggeredBy")
    if triggered_by and not is_valid_address(triggered_by):
        raise ValueError(f"triggeredBy: {triggered_by[:80]!r} is not a valid ILP address")
    message = string_from_json(fields.get("message", ""), "message")
    if len(message.encode("utf-8")) > MAX_MESSAGE_LENGTH:
        raise ValueError(f"message: more than {MAX_MESSAGE_LENGTH} bytes of UTF-8")
    return Reject(code, triggered_by, message, data)


def object_from_json(
    obj: object, what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``obj`` as a dict, checked to hold all of ``required`` and nothing outside ``optional``."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: must be a JSON object")
    unknown = [key for key in obj if key not in required and key not in optional]
    if unknown:
        allowed = ", ".join((*required, *optional))
        raise ValueError(f"{what}: unknown field {unknown[0]!r} (fields are {allowed})")
    missing = [key for key in required if key not in obj]
    if missing:
        raise ValueError(f"{what}: missing field {missing[0]!r}")
    return obj


def u64_from_json(value: object, field: str) -> int:
    """A UInt64 given as a decimal string (the JSON convention) or as a JSON integer."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ValueError(f"{field}: {value!r} is not a decimal string")
    if not 0 <= number <= MAX_UINT64:
        raise ValueError(f"{field}: {number} is not a UInt64")
    return number


def hex_from_json(value: object, field: str, *, length: int | None = None) -> bytes:
    """Bytes given as a hex string (either case, no separators), of ``length`` bytes if given."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ValueError(f"{field}: {_shorten(value)} is not a hex string")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise ValueError(
            f"{field}: must be {length} bytes ({2 * length} hex digits), got {len(raw)} bytes"
        )
    return raw


def packet_type_from_json(value: object) -> int:
    """The type a JSON ``type`` names: 12, 13, 14, ``"prepare"``, ``"fulfill"``, ``"reject"``."""
    if isinstance(value, str) and value.lower() in _TYPE_NAMES:
        return _TYPE_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in _FIELDS:
        return value
    raise ValueError(
        f"type: {value!r} is not an ILP packet type (12/13/14 or prepare/fulfill/reject)"
    )


def string_from_json(value: object, field: str) -> str:
    """``value`` as a string field: a str that UTF-8 can encode."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: {_shorten(value)} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: is not encodable as UTF-8") from None
    return value


def _expiry_to_json(when: datetime) -> str:
    # Formatting the wire digits makes the JSON show exactly the instant the packet carries,
    # rounding included.
    d = encode_expiry(when).decode("ascii")
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}.{d[14:17]}Z"


def _expiry_from_json(value: object) -> datetime:
    text = string_from_json(value, "expiresAt")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expiresAt: {text!r} is not an ISO 8601 time (like 2017-12-23T01:21:40.549Z)"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"expiresAt: {text!r} has no time zone (end it with Z for UTC)")
    if when.microsecond % 1000:
        raise ValueError(f"expiresAt: {text!r} is more precise than the wire's milliseconds")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"expiresAt: {text!r} is out of range") from None


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
