"""STREAM packet codec (RFC 29 §5) against the official fixtures and the interledger-rs vectors.

``stream_packet_fixtures.json`` is RFC 29's ``StreamPacketFixtures.json``; its packets are in the
JSON shape of ilp-protocol-stream (camelCase fields, u64 values as decimal strings, binary as
base64). ``stream_packets_interledger_rs.json`` adds a packet with every RFC frame, unknown frames,
fuzz cases and saturating receiveMax/sendMax contents.
"""

from __future__ import annotations

import base64
from typing import Any, get_args

import pytest
from tests.vectors import load_vector

from kiungo.ilp.oer import MAX_UINT64, DecodeError, Reader, encode_var_octets
from kiungo.stream.packet import (
    ConnectionCloseFrame,
    ConnectionNewAddressFrame,
    Frame,
    StreamMaxMoneyFrame,
    StreamMoneyBlockedFrame,
    StreamPacket,
    UnknownFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.packet_json import stream_packet_from_json, stream_packet_to_json

FIXTURES: list[dict[str, Any]] = load_vector("stream_packet_fixtures.json")["vectors"]
RS: dict[str, Any] = load_vector("stream_packets_interledger_rs.json")

# The fixtures' JSON shape is kiungo.stream.packet_json's; the interledger-rs vectors spell two
# things their own way, mapped here.
packet_to_json = stream_packet_to_json
packet_from_json = stream_packet_from_json


def _normalise_rs_json(obj: dict[str, Any]) -> dict[str, Any]:
    """An interledger-rs vector's packet in our JSON shape: StreamData text as base64, unknown
    frames' ``content_hex`` as ``name: Unknown`` with hex ``data``."""
    frames = []
    for original in obj["frames"]:
        frame = dict(original)
        if "data_utf8" in frame:
            frame["data"] = base64.b64encode(frame.pop("data_utf8").encode("utf-8")).decode()
        if "content_hex" in frame:
            frame = {"type": frame["type"], "name": "Unknown", "data": frame["content_hex"]}
        frames.append(frame)
    return {**obj, "frames": frames}


FIXTURE_IDS = [v["name"] for v in FIXTURES]
ENCODABLE = [v for v in FIXTURES if not v.get("decode_only")]


def test_fixture_file_holds_all_53_fixtures_and_every_frame_type() -> None:
    assert len(FIXTURES) == 53
    names = {f["name"] for v in FIXTURES for f in v["packet"]["frames"]}
    assert names == {f.__name__.removesuffix("Frame") for f in get_args(Frame)} - {"Unknown"}


@pytest.mark.parametrize("vector", FIXTURES, ids=FIXTURE_IDS)
def test_fixture_buffer_hex_is_the_buffer(vector: dict[str, Any]) -> None:
    assert base64.b64decode(vector["buffer"]) == bytes.fromhex(vector["buffer_hex"])


@pytest.mark.parametrize("vector", FIXTURES, ids=FIXTURE_IDS)
def test_fixture_decodes_to_its_packet_json(vector: dict[str, Any]) -> None:
    packet = decode_stream_packet(bytes.fromhex(vector["buffer_hex"]))
    assert packet_to_json(packet) == vector["packet"]


@pytest.mark.parametrize("vector", FIXTURES, ids=FIXTURE_IDS)
def test_fixture_decodes_to_the_packet_built_from_its_json(vector: dict[str, Any]) -> None:
    packet = decode_stream_packet(bytes.fromhex(vector["buffer_hex"]))
    assert packet == packet_from_json(vector["packet"])


@pytest.mark.parametrize("vector", ENCODABLE, ids=[v["name"] for v in ENCODABLE])
def test_fixture_decoded_packet_re_encodes_to_the_buffer(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["buffer_hex"])
    assert encode_stream_packet(decode_stream_packet(raw)) == raw


@pytest.mark.parametrize("vector", ENCODABLE, ids=[v["name"] for v in ENCODABLE])
def test_fixture_packet_built_from_json_encodes_to_the_buffer(vector: dict[str, Any]) -> None:
    packet = packet_from_json(vector["packet"])
    assert encode_stream_packet(packet).hex() == vector["buffer_hex"]


def test_decode_only_fixtures_are_the_two_saturating_ones() -> None:
    decode_only = [v for v in FIXTURES if v.get("decode_only")]
    assert [v["name"] for v in decode_only] == [
        "frame:stream_max_money:receive_max:too_big",
        "frame:stream_money_blocked:send_max:too_big",
    ]
    for vector in decode_only:
        packet = decode_stream_packet(bytes.fromhex(vector["buffer_hex"]))
        (frame,) = packet.frames
        assert isinstance(frame, StreamMaxMoneyFrame | StreamMoneyBlockedFrame)
        # Saturated on decode, then written back in the canonical 8-byte form.
        reencoded = encode_stream_packet(packet)
        assert reencoded != bytes.fromhex(vector["buffer_hex"])
        assert decode_stream_packet(reencoded) == packet


RS_VECTORS: list[dict[str, Any]] = RS["vectors"]


@pytest.mark.parametrize("vector", RS_VECTORS, ids=[v["name"] for v in RS_VECTORS])
def test_interledger_rs_vector_decodes_to_its_packet(vector: dict[str, Any]) -> None:
    packet = decode_stream_packet(bytes.fromhex(vector["hex"]))
    assert packet_to_json(packet) == _normalise_rs_json(vector["packet"])


@pytest.mark.parametrize("vector", RS_VECTORS, ids=[v["name"] for v in RS_VECTORS])
def test_interledger_rs_vector_encodes_from_its_packet(vector: dict[str, Any]) -> None:
    assert (
        encode_stream_packet(packet_from_json(_normalise_rs_json(vector["packet"]))).hex()
        == vector["hex"]
    )


def test_interledger_rs_vector_has_the_14_rfc_frame_types_in_wire_order() -> None:
    packet = decode_stream_packet(bytes.fromhex(RS_VECTORS[0]["hex"]))
    assert [f.TYPE for f in packet.frames] == [1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22]


# Expected decodings, written from each fuzz case's ``expect`` text.
RS_FUZZ_VALID: dict[str, StreamPacket] = {
    "fuzzed_0_extra_trailer_bytes": StreamPacket(0, 14, 0, []),
    "fuzzed_1_unknown_frame_type": StreamPacket(
        327680,
        14,
        331273,
        [
            UnknownFrame(10, bytes.fromhex("000414")),
            ConnectionCloseFrame(1, "oop"),
            ConnectionNewAddressFrame("example.blah"),
        ],
    ),
    "fuzzed_4_unknown_error_code": StreamPacket(0, 14, 14, [ConnectionCloseFrame(89, "")]),
}
RS_FUZZ = {v["name"]: v for v in RS["fuzz"]}


def test_interledger_rs_fuzz_cases_are_all_covered() -> None:
    valid = {name for name, v in RS_FUZZ.items() if v["expect"].startswith("valid")}
    invalid = {name for name, v in RS_FUZZ.items() if v["expect"].startswith("invalid")}
    assert valid == set(RS_FUZZ_VALID)
    assert invalid == {"fuzzed_2_frame_content_fails_to_parse"}


@pytest.mark.parametrize("name", sorted(RS_FUZZ_VALID))
def test_interledger_rs_valid_fuzz_case_decodes_as_expected(name: str) -> None:
    assert decode_stream_packet(bytes.fromhex(RS_FUZZ[name]["hex"])) == RS_FUZZ_VALID[name]


def test_frame_content_that_does_not_parse_makes_the_packet_invalid() -> None:
    raw = bytes.fromhex(RS_FUZZ["fuzzed_2_frame_content_fails_to_parse"]["hex"])
    with pytest.raises(DecodeError):
        decode_stream_packet(raw)


RS_SATURATING: list[dict[str, Any]] = RS["saturating"]
_SATURATING_CLASSES: dict[int, type[StreamMaxMoneyFrame | StreamMoneyBlockedFrame]] = {
    18: StreamMaxMoneyFrame,
    19: StreamMoneyBlockedFrame,
}


@pytest.mark.parametrize("vector", RS_SATURATING, ids=[v["name"] for v in RS_SATURATING])
def test_nine_byte_maximum_saturates_in_frame_content(vector: dict[str, Any]) -> None:
    cls = _SATURATING_CLASSES[vector["frame_type"]]
    frame = cls.decode_content(Reader(bytes.fromhex(vector["content_hex"])))
    assert frame == cls(123, MAX_UINT64, 123)


@pytest.mark.parametrize("vector", RS_SATURATING, ids=[v["name"] for v in RS_SATURATING])
def test_nine_byte_maximum_saturates_in_a_packet(vector: dict[str, Any]) -> None:
    content = bytes.fromhex(vector["content_hex"])
    raw = bytes.fromhex("010c01000100" + "0101") + bytes((vector["frame_type"],))
    packet = decode_stream_packet(raw + encode_var_octets(content))
    cls = _SATURATING_CLASSES[vector["frame_type"]]
    assert packet.frames == [cls(123, MAX_UINT64, 123)]


def test_nine_byte_value_in_a_non_saturating_field_is_invalid() -> None:
    # Only receiveMax and sendMax saturate; a 9-byte totalReceived is not a UInt64.
    content = bytes.fromhex("017b" + "0101" + "09010203040506070809")
    with pytest.raises(DecodeError):
        StreamMaxMoneyFrame.decode_content(Reader(content))


def test_version_other_than_1_is_invalid() -> None:
    with pytest.raises(DecodeError):
        decode_stream_packet(bytes.fromhex("020c010001000100"))


@pytest.mark.parametrize("packet_type", [0, 11, 15, 255])
def test_packet_type_outside_12_to_14_is_invalid(packet_type: int) -> None:
    with pytest.raises(DecodeError):
        decode_stream_packet(bytes((1, packet_type)) + bytes.fromhex("01000100" + "0100"))


def test_fewer_frames_than_the_count_is_invalid() -> None:
    with pytest.raises(DecodeError):
        decode_stream_packet(bytes.fromhex("010c0100010001020302" + "0100"))


def test_empty_connection_new_address_is_accepted() -> None:
    # @interledger/pay's first asset probe sends ConnectionNewAddress('').
    raw = bytes.fromhex("010c01000100010102" + "0100")
    assert decode_stream_packet(raw).frames == [ConnectionNewAddressFrame("")]


def test_connection_new_address_that_is_not_an_address_is_invalid() -> None:
    content = encode_var_octets(b"not an address")
    with pytest.raises(DecodeError):
        decode_stream_packet(bytes.fromhex("010c01000100010102") + encode_var_octets(content))
