"""The HTTP/1.1 link to peers against a raw server: lengths, chunks, reuse, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kiungo.connector.link import LinkError, PeerLinks

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
