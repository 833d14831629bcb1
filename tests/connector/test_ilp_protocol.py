"""``POST /ilp`` answered by the connector's own HTTP protocol (kiungo.connector.ilp_protocol),
over raw sockets: pipelining, bodies in pieces and chunks, bodies past the limit, hang-ups,
``Connection: close``, and the requests it leaves to the ASGI endpoint."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.connector.harness import (
    Connector,
    prepare_to,
)

from kiungo.ilp.ildcp import build_request
from kiungo.ilp.packet import Fulfill, Reject, decode_reply, encode_packet
from kiungo.ledger import AccountKind


def ildcp() -> bytes:
    """An IL-DCP request: fulfilled by the connector itself, moving no money."""
    return encode_packet(build_request(datetime.now(UTC)))


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""


class Replies:
    """What a connection answers, parsed by httptools, reply by reply, until it closes."""

    def __init__(self, reader: asyncio.StreamReader | None = None) -> None:
        self.reader = reader
        self.done: list[Reply] = []
        self.closed = False
        self._current: Reply | None = None
        self._parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._current = Reply(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._current.body += body

    def on_message_complete(self) -> None:
        assert self._current is not None
        self.done.append(self._current)
        self._current = None

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    async def take(self, count: int, seconds: float = 20.0) -> list[Reply]:
        """The next ``count`` replies (fewer if the connection closes first)."""
        async with asyncio.timeout(seconds):
            while len(self.done) < count and not self.closed:
                assert self.reader is not None
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    break
                self.feed(data)
        taken, self.done = self.done[:count], self.done[count:]
        return taken

    async def wait_closed(self, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while not self.closed:
                assert self.reader is not None
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                else:
                    self._parser.feed_data(data)


def post(
    body: bytes, *, token: str = "alice-token", path: str = "/ilp", extra: bytes = b""
) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: connector\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def chunked_head(token: str = "alice-token") -> bytes:
    return (
        f"POST /ilp HTTP/1.1\r\nHost: connector\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


@dataclass
class Socket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    replies: Replies

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


async def connect(connector: Connector) -> Socket:
    parts = urlsplit(connector.url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    return Socket(reader, writer, Replies(reader))


def fulfilled(reply: Reply) -> bool:
    assert reply.status == 200, reply
    assert reply.headers[b"content-type"] == b"application/octet-stream"
    return isinstance(decode_reply(reply.body), Fulfill)


async def alice(connector: Connector) -> int:
    return await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    connector: Connector,
) -> None:
    before = await alice(connector)
    socket = await connect(connector)
    forward = encode_packet(prepare_to("test.bob.x", 5))
    await socket.send(
        post(ildcp())
        + b"GET /healthz HTTP/1.1\r\nHost: connector\r\n\r\n"
        + post(forward, token="nope")
        + post(forward)
        + post(b"\x00" * 10)
        + post(ildcp(), path="/ilp?asgi=1")
        + post(ildcp())
    )
    replies = await socket.replies.take(7)
    assert [r.status for r in replies] == [200, 200, 401, 200, 200, 200, 200], replies
    assert fulfilled(replies[0]) and b"test.alice" in replies[0].body
    assert replies[2].headers[b"www-authenticate"] == b"Bearer"
    assert fulfilled(replies[3])
    rejected = decode_reply(replies[4].body)
    assert isinstance(rejected, Reject) and rejected.code == "F01", rejected
    assert fulfilled(replies[5]) and fulfilled(replies[6])
    assert not socket.replies.closed
    socket.close()
    assert await alice(connector) == before - 5  # the refused packet moved nothing


async def test_bodies_in_pieces_and_in_chunks_are_gathered(connector: Connector) -> None:
    socket = await connect(connector)
    request = post(ildcp())
    for i in range(0, len(request), 7):
        await socket.send(request[i : i + 7])
        await asyncio.sleep(0.001)
    [dripped] = await socket.replies.take(1)
    assert fulfilled(dripped)

    await socket.send(chunked_head())
    ildcp_body = ildcp()
    for i in range(0, len(ildcp_body), 5):
        piece = ildcp_body[i : i + 5]
        await socket.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    await socket.send(b"0\r\n\r\n")
    [chunked] = await socket.replies.take(1)
    assert fulfilled(chunked)
    socket.close()


async def test_a_body_past_the_limit_is_a_413_and_the_connection_closes(
    connector: Connector,
) -> None:
    before = await alice(connector)
    # Declared too large: answered before any of it is read.
    declared = await connect(connector)
    await declared.send(
        b"POST /ilp HTTP/1.1\r\nHost: connector\r\nAuthorization: Bearer alice-token\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 40001\r\n\r\n"
    )
    [reply] = await declared.replies.take(1)
    assert reply.status == 413 and reply.headers[b"connection"] == b"close", reply
    await declared.replies.wait_closed()

    # Chunked, without a length: answered once it passes 40,000 bytes, and not read on.
    endless = await connect(connector)
    await endless.send(chunked_head())
    piece = b"\x0c" * 4096
    for _ in range(12):
        await endless.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    [reply] = await endless.replies.take(1)
    assert reply.status == 413, reply
    await endless.replies.wait_closed()

    # Exactly the limit is read (and, not being a packet, rejected as one).
    exact = await connect(connector)
    await exact.send(post(b"\x0c" * 40_000))
    [reply] = await exact.replies.take(1)
    assert isinstance(decode_reply(reply.body), Reject)
    exact.close()
    assert await alice(connector) == before
    assert await connector.pending() == 0


async def test_a_client_that_hangs_up_mid_body_changes_nothing(connector: Connector) -> None:
    before = await alice(connector)
    forward = post(encode_packet(prepare_to("test.bob.x", 9)))
    for cut in (len(forward) - 1, len(forward) - 20, 40):
        socket = await connect(connector)
        await socket.send(forward[:cut])
        socket.close()
    await asyncio.sleep(0.2)
    # Still serving, and nothing moved or held.
    assert isinstance(await connector.send(build_request(datetime.now(UTC))), Fulfill)
    assert await alice(connector) == before
    assert await connector.pending() == 0


async def test_connection_close_and_the_asgi_forms_of_the_request(connector: Connector) -> None:
    # Connection: close is honoured: the reply says so and the connection ends.
    closing = await connect(connector)
    await closing.send(post(ildcp(), extra=b"Connection: close\r\n") + post(ildcp()))
    replies = await closing.replies.take(2)
    assert len(replies) == 1 and fulfilled(replies[0]), replies
    assert replies[0].headers[b"connection"] == b"close"
    await closing.replies.wait_closed()

    # HTTP/1.0 and Expect: 100-continue are the ASGI endpoint's; the packet is answered alike.
    old = await connect(connector)
    await old.send(post(ildcp()).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    [reply] = await old.replies.take(1)
    assert fulfilled(reply)
    await old.replies.wait_closed()

    expecting = await connect(connector)
    head, _, body = post(ildcp(), extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    await expecting.send(head + b"\r\n\r\n")
    continued = await expecting.reader.readuntil(b"\r\n\r\n")
    assert continued.startswith(b"HTTP/1.1 100"), continued
    await expecting.send(body)
    [reply] = await expecting.replies.take(1)
    assert fulfilled(reply)
    expecting.close()


async def test_an_unparseable_request_ends_its_connection_with_a_400(connector: Connector) -> None:
    before = await alice(connector)
    socket = await connect(connector)
    forward = encode_packet(prepare_to("test.bob.x", 5))
    # As uvicorn does for every request: the 400 goes at once and the connection closes, so
    # the packet before it in the same write is never handled.
    await socket.send(post(forward) + b"POST /ilp HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    replies = await socket.replies.take(2)
    assert [r.status for r in replies] == [400], replies
    await socket.replies.wait_closed()
    assert await alice(connector) == before
    assert await connector.pending() == 0
    assert isinstance(await connector.send(forward), Fulfill)


# What each kind of request in a fuzzed pipeline is, and what it must be answered.
KINDS: dict[str, tuple[Callable[[], bytes], int, type[Fulfill | Reject] | None]] = {
    "ildcp": (lambda: post(ildcp()), 200, Fulfill),
    "chunked": (
        lambda: chunked_head() + b"%x\r\n" % len(ildcp()) + ildcp() + b"\r\n0\r\n\r\n",
        200,
        Fulfill,
    ),
    "asgi": (lambda: post(ildcp(), path="/ilp?via=asgi"), 200, Fulfill),
    "health": (lambda: b"GET /healthz HTTP/1.1\r\nHost: connector\r\n\r\n", 200, None),
    "unauthorized": (lambda: post(ildcp(), token="nope"), 401, None),
    "not_a_packet": (lambda: post(b"\x0c\x01\x00"), 200, Reject),
    "forward": (lambda: post(encode_packet(prepare_to("test.bob.x", 1))), 200, Fulfill),
}


async def test_any_pipeline_split_anywhere_is_answered_in_order(connector: Connector) -> None:
    """Requests of every kind, pipelined on one connection and written in pieces cut at
    random places: each is answered, in order, as it would be alone, and only the forwarded
    packets move money (one unit each)."""
    before = await alice(connector)
    parts = urlsplit(connector.url)
    assert parts.hostname is not None and parts.port is not None
    address = (parts.hostname, parts.port)
    forwarded = 0

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        kinds=st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=8),
        cuts=st.lists(st.integers(1, 4000), max_size=10),
    )
    def check(kinds: list[str], cuts: list[int]) -> None:
        nonlocal forwarded
        stream = b"".join(KINDS[kind][0]() for kind in kinds)
        pieces = sorted({cut % len(stream) for cut in cuts} - {0})
        replies = Replies()
        with socket.create_connection(address, timeout=20) as sock:
            start = 0
            for cut in [*pieces, len(stream)]:
                sock.sendall(stream[start:cut])
                start = cut
                time.sleep(0.0005)
            while len(replies.done) < len(kinds):
                data = sock.recv(65536)
                assert data, f"closed after {len(replies.done)} of {kinds}"
                replies.feed(data)
        for kind, reply in zip(kinds, replies.done, strict=True):
            _, status, packet_type = KINDS[kind]
            assert reply.status == status, (kind, reply)
            if packet_type is not None:
                assert isinstance(decode_reply(reply.body), packet_type), (kind, reply)
        forwarded += kinds.count("forward")

    await asyncio.to_thread(check)
    assert await alice(connector) == before - forwarded
    assert await connector.pending() == 0
