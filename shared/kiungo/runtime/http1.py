"""A small HTTP/1.1 client for the hot paths: keep-alive connections, one POST each.

ILP packets to peers and webhook events are small POSTs sent by the thousand; httpx's pool
slowed to a few hundred requests/s at 64 concurrent connections on this machine and cost more
CPU per request than the rest of the work. This client keeps a stack of idle connections per
URL; what a connection receives goes straight into llhttp (``httptools.HttpResponseParser``),
so replies are framed as HTTP frames them: Content-Length, chunked, or the end of the
connection; no body after ``1xx``, ``204`` and ``304``; interim ``1xx`` replies skipped.
Everything else (SPSP, rates) uses httpx.

A connection is reused only when its last reply ended cleanly, the server keeps it alive and
not one byte has arrived since: a byte the client did not ask for would otherwise be read as
part of the next request's reply (for an ILP packet, a Fulfill lost or a hold voided that the
next hop fulfilled). llhttp skips empty lines between replies (RFC 9112 §2.2), so a stray CRLF
in the same segment as a reply is consumed there; anything else after a reply closes it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["MAX_HEAD", "MAX_REPLY", "Http1Client", "LinkError"]

MAX_REPLY = 1 << 20
# The status line and headers of a reply, interim 1xx replies included.
MAX_HEAD = 64 * 1024
_MAX_IDLE = 256
# Below the 5 s keep-alive timeout of uvicorn and Node's http server.
_IDLE_SECONDS = 4.0


class LinkError(Exception):
    """The server could not be reached or did not answer with HTTP."""


class _Connection(asyncio.Protocol):
    """One connection; a reply is parsed as its bytes arrive, in llhttp's callbacks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._reply: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._final = False  # the headers of the final (non-1xx) reply are complete
        self._framed = False  # its length is known: Content-Length or chunked
        self._head_size = 0
        self._body: list[bytes] = []
        self._size = 0

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._reply = reply = asyncio.get_running_loop().create_future()
        self.reusable = False
        self._final = False
        self._head_size = 0
        self._body = []
        self._size = 0
        self.transport.write(request)
        return reply

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None or reply.done():
            self.close()  # nobody asked for these bytes
            return
        if not self._final:
            self._head_size += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            self._fail(context if isinstance(context, LinkError) else LinkError(str(exc)))
        except httptools.HttpParserUpgrade:
            self._fail(LinkError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(LinkError(f"not an HTTP/1.1 reply: {exc}"))
        else:
            if not self._final and self._head_size > MAX_HEAD:
                self._fail(LinkError("reply headers too long"))

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._ended(exc)

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._reply is None or self._reply.done():
            # A second reply after the final one: it must not answer the next request.
            self.reusable = False
            raise LinkError("bytes after the reply")
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._framed = True
            value = value.strip()
            # A 304 may state the length of a body it does not send.
            if (
                value.isdigit()
                and int(value) > MAX_REPLY
                and self._parser.get_status_code() not in (204, 304)
            ):
                raise LinkError("reply too large")
        elif name == b"transfer-encoding" and value.lower().rstrip().endswith(b"chunked"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            raise LinkError("the server switched protocols")
        if status >= 200:
            self._status = status
            self._final = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_REPLY:
            raise LinkError("reply too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._final:
            return  # an interim 1xx reply: the final one follows
        self.reusable = self._parser.should_keep_alive()
        self._complete()

    # ----------------------------------------------------------------------------------------

    def _complete(self) -> None:
        assert self._reply is not None
        if not self._reply.done():
            self._reply.set_result((self._status, b"".join(self._body)))

    def _fail(self, error: LinkError) -> None:
        self.close()
        reply = self._reply
        if reply is not None and not reply.done():
            reply.set_exception(error)

    def _ended(self, exc: Exception | None) -> None:
        self.reusable = False
        reply = self._reply
        if reply is None or reply.done():
            return
        if exc is None and self._final and not self._framed:
            self._complete()  # a reply delimited by the end of the connection
        else:
            reason = f": {exc!r}" if exc is not None else ""
            reply.set_exception(LinkError(f"connection closed before the reply ended{reason}"))


class _Endpoint:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LinkError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = self.host if parts.port is None else f"{self.host}:{parts.port}"
        self.head = f"POST {self.path} HTTP/1.1\r\nHost: {host_header}\r\n".encode()
        self.idle: list[tuple[float, _Connection]] = []


class Http1Client:
    """POSTs over a stack of idle keep-alive connections per URL."""

    def __init__(self) -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self._tls = ssl.create_default_context()

    async def post(self, url: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """POST ``body`` with ``headers`` (complete ``Name: value\\r\\n`` lines, no
        Content-Length); the status and body of the final reply.

        The caller bounds the time (a timeout around the call); cancellation closes the
        connection in use.
        """
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = _Endpoint(url)
        request = b"".join(
            (
                endpoint.head,
                headers,
                b"Content-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        connection = None
        now = time.monotonic()
        while endpoint.idle:
            since, idle = endpoint.idle.pop()
            # A POST is never resent, so a connection the peer may be closing is not reused.
            transport = idle.transport
            if (
                now - since > _IDLE_SECONDS
                or not idle.reusable
                or transport is None
                or transport.is_closing()
            ):
                idle.close()
                continue
            connection = idle
            break
        if connection is None:
            try:
                _, connection = await asyncio.get_running_loop().create_connection(
                    _Connection,
                    endpoint.host,
                    endpoint.port,
                    ssl=self._tls if endpoint.tls else None,
                )
            except OSError as exc:
                raise LinkError(
                    f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}"
                ) from None
        try:
            return await connection.exchange(request)
        finally:
            if connection.reusable and len(endpoint.idle) < _MAX_IDLE:
                endpoint.idle.append((time.monotonic(), connection))
            else:
                connection.close()

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            for _, connection in endpoint.idle:
                connection.close()
            endpoint.idle.clear()
