"""The connector's HTTP surface: ILP over HTTP from peers, SPSP, wallet address documents and
their JWKS, the Open Payments resource server (:mod:`kiungo.connector.resource_server`), health
and metrics, and the
backend's internal quote probe (``POST /internal/quote``, :mod:`kiungo.connector.quote`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kiungo.config import Settings
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline import Acceptance, handle_packet
from kiungo.connector.quote import quote_endpoint
from kiungo.connector.resource_server import resource_routes
from kiungo.connector.sending import OutgoingPaymentWorker
from kiungo.connector.spsp import spsp_endpoint
from kiungo.connector.wallet_address import jwks_endpoint
from kiungo.runtime.health import health_routes

__all__ = [
    "MAX_BODY",
    "OCTETS",
    "TOO_LARGE",
    "IlpEndpoint",
    "Refusal",
    "admit",
    "answer",
    "create_app",
    "serve_node",
]

log = logging.getLogger("kiungo.connector")

OCTETS = "application/octet-stream"
# Prepares are at most ~33 kB; interledger-rs accepts 40,000 bytes.
MAX_BODY = 40_000


def create_app(node: Node) -> ASGIApp:
    """``POST /ilp`` on a bare ASGI handler (the hot path: no routing, no Request object), and
    everything else (SPSP, wallet address documents and keys, Open Payments incoming
    payments, /livez, /readyz, /healthz,
    /metrics, /internal/quote) on Starlette."""

    async def metrics(request: Request) -> Response:
        return Response(await node.metrics.scrape(), media_type="text/plain; version=0.0.4")

    async def spsp(request: Request) -> Response:
        return await spsp_endpoint(node, request)

    async def jwks(request: Request) -> Response:
        return await jwks_endpoint(node, request)

    async def quote(request: Request) -> Response:
        return await quote_endpoint(node, request)

    rest = Starlette(
        routes=[
            *health_routes(node.pool, node.redis, node.ledger.readiness_probe()),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/internal/quote", quote, methods=["POST"]),
            Route("/{path:path}/jwks.json", jwks, methods=["GET", "OPTIONS"]),
            *resource_routes(node, spsp),
            Route("/{path:path}", spsp, methods=["GET", "OPTIONS"]),
        ]
    )
    ilp = IlpEndpoint(node)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/ilp" and scope["method"] == "POST":
            await ilp(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return app


Refusal = tuple[int, bytes, bytes, bytes]
"""An HTTP answer to what is not a peer's packet: status, body, content type, challenge."""

_TEXT = b"text/plain"
UNAUTHORIZED: Refusal = (401, b"unauthorized", _TEXT, b"Bearer")
NOT_OCTETS: Refusal = (400, b"expected application/octet-stream", _TEXT, b"")
TOO_LARGE: Refusal = (413, b"packet too large", _TEXT, b"")


def admit(node: Node, headers: Iterable[tuple[bytes, bytes]]) -> PeerInfo | Refusal:
    """The peer a POST /ilp comes from, by its headers (names lowercased), or its refusal:
    401 without a known bearer token, then 400 for another content type, then 413 for a
    declared length past :data:`MAX_BODY` (its body is not read)."""
    authorization = b""
    content_type = b""
    declared = b""
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == b"content-length":
            declared = value
    scheme, _, token = authorization.partition(b" ")
    peer = None
    if scheme.lower() == b"bearer" and token:
        peer = node.peers.authenticate(token)
    if peer is None:
        return UNAUTHORIZED
    if content_type.split(b";")[0].strip().lower() != _OCTETS:
        return NOT_OCTETS
    if declared.isdigit() and int(declared) > MAX_BODY:
        return TOO_LARGE
    return peer


async def answer(
    node: Node,
    peer: PeerInfo,
    body: bytes,
    gone: Callable[[], Awaitable[bool]],
    reply: Callable[[bytes], Awaitable[None]],
) -> None:
    """Handle a peer's packet and ``reply`` with the ILP reply (HTTP 200). Money held for one
    of our receivers is posted only if the peer is still there (``gone``) when the Fulfill is
    built; otherwise its hold is voided and no reply is sent."""
    handled = await handle_packet(node, peer, body)
    if not isinstance(handled, Acceptance):
        await reply(handled)
        return
    if await gone():
        # The peer hung up (crashed, or gave up) before its Fulfill could be sent: the
        # hold is voided and the packet counts in no receipt, so that the receiver does not
        # count what the sender never heard was delivered; the sender pays it again.
        log.warning("peer %s went away before its reply; its hold is voided", peer.id)
        await handled.decline()
        return
    fulfill = await handled.finish()  # counted: from here the money is posted whatever happens
    try:
        await reply(fulfill)
    finally:  # after the reply is sent, as Starlette's background tasks
        await handled.after_reply()


class IlpEndpoint:
    """ILP over HTTP (RFC 35, synchronous) as an ASGI app: bearer token → peer, octet-stream
    Prepare in, the reply out with 200; 401, 400 and 413 for what is not a peer's packet.
    The connector's server answers most of these itself (:mod:`kiungo.connector.ilp_protocol`);
    this serves the rest (HTTP/1.0, ``Expect: 100-continue``, another spelling of the path)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = admit(self._node, scope["headers"])
        if not isinstance(admitted, PeerInfo):
            await _respond(send, *admitted)
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, *TOO_LARGE)
            return

        async def reply(packet: bytes) -> None:
            await _respond(send, 200, packet, _OCTETS)

        await answer(self._node, admitted, body, lambda: _client_gone(receive), reply)


_OCTETS = OCTETS.encode()


async def _client_gone(receive: Receive) -> bool:
    """Whether the client has disconnected, without waiting: with the body read and no reply
    sent yet, the server's ``receive`` answers at once only when the connection is gone."""
    pending = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    if pending.done():
        return bool(pending.result().get("type") == "http.disconnect")
    pending.cancel()
    return False


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, challenge: bytes = b""
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", challenge))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@contextlib.asynccontextmanager
async def serve_node(settings: Settings, database_url: str, redis_url: str) -> AsyncIterator[Node]:
    """A started node with its outgoing payment worker (stopped, and the node closed, on exit)."""
    node = await Node.start(settings, database_url, redis_url)
    node.spawn(OutgoingPaymentWorker(node).run(), name="outgoing-payments")
    try:
        yield node
    finally:
        await node.close()
