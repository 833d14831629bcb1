"""``POST /ilp`` answered by the connector's HTTP protocol itself, not through ASGI.

A forwarded packet is two HTTP exchanges and two ledger operations; under ASGI the inbound
exchange alone (uvicorn's request cycle and task, the scope, the receive and send messages, a
disconnect probe that costs a turn of the event loop, the reply written in two syscalls) was
about a fifth of what a packet costs the connector. :class:`IlpProtocol` is uvicorn's httptools
protocol, with uvicorn's connection handling kept whole (keep-alive and its timeout, pipelining,
flow control, graceful shutdown, the 400 for what httptools cannot parse), and a request that
is exactly ``POST /ilp`` over HTTP/1.1 without ``Expect`` or ``Upgrade`` handled by an
:class:`_IlpExchange` in place of uvicorn's request cycle: the body is gathered by the
parser's callbacks (at most :data:`MAX_BODY` bytes: past that the reply is a 413 and the
connection closes), the packet goes to the same :func:`kiungo.connector.app.answer` as the
ASGI endpoint's, and the reply is one write. Every other request, ``/ilp`` spelt otherwise
included, is the ASGI app's, as before.

It relies on uvicorn's ``HttpToolsProtocol`` internals (pinned in ``pyproject.toml``):
``tests/connector/test_ilp_protocol.py`` drives them over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from kiungo.connector.app import MAX_BODY, OCTETS, TOO_LARGE, admit, answer
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo

__all__ = ["IlpProtocol", "ilp_protocol"]

log = logging.getLogger("kiungo.connector")

_OCTETS = OCTETS.encode()


def ilp_protocol(node: Node) -> type[IlpProtocol]:
    """The protocol class (uvicorn's ``http`` setting) that answers ``node``'s packets."""
    return type("NodeIlpProtocol", (IlpProtocol,), {"node": node})


class IlpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering ``POST /ilp`` itself (module docstring)."""

    node: Node

    def on_headers_complete(self) -> None:
        parser = self.parser
        if (
            self.url != b"/ilp"
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or self.expect_100_continue
            or parser.should_upgrade()
        ):
            super().on_headers_complete()
            return
        exchange = _IlpExchange(self, admit(self.node, self.headers), parser.should_keep_alive())
        # As uvicorn's own requests: one at a time per connection, later ones queued in order.
        existing = self.cycle
        self.cycle = exchange  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(exchange, self.app)  # type: ignore[arg-type]
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((exchange, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        exchange: object = self.cycle
        if type(exchange) is _IlpExchange:
            exchange.take(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        exchange: object = self.cycle
        if type(exchange) is _IlpExchange:
            exchange.more_body = False
            exchange.message_event.set()
        else:
            super().on_message_complete()


class _IlpExchange:
    """One ``POST /ilp`` on a connection, in the place of uvicorn's request cycle: it has the
    attributes uvicorn's protocol reads and sets on its cycle (``response_complete``,
    ``disconnected``, ``keep_alive``, ``message_event``) and the ``run_asgi`` it starts one
    with."""

    __slots__ = (
        "admitted",
        "body",
        "disconnected",
        "keep_alive",
        "message_event",
        "more_body",
        "protocol",
        "response_complete",
        "too_large",
    )

    def __init__(
        self,
        protocol: IlpProtocol,
        admitted: PeerInfo | tuple[int, bytes, bytes, bytes],
        keep_alive: bool,
    ) -> None:
        self.protocol = protocol
        self.admitted = admitted
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.too_large = False
        self.response_complete = False
        self.disconnected = False
        # Set when the body is complete, too large, or the connection is lost.
        self.message_event = asyncio.Event()

    def take(self, chunk: bytes) -> None:
        """A piece of the body (kept only for an admitted packet, up to MAX_BODY)."""
        if self.too_large or self.response_complete or type(self.admitted) is not PeerInfo:
            return
        if len(self.body) + len(chunk) > MAX_BODY:
            # Answered with a 413 and the connection closed: the rest is not read.
            self.too_large = True
            self.body = bytearray()
            self.protocol.flow.pause_reading()
            self.message_event.set()
            return
        self.body += chunk

    async def run_asgi(self, app: Any) -> None:
        """Answer the request (``app`` is the ASGI app's, unused: the name is uvicorn's)."""
        try:
            await self._answer()
        except asyncio.CancelledError:
            self.protocol.transport.close()
            raise
        except Exception:
            log.exception("answering a POST /ilp failed")
            if not self.response_complete:
                self._write(500, b"Internal Server Error", b"text/plain", b"", close=True)
            else:
                self.protocol.transport.close()

    async def _answer(self) -> None:
        admitted = self.admitted
        if type(admitted) is not PeerInfo:
            # A body declared too large is not read: the connection ends with the 413.
            await self._respond(*admitted, close=admitted is TOO_LARGE)  # type: ignore[misc]
            return
        if self.more_body and not self.too_large:
            await self.message_event.wait()
        if self._gone():
            return
        if self.too_large:
            await self._respond(*TOO_LARGE, close=True)
            return
        await answer(self.protocol.node, admitted, bytes(self.body), self._gone_now, self._reply)

    def _gone(self) -> bool:
        # uvicorn marks only the latest request of a connection as disconnected; one answered
        # before a pipelined one sees the closed transport.
        return self.disconnected or self.protocol.transport.is_closing()

    async def _gone_now(self) -> bool:
        return self._gone()

    async def _reply(self, packet: bytes) -> None:
        await self._respond(200, packet, _OCTETS)

    async def _respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        challenge: bytes = b"",
        *,
        close: bool = False,
    ) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self._gone():
            await flow.drain()  # a client that does not read its replies waits for them
        self._write(status, body, content_type, challenge, close=close)

    def _write(
        self, status: int, body: bytes, content_type: bytes, challenge: bytes, *, close: bool
    ) -> None:
        protocol = self.protocol
        if self._gone():
            return
        if close:
            self.keep_alive = False
        head = [
            STATUS_LINE[status],
            b"content-type: ",
            content_type,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        if challenge:
            head += [b"www-authenticate: ", challenge, b"\r\n"]
        for name, value in protocol.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        protocol.transport.write(b"".join(head))
        self.response_complete = True
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()
