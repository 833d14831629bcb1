"""Properties of the STREAM core over generated inputs.

Every frame and packet survives encode → decode; arbitrary or corrupted bytes only ever raise the
documented error types; the server and receiver never raise on what the network can send them.
"""

from __future__ import annotations

import base64
import contextlib
import typing
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from kiungo.ilp.address import ADDRESS_PATTERN, MAX_ADDRESS_LENGTH
from kiungo.ilp.oer import MAX_UINT64, DecodeError, Reader
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.stream.crypto import StreamKeys
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
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import ReceiptError, verify_receipt
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import (
    Asset,
    ConnectionDetails,
    Credentials,
    ReceiptSetup,
    StreamServer,
)

BASE = "test.receiver"
SERVER = StreamServer(bytes(range(32)), BASE)
RECEIVER = StreamReceiver(SERVER)
CREDENTIALS: list[Credentials] = [
    SERVER.generate_credentials(),
    SERVER.generate_credentials(
        payment_tag="tag",
        receipt_setup=ReceiptSetup(bytes(16), bytes(32)),
        asset=Asset("USD", 2),
    ),
]
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
ADDRESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-"

u64 = st.integers(0, MAX_UINT64)
u8 = st.integers(0, 255)
text = st.text(max_size=30)
blob = st.binary(max_size=100)
addresses = st.just("") | st.from_regex(ADDRESS_PATTERN, fullmatch=True).filter(
    lambda a: len(a) <= MAX_ADDRESS_LENGTH
)

KNOWN_FRAME_STRATEGIES: dict[type[Frame], st.SearchStrategy[Frame]] = {
    ConnectionCloseFrame: st.builds(ConnectionCloseFrame, u8, text),
    ConnectionNewAddressFrame: st.builds(ConnectionNewAddressFrame, addresses),
    ConnectionMaxDataFrame: st.builds(ConnectionMaxDataFrame, u64),
    ConnectionDataBlockedFrame: st.builds(ConnectionDataBlockedFrame, u64),
    ConnectionMaxStreamIdFrame: st.builds(ConnectionMaxStreamIdFrame, u64),
    ConnectionStreamIdBlockedFrame: st.builds(ConnectionStreamIdBlockedFrame, u64),
    ConnectionAssetDetailsFrame: st.builds(ConnectionAssetDetailsFrame, text, u8),
    StreamCloseFrame: st.builds(StreamCloseFrame, u64, u8, text),
    StreamMoneyFrame: st.builds(StreamMoneyFrame, u64, u64),
    StreamMaxMoneyFrame: st.builds(StreamMaxMoneyFrame, u64, u64, u64),
    StreamMoneyBlockedFrame: st.builds(StreamMoneyBlockedFrame, u64, u64, u64),
    StreamDataFrame: st.builds(StreamDataFrame, u64, u64, blob),
    StreamMaxDataFrame: st.builds(StreamMaxDataFrame, u64, u64),
    StreamDataBlockedFrame: st.builds(StreamDataBlockedFrame, u64, u64),
    StreamReceiptFrame: st.builds(StreamReceiptFrame, u64, blob),
}
KNOWN_TYPES = {cls.TYPE for cls in KNOWN_FRAME_STRATEGIES}
unknown_frames = st.builds(
    UnknownFrame, st.integers(0, 255).filter(lambda t: t not in KNOWN_TYPES), blob
)
known_frames = st.one_of(list(KNOWN_FRAME_STRATEGIES.values()))
frames = known_frames | unknown_frames
packets = st.builds(
    StreamPacket, u64, st.sampled_from([12, 13, 14]), u64, st.lists(frames, max_size=6)
)


def test_strategies_cover_every_frame_class() -> None:
    assert set(KNOWN_FRAME_STRATEGIES) | {UnknownFrame} == set(typing.get_args(Frame))


@given(known_frames)
def test_known_frame_content_round_trips(frame: Frame) -> None:
    assert not isinstance(frame, UnknownFrame)
    assert type(frame).decode_content(Reader(frame.encode_content())) == frame


@given(frames)
def test_every_frame_round_trips_in_a_packet(frame: Frame) -> None:
    packet = StreamPacket(1, 12, 0, [frame])
    assert decode_stream_packet(encode_stream_packet(packet)).frames == [frame]


@given(packets)
def test_whole_packet_round_trips(packet: StreamPacket) -> None:
    assert decode_stream_packet(encode_stream_packet(packet)) == packet


@given(packets, st.binary(max_size=20))
def test_bytes_after_the_frames_are_ignored(packet: StreamPacket, junk: bytes) -> None:
    assert decode_stream_packet(encode_stream_packet(packet) + junk) == packet


def _decode_or_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_stream_packet(raw)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(raw: bytes) -> None:
    _decode_or_decode_error(raw)


@given(st.binary(max_size=200))
def test_random_bytes_after_a_valid_header_raise_only_decode_error(body: bytes) -> None:
    _decode_or_decode_error(bytes.fromhex("010c01010100") + body)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode_stream_packet(draw(packets)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "truncate"]))
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        if op == "set":
            raw[i] = draw(u8)
        elif op == "flip":
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            raw.insert(i, draw(u8))
        elif op == "delete":
            del raw[i]
        else:
            del raw[i:]
    return bytes(raw)


@given(mutated_encodings())
def test_mutated_encodings_raise_only_decode_error(raw: bytes) -> None:
    _decode_or_decode_error(raw)


@st.composite
def segments(draw: st.DrawFn) -> str:
    """What may follow ``BASE.``: address-shaped junk, base64url of random bytes, or a real
    token with a character changed, maybe followed by more segments."""
    kind = draw(st.sampled_from(["chars", "b64", "token", "text"]))
    if kind == "chars":
        segment = draw(st.text(ADDRESS_CHARS, max_size=80))
    elif kind == "b64":
        segment = base64.urlsafe_b64encode(draw(st.binary(max_size=80))).rstrip(b"=").decode()
    elif kind == "token":
        token = draw(st.sampled_from(CREDENTIALS)).destination_account[len(BASE) + 1 :]
        i = draw(st.integers(0, len(token) - 1))
        segment = token[:i] + draw(st.sampled_from(ADDRESS_CHARS)) + token[i + 1 :]
    else:
        segment = draw(st.text(max_size=40))
    extra = draw(st.lists(st.text(ADDRESS_CHARS, min_size=1, max_size=5), max_size=2))
    return ".".join([segment, *extra])


@given(segments())
def test_server_connection_never_raises(segment: str) -> None:
    details = SERVER.connection(f"{BASE}.{segment}")
    assert details is None or isinstance(details, ConnectionDetails)


@st.composite
def prepares(draw: st.DrawFn) -> Prepare:
    """Prepares under our base address: random or real connections, random or authentic data
    (an encrypted generated packet, or encrypted random bytes), random or matching condition."""
    # Zero and small amounts often meet the minimum and reach Fulfill and IncomingMoney.
    minimums = st.just(0) | u64
    amounts = st.sampled_from([0, 1, 1000]) | u64
    kind = draw(st.sampled_from(["junk", "random plaintext", "packet", "packet"]))
    if kind == "junk":
        destination = f"{BASE}.{draw(segments())}"
        data = draw(st.binary(max_size=200))
        condition = draw(st.binary(min_size=32, max_size=32))
        return Prepare(draw(u64), EXPIRY, condition, destination, data)
    credentials = draw(st.sampled_from(CREDENTIALS))
    keys = StreamKeys(credentials.shared_secret)
    if kind == "packet":
        request = StreamPacket(
            draw(u64),
            draw(st.sampled_from([12, 12, 12, 13, 14])),
            draw(minimums),
            draw(st.lists(frames, max_size=4)),
        )
        data = keys.encrypt(encode_stream_packet(request))
    else:
        data = keys.encrypt(draw(st.binary(max_size=100)))
    fulfillable = draw(st.integers(0, 3)) > 0
    condition = keys.condition(data) if fulfillable else draw(st.binary(min_size=32, max_size=32))
    return Prepare(draw(amounts), EXPIRY, condition, credentials.destination_account, data)


@settings(max_examples=200)
@given(prepares())
def test_receiver_never_raises(prepare: Prepare) -> None:
    result = RECEIVER.receive(prepare)
    if isinstance(result, IncomingMoney):
        result = result.accept(result.amount)
    assert isinstance(result, Fulfill | Reject)


@given(st.binary(max_size=80) | st.binary(max_size=79).map(lambda b: b"\x01" + b))
def test_verify_receipt_raises_only_receipt_error(raw: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        verify_receipt(raw, bytes(32))
