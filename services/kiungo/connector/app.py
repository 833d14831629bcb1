"""The connector's HTTP surface: ILP over HTTP from peers, SPSP, health and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.config import Settings
from kiungo.connector.node import Node
from kiungo.connector.pipeline import handle_packet
from kiungo.connector.spsp import spsp_endpoint

__all__ = ["MAX_BODY", "create_app", "serve_node"]

OCTETS = "application/octet-stream"
# Prepares are at most ~33 kB; interledger-rs accepts 40,000 bytes.
MAX_BODY = 40_000


def create_app(node: Node) -> Starlette:
    async def ilp(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        peer = node.peers.authenticate(token) if scheme.lower() == "bearer" and token else None
        if peer is None:
            return Response("unauthorized", 401, headers={"WWW-Authenticate": "Bearer"})
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != OCTETS:
            return Response("expected application/octet-stream", 400)
        body = await _read_body(request)
        if body is None:
            return Response("packet too large", 413)
        reply, after_reply = await handle_packet(node, peer, body)
        task = BackgroundTask(after_reply) if after_reply is not None else None
        return Response(reply, media_type=OCTETS, background=task)

    async def healthz(request: Request) -> Response:
        try:
            async with node.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            await node.redis.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    async def spsp(request: Request) -> Response:
        return await spsp_endpoint(node, request)

    return Starlette(
        routes=[
            Route("/ilp", ilp, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{path:path}", spsp, methods=["GET", "OPTIONS"]),
        ]
    )


async def _read_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.asynccontextmanager
async def serve_node(settings: Settings, database_url: str, redis_url: str) -> AsyncIterator[Node]:
    node = await Node.start(settings, database_url, redis_url)
    try:
        yield node
    finally:
        await node.close()
