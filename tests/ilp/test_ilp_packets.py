"""ILPv4 packets (RFC 27) against ``ilp_packets.json``, envelope strictness, rewrite_prepare."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.oer import MAX_UINT64, DecodeError, encode_length, encode_var_octets
from kiungo.ilp.packet import (
    MAX_DATA_LENGTH,
    MAX_MESSAGE_LENGTH,
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
    encode_expiry,
    encode_packet,
    fulfillment_matches,
    rewrite_prepare,
)

PACKETS: dict[str, Any] = load_vector("ilp_packets.json")
VECTORS: list[dict[str, Any]] = PACKETS["vectors"]
EDGE_CASES = {case["name"]: bytes.fromhex(case["hex"]) for case in PACKETS["edge_cases"]}


def vector_named(name: str) -> dict[str, Any]:
    (vector,) = [v for v in VECTORS if v["name"] == name]
    return vector


def packet_from_fields(packet_type: int, fields: dict[str, str]) -> Packet:
    """The packet a vector's decoded ``fields`` describe."""
    if packet_type == PacketType.PREPARE:
        return Prepare(
            amount=int(fields["amount"]),
            expires_at=datetime.fromisoformat(fields["expiresAt"]),
            execution_condition=bytes.fromhex(fields["executionCondition_hex"]),
            destination=fields["destination"],
            data=bytes.fromhex(fields["data_hex"]),
        )
    if packet_type == PacketType.FULFILL:
        return Fulfill(bytes.fromhex(fields["fulfillment_hex"]), bytes.fromhex(fields["data_hex"]))
    return Reject(
        code=fields["code"],
        triggered_by=fields["triggeredBy"],
        message=fields["message"],
        data=bytes.fromhex(fields["data_hex"]),
    )


ILP_PREPARE = vector_named("ilp-packet ilp_prepare example01")
RS_PREPARE = vector_named("interledger-rs PREPARE_BYTES")
RS_FULFILL = vector_named("interledger-rs FULFILL_BYTES")
PREPARE_RAW = bytes.fromhex(RS_PREPARE["hex"])
# The rs Prepare's 331-byte body sits behind a 4-byte header (type + 0x82 0x01 0x4b).
PREPARE_BODY_START = 4


def body(raw: bytes) -> bytes:
    """The content of a packet whose envelope length is short-form."""
    assert raw[1] < 0x80
    return raw[2:]


def envelope(packet_type: int, content: bytes) -> bytes:
    return bytes((packet_type,)) + encode_length(len(content)) + content


# --- vectors ---


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    packet = decode_packet(bytes.fromhex(vector["hex"]))
    assert packet == packet_from_fields(vector["type"], vector["fields"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_fields_encode_to_its_bytes(vector: dict[str, Any]) -> None:
    packet = packet_from_fields(vector["type"], vector["fields"])
    assert encode_packet(packet).hex() == vector["hex"]


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["type"] == PacketType.PREPARE], ids=lambda v: v["name"]
)
def test_prepare_vector_decodes_with_decode_prepare(vector: dict[str, Any]) -> None:
    prepare = decode_prepare(bytes.fromhex(vector["hex"]))
    assert prepare == packet_from_fields(PacketType.PREPARE, vector["fields"])
    assert encode_expiry(prepare.expires_at) == vector["fields"]["expiresAt_wire"].encode("ascii")


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["type"] != PacketType.PREPARE], ids=lambda v: v["name"]
)
def test_reply_vector_decodes_with_decode_reply(vector: dict[str, Any]) -> None:
    reply = decode_reply(bytes.fromhex(vector["hex"]))
    assert reply == packet_from_fields(vector["type"], vector["fields"])


def test_decoded_prepare_expiry_is_utc() -> None:
    assert decode_prepare(PREPARE_RAW).expires_at.tzinfo is UTC


# --- edge cases, as the packet module docstring describes ---


def test_reject_with_non_ascii_error_code_is_refused() -> None:
    with pytest.raises(DecodeError, match="ASCII"):
        decode_packet(EDGE_CASES["reject with non-IA5 error code"])


def test_reject_with_trailing_bytes_inside_envelope_is_accepted() -> None:
    raw = EDGE_CASES["reject with 1 extra byte inside the content length"]
    assert decode_reply(raw) == Reject(code="tw\x7f", triggered_by="test.t", message="", data=b"")


def test_prepare_with_second_60_is_refused() -> None:
    with pytest.raises(DecodeError, match="20000531160160251"):
        decode_packet(EDGE_CASES["prepare whose timestamp has second=60 (20000531160160251)"])


def test_fulfill_with_trailing_bytes_inside_envelope_is_accepted() -> None:
    raw = EDGE_CASES["fulfill with trailing bytes counted inside the envelope length"]
    assert decode_reply(raw) == Fulfill(fulfillment=body(raw)[:32], data=b"")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_bytes_after_the_envelope_are_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match="envelope"):
        decode_packet(bytes.fromhex(vector["hex"]) + b"\x00")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_packet_shorter_than_its_envelope_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_packet(bytes.fromhex(vector["hex"])[:-1])


def test_empty_packet_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_packet(b"")


def test_unknown_packet_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="packet type 15"):
        decode_packet(b"\x0f\x00")


def test_decode_prepare_refuses_a_reply() -> None:
    with pytest.raises(DecodeError):
        decode_prepare(bytes.fromhex(RS_FULFILL["hex"]))


def test_decode_reply_refuses_a_prepare() -> None:
    with pytest.raises(DecodeError, match="Fulfill or Reject"):
        decode_reply(PREPARE_RAW)


def test_prepare_fields_running_past_the_envelope_are_refused() -> None:
    # The destination's length claims 14 bytes where only 13 are left in the packet.
    content = body(bytes.fromhex(ILP_PREPARE["hex"]))
    truncated = content[:57] + b"\x0e" + content[58:71]
    with pytest.raises(DecodeError):
        decode_prepare(envelope(PacketType.PREPARE, truncated))


def test_prepare_with_invalid_destination_is_refused() -> None:
    content = body(bytes.fromhex(ILP_PREPARE["hex"]))
    bad = content[:57] + encode_var_octets(b"example.") + encode_var_octets(b"")
    with pytest.raises(DecodeError, match="not a valid ILP address"):
        decode_prepare(envelope(PacketType.PREPARE, bad))


def test_prepare_with_non_ascii_destination_is_refused() -> None:
    content = body(bytes.fromhex(ILP_PREPARE["hex"]))
    bad = content[:57] + encode_var_octets(b"test.alic\xf0") + encode_var_octets(b"")
    with pytest.raises(DecodeError, match="not a valid ILP address"):
        decode_prepare(envelope(PacketType.PREPARE, bad))


def test_prepare_with_non_digit_expiry_is_refused() -> None:
    content = body(bytes.fromhex(ILP_PREPARE["hex"]))
    bad = content[:8] + b"2017122301214054x" + content[25:]
    with pytest.raises(DecodeError, match="17 ASCII digits"):
        decode_prepare(envelope(PacketType.PREPARE, bad))


def test_prepare_too_short_for_its_fixed_fields_is_refused() -> None:
    with pytest.raises(DecodeError, match="too short"):
        decode_prepare(envelope(PacketType.PREPARE, bytes(58)))


def test_prepare_data_of_the_maximum_length_is_accepted() -> None:
    prepare = packet_from_fields(PacketType.PREPARE, ILP_PREPARE["fields"])
    assert isinstance(prepare, Prepare)
    prepare.data = bytes(MAX_DATA_LENGTH)
    assert decode_prepare(encode_packet(prepare)) == prepare


def test_prepare_data_over_the_maximum_length_is_refused() -> None:
    content = body(bytes.fromhex(ILP_PREPARE["hex"]))
    head = content[: 57 + 1 + len("example.alice")]
    with pytest.raises(DecodeError, match="32768 bytes"):
        decode_prepare(envelope(PacketType.PREPARE, head + encode_var_octets(bytes(32768))))


def test_fulfill_data_over_the_maximum_length_is_refused() -> None:
    content = bytes(32) + encode_var_octets(bytes(MAX_DATA_LENGTH + 1))
    with pytest.raises(DecodeError, match="more than 32767"):
        decode_reply(envelope(PacketType.FULFILL, content))


def test_fulfill_too_short_is_refused() -> None:
    with pytest.raises(DecodeError, match="too short"):
        decode_reply(envelope(PacketType.FULFILL, bytes(32)))


def test_reject_message_over_the_maximum_length_is_refused() -> None:
    content = b"F00" + encode_var_octets(b"test.a") + encode_var_octets(b"m" * 8192) + b"\x00"
    with pytest.raises(DecodeError, match="message"):
        decode_reply(envelope(PacketType.REJECT, content))


def test_reject_message_that_is_not_utf8_is_refused() -> None:
    content = b"F00" + encode_var_octets(b"test.a") + encode_var_octets(b"\xc3\x28") + b"\x00"
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_reply(envelope(PacketType.REJECT, content))


def test_reject_with_invalid_triggered_by_is_refused() -> None:
    content = b"F00" + encode_var_octets(b"test") + b"\x00\x00"
    with pytest.raises(DecodeError, match="triggeredBy"):
        decode_reply(envelope(PacketType.REJECT, content))


def test_reject_with_empty_triggered_by_is_accepted() -> None:
    # ilp-packet JS accepts '' here; we read it but never emit it ourselves (IlpError.to_reject).
    content = b"T04" + b"\x00" + encode_var_octets(b"busy") + b"\x00"
    assert decode_reply(envelope(PacketType.REJECT, content)) == Reject("T04", "", "busy", b"")


# --- encoding refuses what would not decode ---


def valid_rs_prepare() -> Prepare:
    prepare = packet_from_fields(PacketType.PREPARE, RS_PREPARE["fields"])
    assert isinstance(prepare, Prepare)
    return prepare


def valid_prepare() -> Prepare:
    prepare = packet_from_fields(PacketType.PREPARE, ILP_PREPARE["fields"])
    assert isinstance(prepare, Prepare)
    return prepare


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", -1),
        ("amount", MAX_UINT64 + 1),
        ("execution_condition", bytes(31)),
        ("destination", "example"),
        ("destination", ""),
        ("data", bytes(MAX_DATA_LENGTH + 1)),
    ],
)
def test_prepare_with_unencodable_field_is_not_encoded(field: str, value: object) -> None:
    prepare = valid_prepare()
    setattr(prepare, field, value)
    with pytest.raises(ValueError):
        encode_packet(prepare)


def test_naive_prepare_expiry_is_not_encoded() -> None:
    prepare = valid_prepare()
    prepare.expires_at = datetime(2017, 12, 23, 1, 21, 40)
    with pytest.raises(ValueError, match="timezone"):
        encode_packet(prepare)


@pytest.mark.parametrize("fulfill", [Fulfill(bytes(31)), Fulfill(bytes(32), bytes(32768))])
def test_fulfill_with_unencodable_field_is_not_encoded(fulfill: Fulfill) -> None:
    with pytest.raises(ValueError):
        encode_packet(fulfill)


@pytest.mark.parametrize(
    "reject",
    [
        Reject("F0", "test.a"),
        Reject("F000", "test.a"),
        Reject("Fé0", "test.a"),
        Reject("F00", "test"),
        Reject("F00", "test.a", "m" * (MAX_MESSAGE_LENGTH + 1)),
        Reject("F00", "test.a", "é" * 4096),
        Reject("F00", "test.a", "", bytes(MAX_DATA_LENGTH + 1)),
    ],
)
def test_reject_with_unencodable_field_is_not_encoded(reject: Reject) -> None:
    with pytest.raises(ValueError):
        encode_packet(reject)


def test_prepare_expiry_is_encoded_rounded_to_the_millisecond() -> None:
    prepare = valid_prepare()
    prepare.expires_at = datetime(2017, 12, 23, 1, 21, 40, 548612, UTC)
    assert encode_packet(prepare).hex() == ILP_PREPARE["hex"]


# --- rewrite_prepare: the connector's in-place patch ---


def test_rewrite_prepare_patches_the_amount() -> None:
    rewritten = rewrite_prepare(PREPARE_RAW, amount=MAX_UINT64)
    expected = valid_rs_prepare()
    expected.amount = MAX_UINT64
    assert decode_prepare(rewritten) == expected


def test_rewrite_prepare_patches_the_expiry() -> None:
    new_expiry = datetime(2030, 1, 2, 3, 4, 5, 678000, UTC)
    rewritten = rewrite_prepare(PREPARE_RAW, expires_at=new_expiry)
    expected = valid_rs_prepare()
    expected.expires_at = new_expiry
    assert decode_prepare(rewritten) == expected


def test_rewrite_prepare_leaves_every_other_byte_identical() -> None:
    rewritten = rewrite_prepare(
        PREPARE_RAW, amount=1, expires_at=datetime(2030, 1, 2, 3, 4, 5, 678000, UTC)
    )
    start = PREPARE_BODY_START
    assert len(rewritten) == len(PREPARE_RAW)
    assert rewritten[:start] == PREPARE_RAW[:start]
    assert rewritten[start : start + 8] == (1).to_bytes(8, "big")
    assert rewritten[start + 8 : start + 25] == b"20300102030405678"
    assert rewritten[start + 25 :] == PREPARE_RAW[start + 25 :]


def test_rewrite_prepare_with_short_envelope_header_patches_the_right_offsets() -> None:
    raw = bytes.fromhex(ILP_PREPARE["hex"])
    rewritten = rewrite_prepare(raw, amount=0x0102030405060708)
    assert rewritten == raw[:2] + bytes.fromhex("0102030405060708") + raw[10:]


def test_rewrite_prepare_without_changes_returns_the_same_bytes() -> None:
    assert rewrite_prepare(PREPARE_RAW) == PREPARE_RAW


def test_rewrite_prepare_refuses_a_non_prepare() -> None:
    with pytest.raises(DecodeError):
        rewrite_prepare(bytes.fromhex(RS_FULFILL["hex"]), amount=1)


def test_rewrite_prepare_refuses_a_prepare_too_short_to_hold_its_fields() -> None:
    with pytest.raises(DecodeError):
        rewrite_prepare(envelope(PacketType.PREPARE, bytes(20)), amount=1)


def test_rewrite_prepare_refuses_an_amount_above_uint64() -> None:
    with pytest.raises(ValueError, match="UInt64"):
        rewrite_prepare(PREPARE_RAW, amount=MAX_UINT64 + 1)


# --- peer-protocol condition ---


def test_peer_protocol_condition_is_sha256_of_32_zero_bytes() -> None:
    assert bytes(32) == PEER_PROTOCOL_FULFILLMENT
    assert PEER_PROTOCOL_CONDITION.hex() == (
        "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    )


def test_fulfillment_matches_only_its_condition() -> None:
    assert fulfillment_matches(PEER_PROTOCOL_FULFILLMENT, PEER_PROTOCOL_CONDITION)
    assert not fulfillment_matches(b"\x01" + bytes(31), PEER_PROTOCOL_CONDITION)
