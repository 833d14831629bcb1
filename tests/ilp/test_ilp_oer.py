"""OER primitives (RFC 30) against ``oer.json``: lengths, VarUInts, octet strings, fixed timestamps.

The BTP variable-length timestamps in ``oer.json`` are out of scope here: there is no BTP codec.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.oer import (
    MAX_UINT64,
    DecodeError,
    Reader,
    encode_length,
    encode_var_octets,
    encode_var_uint,
    read_length,
    read_var_octets,
)
from kiungo.ilp.packet import decode_expiry, encode_expiry

OER: dict[str, Any] = load_vector("oer.json")
TIMESTAMPS: dict[str, Any] = OER["fixed_timestamps"]
FIXED_UINT_SIZES = {"UInt8": 1, "UInt16": 2, "UInt32": 4, "UInt64": 8}


def parse_vector_instant(text: str) -> datetime:
    """An ISO-8601 instant from the vectors; ``T24:00`` (end of day) becomes next day's 00:00."""
    if "T24:00" in text:
        # Python has no hour 24: RFC 30's midnight is the following day at 00:00.
        day = datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
        return day + timedelta(days=1)
    return datetime.fromisoformat(text)


# --- length determinants ---


@pytest.mark.parametrize("vector", OER["length_determinants"], ids=lambda v: v["hex"])
def test_length_determinant_decodes_to_its_value(vector: dict[str, str]) -> None:
    raw = bytes.fromhex(vector["hex"])
    assert read_length(raw, 0) == (int(vector["value"]), len(raw))


@pytest.mark.parametrize("vector", OER["length_determinants"], ids=lambda v: v["hex"])
def test_length_determinant_encodes_canonically(vector: dict[str, str]) -> None:
    assert encode_length(int(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", OER["length_determinant_invalid"], ids=lambda v: v["why"])
def test_invalid_length_determinant_is_refused(vector: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        read_length(bytes.fromhex(vector["hex"]), 0)


def test_length_determinant_cut_short_is_refused() -> None:
    with pytest.raises(DecodeError):
        read_length(bytes.fromhex("8201"), 0)


def test_length_determinant_past_the_end_is_refused() -> None:
    with pytest.raises(DecodeError):
        read_length(b"\x05", 1)


def test_length_determinant_is_read_at_the_given_position() -> None:
    assert read_length(bytes.fromhex("ff8182"), 1) == (130, 3)


def test_negative_length_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_length(-1)


# --- VarUInt ---


@pytest.mark.parametrize("vector", OER["var_uint"], ids=lambda v: v["hex"])
def test_var_uint_encodes_to_vector(vector: dict[str, str]) -> None:
    assert encode_var_uint(int(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", OER["var_uint"], ids=lambda v: v["hex"])
def test_var_uint_decodes_from_vector(vector: dict[str, str]) -> None:
    reader = Reader(bytes.fromhex(vector["hex"]))
    assert reader.read_var_uint() == int(vector["value"])
    assert reader.remaining == 0


@pytest.mark.parametrize("vector", OER["var_uint"], ids=lambda v: v["hex"])
def test_saturating_var_uint_reads_valid_vectors_unchanged(vector: dict[str, str]) -> None:
    assert Reader(bytes.fromhex(vector["hex"])).read_var_uint_saturating() == int(vector["value"])


@pytest.mark.parametrize("vector", OER["var_uint_invalid"], ids=lambda v: v["why"])
def test_invalid_var_uint_is_refused(vector: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex(vector["hex"])).read_var_uint()


def test_nine_byte_var_uint_saturates_to_max_uint64() -> None:
    (nine_bytes,) = [v for v in OER["var_uint_invalid"] if v["hex"].startswith("09")]
    reader = Reader(bytes.fromhex(nine_bytes["hex"]))
    assert reader.read_var_uint_saturating() == MAX_UINT64
    assert reader.remaining == 0


@pytest.mark.parametrize(
    "vector",
    [v for v in OER["var_uint_invalid"] if not v["hex"].startswith("09")],
    ids=lambda v: v["why"],
)
def test_saturating_var_uint_still_refuses_malformed_encodings(vector: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex(vector["hex"])).read_var_uint_saturating()


def test_max_uint64_is_the_largest_var_uint() -> None:
    assert encode_var_uint(MAX_UINT64).hex() == "08ffffffffffffffff"
    with pytest.raises(ValueError):
        encode_var_uint(MAX_UINT64 + 1)


def test_negative_var_uint_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_var_uint(-1)


# --- variable-length octet strings ---


@pytest.mark.parametrize("vector", OER["var_octet_string_prefixes"], ids=lambda v: str(v["length"]))
def test_var_octet_string_has_vector_prefix(vector: dict[str, Any]) -> None:
    content = bytes(range(256)) * (vector["length"] // 256) + bytes(range(vector["length"] % 256))
    assert encode_var_octets(content) == bytes.fromhex(vector["prefix_hex"]) + content


@pytest.mark.parametrize("vector", OER["var_octet_string_prefixes"], ids=lambda v: str(v["length"]))
def test_var_octet_string_decodes_after_vector_prefix(vector: dict[str, Any]) -> None:
    content = b"\xab" * vector["length"]
    raw = bytes.fromhex(vector["prefix_hex"]) + content + b"\x01"
    assert read_var_octets(raw, 0) == (content, len(raw) - 1)


def test_var_octet_string_longer_than_the_data_is_refused() -> None:
    with pytest.raises(DecodeError):
        read_var_octets(bytes.fromhex("03aabb"), 0)


# --- fixed-length timestamps (ILP Prepare expiresAt) ---


@pytest.mark.parametrize("vector", TIMESTAMPS["encode"], ids=lambda v: v[0])
def test_expiry_encodes_to_17_utc_digits(vector: list[str]) -> None:
    instant, wire, _why = vector
    assert encode_expiry(parse_vector_instant(instant)) == wire.encode("ascii")


def test_expiry_rounds_half_a_millisecond_up() -> None:
    assert encode_expiry(datetime(2017, 12, 24, 23, 59, 59, 999500, UTC)) == b"20171225000000000"


def test_expiry_rounds_below_half_a_millisecond_down() -> None:
    assert encode_expiry(datetime(2017, 12, 24, 16, 14, 32, 279499, UTC)) == b"20171224161432279"


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999600, UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))),
    ],
    ids=["rounds past 9999", "before year 1 in UTC", "after 9999 in UTC"],
)
def test_expiry_outside_the_four_digit_years_is_refused(when: datetime) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_expiry(when)


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        encode_expiry(datetime(2017, 12, 24, 16, 14, 32))


@pytest.mark.parametrize("vector", TIMESTAMPS["decode_valid"], ids=lambda v: v[0])
def test_expiry_decodes_to_utc_instant(vector: list[str]) -> None:
    wire, instant = vector
    decoded = decode_expiry(wire.encode("ascii"))
    assert decoded == datetime.fromisoformat(instant)
    assert decoded.tzinfo is UTC


@pytest.mark.parametrize("vector", TIMESTAMPS["decode_valid"], ids=lambda v: v[0])
def test_decoded_expiry_reencodes_identically(vector: list[str]) -> None:
    wire = vector[0].encode("ascii")
    assert encode_expiry(decode_expiry(wire)) == wire


@pytest.mark.parametrize("wire", TIMESTAMPS["decode_invalid"])
def test_invalid_expiry_is_refused(wire: str) -> None:
    with pytest.raises(DecodeError):
        decode_expiry(wire.encode("ascii"))


@pytest.mark.parametrize("vector", TIMESTAMPS["binary"], ids=lambda v: v[1])
def test_expiry_wire_bytes_are_the_ascii_digits(vector: list[str]) -> None:
    raw, wire = bytes.fromhex(vector[0]), vector[1]
    assert raw == wire.encode("ascii")
    assert encode_expiry(decode_expiry(raw)) == raw


# --- addresses as var octet strings ---


@pytest.mark.parametrize(
    "vector", OER["addresses"]["vectors"], ids=lambda v: str(len(v["address"]))
)
def test_address_encodes_as_var_octet_string(vector: dict[str, str]) -> None:
    address = vector["address"]
    assert is_valid_address(address)
    assert encode_var_octets(address.encode("ascii")).hex() == vector["hex"]


@pytest.mark.parametrize(
    "vector", OER["addresses"]["vectors"], ids=lambda v: str(len(v["address"]))
)
def test_address_decodes_as_ascii_string(vector: dict[str, str]) -> None:
    reader = Reader(bytes.fromhex(vector["hex"]))
    assert reader.read_ascii() == vector["address"]
    assert reader.remaining == 0


# --- fixed-size unsigned integers ---


@pytest.mark.parametrize("vector", OER["fixed_uints"]["vectors"], ids=lambda v: v[0])
def test_fixed_uint_reads_big_endian(vector: list[str]) -> None:
    kind, hex_, value = vector
    reader = Reader(bytes.fromhex(hex_))
    assert reader.read_uint(FIXED_UINT_SIZES[kind]) == int(value)
    assert reader.remaining == 0


def test_uint8_reads_one_byte() -> None:
    reader = Reader(bytes.fromhex("ff00"))
    assert reader.read_uint8() == 255
    assert reader.remaining == 1


def test_fixed_uint_cut_short_is_refused() -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("123456")).read_uint(4)


def test_uint8_at_the_end_is_refused() -> None:
    with pytest.raises(DecodeError):
        Reader(b"").read_uint8()


# --- strings ---


def test_non_ascii_string_is_refused_where_ascii_is_required() -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("02c3a9")).read_ascii()


def test_utf8_string_decodes() -> None:
    assert Reader(bytes.fromhex("02c3a9")).read_utf8() == "é"


def test_invalid_utf8_string_is_refused() -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("02c328")).read_utf8()
