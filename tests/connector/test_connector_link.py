"""The HTTP/1.1 link to peers against a raw server: lengths, chunks, the end of the connection,
interim and bodiless replies, reuse (never after stray bytes), failures and bounds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from kiungo.connector.link import LinkError, PeerLinks
from kiungo.runtime.http1 import MAX_HEAD, MAX_REPLY

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/ilp", connections
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


async def test_keep_alive_connections_are_reused_and_headers_sent() -> None:
    heads: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            heads.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with raw_server(echo) as (url, connections):
        links = PeerLinks()
        for i in range(5):
            assert await links.post(url, b"packet-%d" % i, "secret") == (200, b"packet-%d" % i)
        await links.close()
    assert len(connections) == 1
    assert b"Authorization: Bearer secret" in heads[0]
    assert b"Content-Type: application/octet-stream" in heads[0]


async def test_chunked_replies_are_read() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )

    async with raw_server(chunked) as (url, _):
        assert await PeerLinks().post(url, b"x", "t") == (200, b"abcde")


async def test_connection_close_replies_are_not_reused() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno")

    async with raw_server(closing) as (url, connections):
        links = PeerLinks()
        assert await links.post(url, b"x", "t") == (500, b"no")
        assert await links.post(url, b"x", "t") == (500, b"no")
    assert len(connections) == 2


@pytest.mark.parametrize("answer", [b"garbage\r\n\r\n", b""])
async def test_non_http_answers_and_hangups_are_link_errors(answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)

    async with raw_server(broken) as (url, _):
        with pytest.raises(LinkError):
            await PeerLinks().post(url, b"x", "t")


async def test_unreachable_peer_is_a_link_error() -> None:
    with pytest.raises(LinkError):
        await PeerLinks().post("http://127.0.0.1:9/ilp", b"x", "t")


async def post_within(links: PeerLinks, url: str, body: bytes = b"x") -> tuple[int, bytes]:
    """A post that fails the test, rather than hangs it, when the reply is never taken as
    complete."""
    async with asyncio.timeout(10):
        return await links.post(url, body, "t")


async def test_a_reply_delimited_by_the_end_of_the_connection_is_read_to_the_end() -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\nfirst,")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"second,")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"third")

    async with raw_server(close_delimited) as (url, connections):
        links = PeerLinks()
        assert await post_within(links, url) == (200, b"first,second,third")
        assert await post_within(links, url) == (200, b"first,second,third")
    assert len(connections) == 2  # such a connection ends with its reply


async def test_an_http_1_0_reply_without_a_length_is_read_to_the_end() -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"cd")

    async with raw_server(old) as (url, _):
        assert await post_within(PeerLinks(), url) == (200, b"abcd")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_REPLY + 1),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_REPLY + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % (MAX_REPLY // 2)
        + b"y" * (MAX_REPLY // 2)
        + b"\r\n"
        + b"%x\r\n" % (MAX_REPLY // 2)
        + b"y" * (MAX_REPLY // 2)
        + b"\r\n"
        + b"1\r\nz\r\n0\r\n\r\n",
    ],
    ids=["close-delimited", "content-length", "chunked"],
)
async def test_a_reply_larger_than_the_bound_is_a_link_error(answer: bytes) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with raw_server(huge) as (url, _):
        with pytest.raises(LinkError, match="too large"):
            await post_within(PeerLinks(), url)


async def test_headers_that_never_end_are_a_link_error() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(MAX_HEAD // 1000 + 2):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000))
            await writer.drain()
        await reader.read()  # until the client hangs up

    async with raw_server(endless) as (url, _):
        with pytest.raises(LinkError, match="headers too long"):
            await post_within(PeerLinks(), url)


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "segment-each"])
async def test_interim_1xx_replies_are_skipped_for_the_final_one(split: bool) -> None:
    replies = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
    ]

    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            for reply in replies if split else [b"".join(replies)]:
                writer.write(reply)
                await writer.drain()
                await asyncio.sleep(0.01)

    async with raw_server(interim) as (url, connections):
        links = PeerLinks()
        assert await post_within(links, url) == (200, b"final")
        assert await post_within(links, url) == (200, b"final")
    assert len(connections) == 1


async def test_endless_interim_replies_are_a_link_error() -> None:
    async def stalling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        while True:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)
            await writer.drain()

    async with raw_server(stalling) as (url, _):
        with pytest.raises(LinkError, match="headers too long"):
            await post_within(PeerLinks(), url)


async def test_switching_protocols_is_a_link_error() -> None:
    async def upgrading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )
        await reader.read()  # until the client hangs up

    async with raw_server(upgrading) as (url, _):
        with pytest.raises(LinkError, match="switched protocols"):
            await post_within(PeerLinks(), url)


@pytest.mark.parametrize(
    "status",
    [b"204 No Content", b"304 Not Modified", b"304 Not Modified\r\nContent-Length: 99999999"],
)
async def test_bodiless_replies_without_a_length_end_at_their_headers(status: bytes) -> None:
    """Whatever length they state: a 304's is that of the body it does not send."""

    async def bodiless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 " + status + b"\r\nServer: raw\r\n\r\n")

    async with raw_server(bodiless) as (url, connections):
        links = PeerLinks()
        for _ in range(3):
            assert await post_within(links, url) == (int(status[:3]), b"")
    assert len(connections) == 1  # and the connection is kept


@pytest.mark.parametrize(
    "stray",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray",  # a whole second reply
        b"XY",
        b"\r\n",
    ],
    ids=["a-reply", "garbage", "crlf"],
)
@pytest.mark.parametrize("later", [False, True], ids=["same-segment", "later-segment"])
async def test_a_connection_with_bytes_after_the_reply_is_not_reused(
    stray: bytes, later: bool
) -> None:
    """Each connection's first reply is followed by ``stray``: with the reply, or once the
    client has its reply. No reply is ever anything but the one its request got."""

    async def untidy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            _, body = await read_request(reader)
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            if first and later:
                writer.write(reply)
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(stray)
            else:
                writer.write(reply + stray if first else reply)
            first = False

    async with raw_server(untidy) as (url, connections):
        links = PeerLinks()
        for i in range(3):
            assert await post_within(links, url, b"packet-%d" % i) == (200, b"packet-%d" % i)
            await asyncio.sleep(0.1)  # the stray bytes have arrived
    if stray != b"\r\n" or later:
        assert len(connections) == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200",
    ],
)
async def test_a_reply_cut_short_by_the_server_closing_is_a_link_error(answer: bytes) -> None:
    async def truncating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)

    async with raw_server(truncating) as (url, _):
        with pytest.raises(LinkError):
            await post_within(PeerLinks(), url)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 1\n\na",  # bare LF
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x0d\x00\x00",
    ],
)
async def test_malformed_replies_are_link_errors(answer: bytes) -> None:
    async def malformed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await reader.read()  # until the client hangs up

    async with raw_server(malformed) as (url, _):
        with pytest.raises(LinkError):
            await post_within(PeerLinks(), url)


@pytest.mark.parametrize(
    "scenario",
    [
        test_keep_alive_connections_are_reused_and_headers_sent,
        test_chunked_replies_are_read,
        test_a_reply_delimited_by_the_end_of_the_connection_is_read_to_the_end,
        functools.partial(test_interim_1xx_replies_are_skipped_for_the_final_one, True),
        functools.partial(test_bodiless_replies_without_a_length_end_at_their_headers, b"204 OK"),
        functools.partial(test_a_connection_with_bytes_after_the_reply_is_not_reused, b"XY", True),
        functools.partial(test_a_reply_cut_short_by_the_server_closing_is_a_link_error, b"HTTP/1"),
        functools.partial(
            test_a_reply_larger_than_the_bound_is_a_link_error,
            b"HTTP/1.1 200 OK\r\n\r\n" + bytes(MAX_REPLY + 1),
        ),
    ],
)
def test_the_link_works_on_uvloop_as_the_services_run_it(
    scenario: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """The services run on uvloop (kiungo.runtime.runner), whose transports are not asyncio's
    classes; the other tests run on asyncio's loop."""
    uvloop.run(scenario())
