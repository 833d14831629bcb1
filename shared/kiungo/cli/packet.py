"""``kiungo packet decode`` and ``kiungo packet encode``: ILPv4 packets (RFC 27) to JSON and back.

The JSON is :mod:`kiungo.ilp.packet_json` (ilp-packet's field names, binary fields in hex). Given
the connection's STREAM shared secret, ``decode`` also opens the STREAM packet inside ``data``
(RFC 29 §5.2) and checks a Prepare's condition, and ``encode`` seals a ``stream`` object into
``data``: the round trip a receiver and a sender make.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiungo.cli.arguments import (
    CommandError,
    Subcommands,
    bytes_from_base64,
    bytes_from_hex,
    command_group,
    paragraphs,
    print_json,
    read_argument,
    secret_from_base64,
)
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import PacketType, Prepare, decode_packet, encode_packet
from kiungo.ilp.packet_json import packet_from_json, packet_to_json, packet_type_from_json
from kiungo.stream.crypto import DecryptionError, StreamKeys
from kiungo.stream.packet import StreamPacket, decode_stream_packet, encode_stream_packet
from kiungo.stream.packet_json import stream_packet_from_json, stream_packet_to_json

__all__ = ["register"]

_JSON_FORM = """\
packet JSON (binary fields are hex):
  Prepare  {"type": 12, "amount": "107", "expiresAt": "2017-12-23T01:21:40.549Z",
            "executionCondition": <32 bytes hex>, "destination": "example.alice", "data": <hex>}
  Fulfill  {"type": 13, "fulfillment": <32 bytes hex>, "data": <hex>}
  Reject   {"type": 14, "code": "F02", "triggeredBy": "g.connector", "message": "...",
            "data": <hex>}
  "type" may also be "prepare", "fulfill" or "reject"; "data" and "message" may be left out.

STREAM JSON (the "stream" object; RFC 29 fixture shape, u64 values as decimal strings):
  {"sequence": "1", "packetType": 12, "amount": "0",
   "frames": [{"type": 17, "name": "StreamMoney", "streamId": "1", "shares": "1"}]}
  StreamData "data" and StreamReceipt "receipt" are base64; a frame of unknown type is
  {"type": <n>, "name": "Unknown", "data": <hex>}.
"""

_STREAM_KEYS_HELP = (
    "the connection's STREAM shared secret: 32 bytes in base64 (standard or URL-safe, "
    "padding optional), as SPSP's shared_secret"
)

# Keys that `decode --secret` adds to the packet JSON; `encode` accepts its output back.
_DECODE_ANNOTATIONS = ("stream", "stream_error", "fulfillable")


def register(subparsers: Subcommands) -> None:
    commands = command_group(
        subparsers,
        "packet",
        "decode or encode ILPv4 packets",
        "Decode or encode ILPv4 packets (RFC 27), optionally with their STREAM data.",
    )

    decode = commands.add_parser(
        "decode",
        help="print an ILP packet as JSON",
        description=paragraphs(
            "Print an ILP packet as JSON.",
            'With --secret, also decrypt its data as a STREAM packet ("stream", or '
            '"stream_error" when it does not decrypt or parse) and, for a Prepare, say whether '
            'the STREAM fulfillment matches its condition ("fulfillable").',
        ),
        epilog=_JSON_FORM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument(
        "packet",
        metavar="PACKET",
        help="the encoded packet in hex (whitespace ignored), or - to read it from stdin",
    )
    decode.add_argument(
        "--base64",
        action="store_true",
        help="PACKET is base64 (standard or URL-safe) rather than hex",
    )
    decode.add_argument("--secret", metavar="B64", help=_STREAM_KEYS_HELP)
    decode.set_defaults(handler=_decode)

    encode = commands.add_parser(
        "encode",
        help="print a JSON packet as hex",
        description=paragraphs(
            "Print the hex encoding of a packet given as JSON. The output of `kiungo packet "
            "decode` is accepted as input.",
            'With --secret, a "stream" object and no "data", the STREAM packet is encrypted '
            '(random IV) into "data", and a Prepare without "executionCondition" gets the STREAM '
            "condition for that data.",
        ),
        epilog=_JSON_FORM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument(
        "json", metavar="JSON", help="the packet as a JSON object, or - to read it from stdin"
    )
    encode.add_argument("--secret", metavar="B64", help=_STREAM_KEYS_HELP)
    encode.set_defaults(handler=_encode)


def _decode(args: argparse.Namespace) -> int:
    text = read_argument(args.packet)
    raw = bytes_from_base64(text, "PACKET") if args.base64 else bytes_from_hex(text, "PACKET")
    keys = _keys(args.secret)
    try:
        packet = decode_packet(raw)
    except DecodeError as exc:
        raise CommandError(f"not an ILP packet: {exc}") from None
    out = packet_to_json(packet)
    if keys is not None:
        if isinstance(packet, Prepare):
            out["fulfillable"] = keys.condition(packet.data) == packet.execution_condition
        out.update(_open_stream(keys, packet.data))
    print_json(out)
    return 0


def _open_stream(keys: StreamKeys, data: bytes) -> dict[str, Any]:
    if not data:
        return {"stream_error": "the packet has no data"}
    try:
        plaintext = keys.decrypt(data)
    except DecryptionError as exc:
        return {"stream_error": str(exc)}
    try:
        return {"stream": stream_packet_to_json(decode_stream_packet(plaintext))}
    except DecodeError as exc:
        return {"stream_error": f"decrypted data is not a STREAM packet: {exc}"}


def _encode(args: argparse.Namespace) -> int:
    text = read_argument(args.json)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"JSON: {exc}") from None
    except RecursionError:
        raise CommandError("JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise CommandError("JSON: the packet must be a JSON object")
    fields = {k: v for k, v in obj.items() if k not in _DECODE_ANNOTATIONS}
    stream = obj.get("stream")
    keys = _keys(args.secret)
    try:
        if stream is not None and "data" not in fields:
            if keys is None:
                raise CommandError('a "stream" object needs --secret to be encrypted into "data"')
            data = keys.encrypt(encode_stream_packet(_stream_packet(stream)))
            fields["data"] = data.hex()
            if (
                packet_type_from_json(fields.get("type")) == PacketType.PREPARE
                and "executionCondition" not in fields
            ):
                fields["executionCondition"] = keys.condition(data).hex()
        encoded = encode_packet(packet_from_json(fields))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(encoded.hex())
    return 0


def _stream_packet(obj: object) -> StreamPacket:
    try:
        return stream_packet_from_json(obj)
    except ValueError as exc:
        raise CommandError(f"stream: {exc}") from None


def _keys(secret: str | None) -> StreamKeys | None:
    return None if secret is None else StreamKeys(secret_from_base64(secret, "--secret"))
