"""Property tests for the ILP codecs: every valid value round-trips, and no input, however
broken, makes a decoder raise anything but :class:`DecodeError` (:class:`IldcpError` for IL-DCP).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.vectors import load_vector

from kiungo.ilp.address import (
    ADDRESS_PATTERN,
    MAX_ADDRESS_LENGTH,
    is_valid_address,
    is_valid_address_bytes,
)
from kiungo.ilp.ildcp import IldcpError, IldcpResponse, build_response, parse_response
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
from kiungo.ilp.packet import (
    PEER_PROTOCOL_FULFILLMENT,
    Fulfill,
    Packet,
    Prepare,
    Reject,
    decode_expiry,
    decode_packet,
    decode_prepare,
    decode_reply,
    encode_expiry,
    encode_packet,
    rewrite_prepare,
)

# Drawing an address from the regex costs a few milliseconds, so the tests that need one run
# fewer examples to keep this module at a few seconds.
MANY = settings(max_examples=500, deadline=None)
SOME = settings(max_examples=250, deadline=None)
FEW = settings(max_examples=100, deadline=None)

# --- strategies for valid values ---

addresses = st.from_regex(ADDRESS_PATTERN, fullmatch=True).filter(
    lambda a: len(a) <= MAX_ADDRESS_LENGTH
)
# Wire expiries: millisecond precision, UTC, any year the 4-digit field can hold.
instants = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999000),
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
uint64s = st.integers(min_value=0, max_value=MAX_UINT64)
conditions = st.binary(min_size=32, max_size=32)
codes = st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=3, max_size=3)
# At most 1200 UTF-8 bytes: always under the 8191-byte message limit.
messages = st.text(max_size=300)


def prepares(max_data: int = 4096) -> st.SearchStrategy[Prepare]:
    return st.builds(
        Prepare, uint64s, instants, conditions, addresses, st.binary(max_size=max_data)
    )


def fulfills(max_data: int = 4096) -> st.SearchStrategy[Fulfill]:
    return st.builds(Fulfill, conditions, st.binary(max_size=max_data))


def rejects(max_data: int = 4096) -> st.SearchStrategy[Reject]:
    return st.builds(Reject, codes, st.just("") | addresses, messages, st.binary(max_size=max_data))


def packets(max_data: int = 4096) -> st.SearchStrategy[Packet]:
    return st.one_of(prepares(max_data), fulfills(max_data), rejects(max_data))


ildcp_responses = st.builds(
    IldcpResponse, addresses, st.integers(min_value=0, max_value=255), st.text(max_size=40)
)


# Bytes worth inserting: any byte, with digits, dots and the ASCII/UTF-8 boundaries favoured.
interesting_bytes = st.integers(min_value=0, max_value=255) | st.sampled_from(
    b"0123456789.\x00\x7f\x80\xff"
)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few bytes flipped, replaced, inserted, deleted, or cut off."""
    raw = bytearray(draw(valid))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        operation = draw(st.sampled_from(("flip", "replace", "insert", "delete", "truncate")))
        if operation == "insert":
            at = draw(st.integers(min_value=0, max_value=len(raw)))
            raw[at:at] = bytes((draw(interesting_bytes),))
            continue
        if not raw:
            continue
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if operation == "flip":
            raw[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif operation == "replace":
            raw[at] = draw(interesting_bytes)
        elif operation == "delete":
            del raw[at]
        else:
            del raw[at:]
    return bytes(raw)


# Small data so that mutations land in the headers and fixed fields, not only in the payload;
# the reference vectors add long-form lengths and real-world shapes.
VECTOR_PACKETS = [
    bytes.fromhex(v["hex"])
    for name in ("ilp_packets.json", "ildcp.json")
    for v in load_vector(name)["vectors"]
]
encoded_packets = st.sampled_from(VECTOR_PACKETS) | packets(max_data=40).map(encode_packet)

# Near-addresses: a scheme or near-scheme and short segments, some empty (".." or a dot at
# either end).
address_like = st.builds(
    lambda scheme, segments: ".".join((scheme, *segments)).encode("ascii"),
    st.sampled_from(("", "g", "test", "test3", "test4", "peer", "locale", "G")),
    st.lists(st.text(alphabet="a9~-_", max_size=2), max_size=3),
)


def with_envelope(packet_type: int, *fields: bytes) -> bytes:
    content = b"".join(fields)
    return bytes((packet_type,)) + encode_length(len(content)) + content


# Right shape, random field contents: each field's own checks get exercised, not only lengths.
any_text = st.binary(max_size=12) | st.text(max_size=6).map(lambda t: t.encode("utf-8"))
any_address = address_like | st.binary(max_size=12)
plausible_packets = st.one_of(
    st.builds(
        lambda amount, expiry, condition, destination, data, extra: with_envelope(
            12, amount, expiry, condition, encode_var_octets(destination), data, extra
        ),
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=17, max_size=17)
        | st.text(alphabet="0123456789", min_size=17, max_size=17).map(str.encode),
        st.binary(min_size=32, max_size=32),
        any_address,
        st.binary(max_size=8).map(encode_var_octets),
        st.binary(max_size=2),
    ),
    st.builds(
        lambda fulfillment, data, extra: with_envelope(13, fulfillment, data, extra),
        st.binary(min_size=32, max_size=32),
        st.binary(max_size=8).map(encode_var_octets),
        st.binary(max_size=2),
    ),
    st.builds(
        lambda code, triggered_by, message, data, extra: with_envelope(
            14, code, encode_var_octets(triggered_by), encode_var_octets(message), data, extra
        ),
        st.binary(min_size=3, max_size=3),
        any_address,
        any_text,
        st.binary(max_size=8).map(encode_var_octets),
        st.binary(max_size=2),
    ),
)
broken_packets = st.one_of(
    st.binary(max_size=200), plausible_packets, mutated(encoded_packets | plausible_packets)
)


def decodes_or_refuses(decode: Callable[[bytes], object], raw: bytes) -> None:
    """Run ``decode``; a DecodeError is a fine answer, anything else escapes and fails the test."""
    with contextlib.suppress(DecodeError):
        decode(raw)


# --- round trips ---


@FEW
@given(prepares())
def test_prepare_round_trips(prepare: Prepare) -> None:
    assert decode_prepare(encode_packet(prepare)) == prepare
    assert decode_packet(encode_packet(prepare)) == prepare


@MANY
@given(fulfills())
def test_fulfill_round_trips(fulfill: Fulfill) -> None:
    assert decode_reply(encode_packet(fulfill)) == fulfill
    assert decode_packet(encode_packet(fulfill)) == fulfill


@FEW
@given(rejects())
def test_reject_round_trips(reject: Reject) -> None:
    assert decode_reply(encode_packet(reject)) == reject
    assert decode_packet(encode_packet(reject)) == reject


@MANY
@given(instants)
def test_expiry_round_trips(when: datetime) -> None:
    assert decode_expiry(encode_expiry(when)) == when


@MANY
@given(uint64s)
def test_var_uint_round_trips(value: int) -> None:
    reader = Reader(encode_var_uint(value))
    assert reader.read_var_uint() == value
    assert reader.remaining == 0


@MANY
@given(uint64s)
def test_saturating_var_uint_agrees_below_the_limit(value: int) -> None:
    assert Reader(encode_var_uint(value)).read_var_uint_saturating() == value


@MANY
@given(uint64s)
def test_length_determinant_round_trips(length: int) -> None:
    encoded = encode_length(length)
    assert read_length(encoded, 0) == (length, len(encoded))
    assert Reader(encoded).read_length() == length


@SOME
@given(st.binary(max_size=4096), st.binary(max_size=8))
def test_var_octets_round_trip(content: bytes, after: bytes) -> None:
    encoded = encode_var_octets(content)
    assert read_var_octets(encoded + after, 0) == (content, len(encoded))
    reader = Reader(encoded + after)
    assert reader.read_var_octets() == content
    assert reader.remaining == len(after)


@FEW
@given(ildcp_responses)
def test_ildcp_response_round_trips(response: IldcpResponse) -> None:
    fulfill = decode_reply(encode_packet(build_response(response)))
    assert isinstance(fulfill, Fulfill)
    assert parse_response(fulfill) == response


@FEW
@given(prepares(max_data=64), uint64s, instants)
def test_rewrite_prepare_changes_only_amount_and_expiry(
    prepare: Prepare, amount: int, expires_at: datetime
) -> None:
    rewritten = rewrite_prepare(encode_packet(prepare), amount=amount, expires_at=expires_at)
    prepare.amount, prepare.expires_at = amount, expires_at
    assert rewritten == encode_packet(prepare)


address_bytes = addresses.map(lambda a: a.encode("ascii"))


@SOME
@given(st.binary(max_size=40) | address_like | mutated(address_like) | mutated(address_bytes))
def test_address_check_on_bytes_agrees_with_the_regex(raw: bytes) -> None:
    # latin-1 maps each byte to one character, so non-ASCII bytes stay non-ASCII characters.
    assert is_valid_address_bytes(raw) == is_valid_address(raw.decode("latin-1"))


# --- broken input: only DecodeError ---


@MANY
@given(broken_packets)
def test_packet_decoders_raise_only_decode_error(raw: bytes) -> None:
    decodes_or_refuses(decode_prepare, raw)
    decodes_or_refuses(decode_reply, raw)
    try:
        packet = decode_packet(raw)
    except DecodeError:
        return
    # Whatever is accepted is something we could have sent: it re-encodes to an equal packet.
    assert decode_packet(encode_packet(packet)) == packet


@MANY
@given(st.binary(max_size=20) | mutated(instants.map(encode_expiry)))
def test_decode_expiry_raises_only_decode_error(raw: bytes) -> None:
    decodes_or_refuses(decode_expiry, raw)


@MANY
@given(st.binary(max_size=24), st.data())
def test_read_length_raises_only_decode_error(raw: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(min_value=0, max_value=len(raw)))
    decodes_or_refuses(lambda buf: read_length(buf, pos), raw)
    decodes_or_refuses(lambda buf: read_var_octets(buf, pos), raw)


READER_METHODS: dict[str, Callable[[Reader], object]] = {
    "read_uint8": Reader.read_uint8,
    "read_uint16": lambda r: r.read_uint(2),
    "read_uint32": lambda r: r.read_uint(4),
    "read_uint64": lambda r: r.read_uint(8),
    "read_3": lambda r: r.read(3),
    "read_length": Reader.read_length,
    "read_var_octets": Reader.read_var_octets,
    "read_var_uint": Reader.read_var_uint,
    "read_var_uint_saturating": Reader.read_var_uint_saturating,
    "read_ascii": Reader.read_ascii,
    "read_utf8": Reader.read_utf8,
}
valid_oer = st.lists(
    st.one_of(
        uint64s.map(encode_var_uint),
        st.binary(max_size=150).map(encode_var_octets),
        st.binary(min_size=9, max_size=12).map(encode_var_octets),
        st.text(max_size=20).map(lambda s: encode_var_octets(s.encode("utf-8"))),
    ),
    max_size=4,
).map(b"".join)


@MANY
@given(st.binary(max_size=48) | mutated(valid_oer))
def test_reader_raises_only_decode_error(raw: bytes) -> None:
    # Every method from every start position, so any bad byte sequence is met by each reader.
    for read in READER_METHODS.values():
        for start in range(len(raw) + 1):
            reader = Reader(raw, start)
            with contextlib.suppress(DecodeError):
                read(reader)
                assert start <= reader.pos <= len(raw)


ildcp_data = ildcp_responses.map(lambda r: build_response(r).data)
plausible_ildcp_data = st.builds(
    lambda address, scale, code, extra: encode_var_octets(address) + scale + code + extra,
    any_address,
    st.binary(max_size=1),
    any_text.map(encode_var_octets) | st.binary(max_size=3),
    st.binary(max_size=2),
)


@SOME
@given(
    st.binary(min_size=32, max_size=32) | st.just(PEER_PROTOCOL_FULFILLMENT),
    st.binary(max_size=64) | plausible_ildcp_data | mutated(ildcp_data),
)
def test_parse_response_raises_only_ildcp_error(fulfillment: bytes, data: bytes) -> None:
    with contextlib.suppress(IldcpError):
        parse_response(Fulfill(fulfillment, data))
