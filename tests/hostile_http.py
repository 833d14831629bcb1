"""HTTP servers on real loopback sockets that answer badly on purpose (the receiver-reading
tests and the receiver fuzz): trickled, oversized, truncated, endless, mislabelled or garbage
replies, written byte for byte with asyncio streams so nothing tidies them up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]

_HEAD_LIMIT = 64 * 1024


@dataclass
class HostileServer:
    url: str
    """``http://127.0.0.1:<port>``."""
    requests: list[bytes] = field(default_factory=list)
    """The head of every request received (an SSRF test checks that none arrived)."""


@contextlib.asynccontextmanager
async def hostile_server(reply: Reply) -> AsyncIterator[HostileServer]:
    """Answer every request on an ephemeral loopback port with ``reply`` (then close)."""
    handlers: set[asyncio.Task[None]] = set()
    state = HostileServer("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            state.requests.append(head[:_HEAD_LIMIT])
            await reply(writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def head(
    status: int = 200,
    content_type: str | None = "application/json",
    length: int | None = None,
    extra: str = "",
) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def complete(
    body: bytes, content_type: str | None = "application/json", status: int = 200
) -> Reply:
    """A well-framed reply (the body may be anything)."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, content_type, len(body)) + body)
        await writer.drain()

    return reply


def trickled(body: bytes, interval: float, content_type: str = "application/json") -> Reply:
    """The head at once, then the body one byte every ``interval`` seconds."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, content_type, len(body)))
        for i in range(len(body)):
            await writer.drain()
            await asyncio.sleep(interval)
            writer.write(body[i : i + 1])
        await writer.drain()

    return reply


def trickled_head(interval: float) -> Reply:
    """The status line and headers one byte every ``interval`` seconds, never finished."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        while True:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: ":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(interval)

    return reply


def endless(chunk: bytes = b" " * 4096) -> Reply:
    """A chunked body that never ends, as fast as the client reads."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, "application/json", extra="Transfer-Encoding: chunked"))
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        writer.write(b"1\r\n{\r\n")
        while True:
            writer.write(framed)
            await writer.drain()

    return reply


def truncated(body: bytes, declared: int) -> Reply:
    """Declares ``declared`` bytes, sends ``body`` (fewer), closes."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, "application/json", declared) + body)
        await writer.drain()

    return reply


def close_delimited(body: bytes, content_type: str = "application/json") -> Reply:
    """No Content-Length: the body ends when the connection closes."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, content_type, extra="Connection: close") + body)
        await writer.drain()

    return reply


def silent() -> Reply:
    """Reads the request and never answers."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    return reply


def raw(data: bytes) -> Reply:
    """Exactly ``data`` (garbage, a bare status line, ...), then close."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return reply
