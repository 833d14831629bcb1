"""The JSON forms of ILP packets (ilp-packet field names, hex) and STREAM packets (RFC 29 fixtures).

The ILP side is checked against ``ilp_packets.json``: its ``fields`` are the decoded values with
binary fields as ``*_hex``, and its ``source_json`` is ilp-packet's own fixture (binary fields in
base64 there, hex in our form). The STREAM side must reproduce every one of the 53 fixture
``packet`` objects exactly.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_packet, encode_packet
from kiungo.ilp.packet_json import packet_from_json, packet_to_json
from kiungo.stream.packet import (
    StreamMoneyFrame,
    StreamPacket,
    UnknownFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.packet_json import stream_packet_from_json, stream_packet_to_json

ILP_VECTORS: list[dict[str, Any]] = load_vector("ilp_packets.json")["vectors"]
WITH_SOURCE_JSON = [v for v in ILP_VECTORS if "source_json" in v]
STREAM_FIXTURES: list[dict[str, Any]] = load_vector("stream_packet_fixtures.json")["vectors"]
E2E: dict[str, Any] = load_vector("stream_e2e_prepare.json")

PREPARE_JSON: dict[str, Any] = {
    "type": 12,
    "amount": "107",
    "expiresAt": "2017-12-23T01:21:40.549Z",
    "executionCondition": "74e1136dc71c9e5f283bec83461cbf1261c4014f72d48f8dd65453a0b84e7de1",
    "destination": "example.alice",
    "data": "5db343fdc41898f6df4202329139dc242dd0f558a811b46b28918fdab37c6cb0",
}


def _fields_as_json(vector: dict[str, Any]) -> dict[str, Any]:
    """The vector's ``fields`` in our JSON form: ``type`` added, ``*_hex`` keys without suffix."""
    out: dict[str, Any] = {"type": vector["type"]}
    for key, value in vector["fields"].items():
        if key != "expiresAt_wire":
            out[key.removesuffix("_hex")] = value
    return out


def _source_json_in_hex(vector: dict[str, Any]) -> dict[str, Any]:
    binary = {"executionCondition", "fulfillment", "data"}
    out: dict[str, Any] = {"type": vector["type"]}
    for key, value in vector["source_json"].items():
        out[key] = base64.b64decode(value).hex() if key in binary else value
    return out


def _packet_with(frame: dict[str, Any]) -> dict[str, Any]:
    return {"sequence": "1", "packetType": 12, "amount": "0", "frames": [frame]}


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


# ILP packets


@pytest.mark.parametrize("vector", ILP_VECTORS, ids=_ids(ILP_VECTORS))
def test_ilp_packet_json_is_the_vector_fields(vector: dict[str, Any]) -> None:
    packet = decode_packet(bytes.fromhex(vector["hex"]))
    assert packet_to_json(packet) == _fields_as_json(vector)


@pytest.mark.parametrize("vector", WITH_SOURCE_JSON, ids=_ids(WITH_SOURCE_JSON))
def test_ilp_packet_fixture_json_in_hex_encodes_to_the_vector(vector: dict[str, Any]) -> None:
    packet = packet_from_json(_source_json_in_hex(vector))
    assert encode_packet(packet).hex() == vector["hex"]


@pytest.mark.parametrize("vector", ILP_VECTORS, ids=_ids(ILP_VECTORS))
def test_ilp_packet_from_json_round_trips(vector: dict[str, Any]) -> None:
    packet = decode_packet(bytes.fromhex(vector["hex"]))
    assert packet_from_json(packet_to_json(packet)) == packet


@pytest.mark.parametrize("name", ["prepare", "Prepare", 12])
def test_packet_type_may_be_a_number_or_a_name(name: object) -> None:
    assert packet_to_json(packet_from_json({**PREPARE_JSON, "type": name})) == PREPARE_JSON


def test_data_and_message_may_be_left_out() -> None:
    reject = packet_from_json({"type": "reject", "code": "F02", "triggeredBy": "g.x"})
    assert reject == Reject("F02", "g.x", "", b"")
    fulfill = packet_from_json({"type": "fulfill", "fulfillment": "00" * 32})
    assert fulfill == Fulfill(bytes(32), b"")


def test_expiry_in_another_time_zone_is_read_as_utc() -> None:
    prepare = packet_from_json({**PREPARE_JSON, "expiresAt": "2017-12-23T02:21:40.549+01:00"})
    assert packet_to_json(prepare)["expiresAt"] == "2017-12-23T01:21:40.549Z"


def test_expiry_is_written_with_milliseconds_and_z() -> None:
    prepare = packet_from_json({**PREPARE_JSON, "expiresAt": "2030-01-02T03:04:05Z"})
    assert isinstance(prepare, Prepare)
    assert prepare.expires_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert packet_to_json(prepare)["expiresAt"] == "2030-01-02T03:04:05.000Z"


def test_base64_binary_field_is_refused_naming_the_field() -> None:
    source = WITH_SOURCE_JSON[0]["source_json"]
    with pytest.raises(ValueError, match=r"^executionCondition: .* is not a hex string"):
        packet_from_json({**PREPARE_JSON, "executionCondition": source["executionCondition"]})


def test_condition_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^executionCondition: must be 32 bytes .* got 31"):
        packet_from_json({**PREPARE_JSON, "executionCondition": "00" * 31})


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^Prepare: unknown field 'condition'"):
        packet_from_json({**PREPARE_JSON, "condition": "00" * 32})


def test_missing_field_is_refused() -> None:
    fields = {k: v for k, v in PREPARE_JSON.items() if k != "destination"}
    with pytest.raises(ValueError, match=r"^Prepare: missing field 'destination'"):
        packet_from_json(fields)


def test_unknown_packet_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^type: 15 is not an ILP packet type"):
        packet_from_json({**PREPARE_JSON, "type": 15})


def test_expiry_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^expiresAt: .* has no time zone"):
        packet_from_json({**PREPARE_JSON, "expiresAt": "2017-12-23T01:21:40.549"})


def test_expiry_finer_than_milliseconds_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^expiresAt: .* more precise"):
        packet_from_json({**PREPARE_JSON, "expiresAt": "2017-12-23T01:21:40.5491Z"})


@pytest.mark.parametrize("amount", ["18446744073709551616", "-1", "1e3", 1.5])
def test_amount_that_is_not_a_uint64_is_refused(amount: object) -> None:
    with pytest.raises(ValueError, match=r"^amount: "):
        packet_from_json({**PREPARE_JSON, "amount": amount})


def test_invalid_destination_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^destination: 'alice' is not a valid ILP address"):
        packet_from_json({**PREPARE_JSON, "destination": "alice"})


def test_reject_code_must_be_three_ascii_characters() -> None:
    with pytest.raises(ValueError, match=r"^code: "):
        packet_from_json({"type": 14, "code": "F0", "triggeredBy": "g.x"})


# STREAM packets


@pytest.mark.parametrize("fixture", STREAM_FIXTURES, ids=_ids(STREAM_FIXTURES))
def test_stream_packet_json_is_the_fixture_packet(fixture: dict[str, Any]) -> None:
    packet = decode_stream_packet(base64.b64decode(fixture["buffer"]))
    assert stream_packet_to_json(packet) == fixture["packet"]


@pytest.mark.parametrize("fixture", STREAM_FIXTURES, ids=_ids(STREAM_FIXTURES))
def test_stream_fixture_packet_reads_as_the_decoded_buffer(fixture: dict[str, Any]) -> None:
    buffer = base64.b64decode(fixture["buffer"])
    packet = stream_packet_from_json(fixture["packet"])
    assert packet == decode_stream_packet(buffer)
    if not fixture.get("decode_only"):
        assert encode_stream_packet(packet) == buffer


def test_all_53_stream_fixtures_are_checked() -> None:
    assert len(STREAM_FIXTURES) == 53


def test_e2e_stream_packet_json_matches_the_vector() -> None:
    derived = E2E["derived"]
    expected = derived["stream_packet"]
    packet = decode_stream_packet(bytes.fromhex(derived["stream_plaintext_hex"]))
    assert stream_packet_to_json(packet) == {
        "sequence": expected["sequence"],
        "packetType": expected["packetType"],
        "amount": expected["prepareAmount"],
        "frames": expected["frames"],
    }


def test_unknown_frame_is_its_type_and_content_in_hex() -> None:
    packet = StreamPacket(1, 12, 0, [UnknownFrame(0x99, b"\x01\x02")])
    as_json = stream_packet_to_json(packet)
    assert as_json["frames"] == [{"type": 0x99, "name": "Unknown", "data": "0102"}]
    assert stream_packet_from_json(as_json) == packet


def test_frame_may_be_named_without_its_type() -> None:
    packet = stream_packet_from_json(
        _packet_with({"name": "StreamMoney", "streamId": "1", "shares": "3"})
    )
    assert packet.frames == [StreamMoneyFrame(1, 3)]


def test_frame_type_that_contradicts_its_name_is_refused() -> None:
    frame = {"type": 18, "name": "StreamMoney", "streamId": "1", "shares": "3"}
    with pytest.raises(ValueError, match=r"^frames\[0\]: type 18 does not match StreamMoney"):
        stream_packet_from_json(
            {"sequence": "1", "packetType": 12, "amount": "0", "frames": [frame]}
        )


def test_stream_data_that_is_not_base64_is_refused_naming_the_field() -> None:
    frame = {"type": 20, "name": "StreamData", "streamId": "1", "offset": "0", "data": "not b64!"}
    with pytest.raises(ValueError, match=r"^frames\[0\]\.data: .* is not standard base64"):
        stream_packet_from_json(
            {"sequence": "1", "packetType": 12, "amount": "0", "frames": [frame]}
        )


def test_stream_u64_above_the_maximum_is_refused() -> None:
    frame = {"type": 17, "name": "StreamMoney", "streamId": "1", "shares": str(1 << 64)}
    with pytest.raises(ValueError, match=r"^frames\[0\]\.shares: .* is not a UInt64"):
        stream_packet_from_json(
            {"sequence": "1", "packetType": 12, "amount": "0", "frames": [frame]}
        )


def test_unknown_frame_field_is_refused() -> None:
    frame = {"type": 17, "name": "StreamMoney", "streamId": "1", "shares": "1", "amount": "1"}
    with pytest.raises(ValueError, match=r"^frames\[0\]: unknown field 'amount'"):
        stream_packet_from_json(
            {"sequence": "1", "packetType": 12, "amount": "0", "frames": [frame]}
        )


def test_stream_packet_type_must_be_an_ilp_packet_type() -> None:
    with pytest.raises(ValueError, match=r"^packetType: "):
        stream_packet_from_json({"sequence": "1", "packetType": 1, "amount": "0"})
