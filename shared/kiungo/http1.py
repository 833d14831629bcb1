"""A small HTTP/1.1 client for the hot paths: keep-alive connections, one POST each.

ILP packets to peers and webhook events are small POSTs sent by the thousand; httpx's pool
slowed to a few hundred requests/s at 64 concurrent connections on this machine and cost more
CPU per request than the rest of the work. This client keeps a stack of idle connections per
URL and speaks exactly what such exchanges need (Content-Length or chunked replies). Everything
else (SPSP, rates) uses httpx.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

__all__ = ["Http1Client", "LinkError"]

_MAX_REPLY = 1 << 20
_MAX_IDLE = 256
# Below the 5 s keep-alive timeout of uvicorn and Node's http server.
_IDLE_SECONDS = 4.0


class LinkError(Exception):
    """The server could not be reached or did not answer with HTTP."""


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
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []


class Http1Client:
    """POSTs over a stack of idle keep-alive connections per URL."""

    def __init__(self) -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self._tls = ssl.create_default_context()

    async def post(self, url: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """POST ``body`` with ``headers`` (complete ``Name: value\\r\\n`` lines, no
        Content-Length); the status and body of the reply.

        Cancellation (a caller's timeout) closes the connection in use.
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
            since, reader, writer = endpoint.idle.pop()
            # A POST is never resent, so a connection the peer may be closing is not reused.
            if now - since > _IDLE_SECONDS or reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            connection = reader, writer
            break
        if connection is None:
            try:
                connection = await asyncio.open_connection(
                    endpoint.host, endpoint.port, ssl=self._tls if endpoint.tls else None
                )
            except OSError as exc:
                raise LinkError(
                    f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}"
                ) from None
        reader, writer = connection
        try:
            return await self._exchange(endpoint, reader, writer, request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise LinkError(f"connection to {endpoint.host} failed: {exc!r}") from None

    async def _exchange(
        self,
        endpoint: _Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: bytes,
    ) -> tuple[int, bytes]:
        reusable = False
        try:
            writer.write(request)
            status, reply, reusable = await _read_response(reader)
            return status, reply
        finally:
            if reusable and len(endpoint.idle) < _MAX_IDLE:
                endpoint.idle.append((time.monotonic(), reader, writer))
            else:
                writer.close()

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            for _, _, writer in endpoint.idle:
                writer.close()
            endpoint.idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise LinkError("reply headers too long") from None
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if (
        len(status_line) < 2
        or not status_line[0].startswith(b"HTTP/1.")
        or not status_line[1].isdigit()
    ):
        raise LinkError("not an HTTP/1.1 reply")
    status = int(status_line[1])
    length: int | None = None
    chunked = False
    keep_alive = status_line[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection":
            keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
    if chunked:
        return status, await _read_chunked(reader), keep_alive
    if length is not None:
        if length > _MAX_REPLY:
            raise LinkError("reply too large")
        return status, await reader.readexactly(length), keep_alive
    return status, await reader.read(_MAX_REPLY), False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise LinkError("malformed chunked reply") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > _MAX_REPLY:
            raise LinkError("reply too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
