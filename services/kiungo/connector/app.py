"""The connector's HTTP surface: ILP over HTTP from peers, SPSP, wallet address documents and
their JWKS, the Open Payments resource server (:mod:`kiungo.connector.resource_server`), health
and metrics, and the
backend's internal quote probe (``POST /internal/quote``, :mod:`kiungo.connector.quote`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kiungo.config import Settings
from kiungo.connector.node import Node
from kiungo.connector.pipeline import Acceptance, handle_packet
from kiungo.connector.quote import quote_endpoint
from kiungo.connector.resource_server import resource_routes
from kiungo.connector.sending import OutgoingPaymentWorker
from kiungo.connector.spsp import spsp_endpoint
from kiungo.connector.wallet_address import jwks_endpoint
from kiungo.runtime.health import health_routes

__all__ = ["MAX_BODY", "IlpEndpoint", "create_app", "serve_node"]

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


class IlpEndpoint:
    """ILP over HTTP (RFC 35, synchronous): bearer token → peer, octet-stream Prepare in, the
    reply out with 200; 401, 400 and 413 for what is not a peer's packet."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = b""
        content_type = b""
        declared = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        scheme, _, token = authorization.partition(b" ")
        peer = None
        if scheme.lower() == b"bearer" and token:
            peer = self._node.peers.authenticate(token)
        if peer is None:
            await _respond(send, 401, b"unauthorized", b"text/plain", b"Bearer")
            return
        if content_type.split(b";")[0].strip().lower() != _OCTETS:
            await _respond(send, 400, b"expected application/octet-stream", b"text/plain")
            return
        body = await _read_body(receive, declared)
        if body is None:
            await _respond(send, 413, b"packet too large", b"text/plain")
            return
        handled = await handle_packet(self._node, peer, body)
        if not isinstance(handled, Acceptance):
            await _respond(send, 200, handled, _OCTETS)
            return
        if await _client_gone(receive):
            # The peer hung up (crashed, or gave up) before its Fulfill could be sent: the
            # hold is voided and the packet counts in no receipt, so that the receiver does not
            # count what the sender never heard was delivered; the sender pays it again.
            log.warning("peer %s went away before its reply; its hold is voided", peer.id)
            await handled.decline()
            return
        reply = await handled.finish()  # counted: from here the money is posted whatever happens
        try:
            await _respond(send, 200, reply, _OCTETS)
        finally:  # after the reply is sent, as Starlette's background tasks
            await handled.after_reply()


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


async def _read_body(receive: Receive, declared: bytes) -> bytes | None:
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
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
