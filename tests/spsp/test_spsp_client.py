"""The SPSP client against a real HTTP server on loopback."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.loopback import serve

from kiungo.spsp import SPSP_CONTENT_TYPE, SpspQueryError, SpspResponse, query

SECRET = bytes(range(32))
seen_headers: list[dict[str, str]] = []


async def good(request: Request) -> Response:
    seen_headers.append(dict(request.headers))
    body = SpspResponse("test.receiver.token", SECRET, True).to_json()
    return JSONResponse(body, media_type=SPSP_CONTENT_TYPE)


async def short_secret(request: Request) -> Response:
    body = {
        "destination_account": "test.r",
        "shared_secret": base64.b64encode(SECRET[:16]).decode(),
    }
    return JSONResponse(body)


async def not_json(request: Request) -> Response:
    return Response(b"<html>", media_type="text/html")


async def missing(request: Request) -> Response:
    return JSONResponse({"id": "InvalidReceiverError", "message": "Invalid receiver ID"}, 404)


APP = Starlette(
    routes=[
        Route("/alice", good),
        Route("/short", short_secret),
        Route("/html", not_json),
        Route("/missing", missing),
    ]
)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve(APP) as url:
        yield url


async def test_query_returns_credentials_and_sends_spsp_accept(base_url: str) -> None:
    seen_headers.clear()
    async with httpx.AsyncClient() as client:
        response = await query(f"{base_url}/alice", client=client)
    assert response == SpspResponse("test.receiver.token", SECRET, True)
    assert "application/spsp4+json" in seen_headers[0]["accept"]
    assert "receipt-nonce" not in seen_headers[0]


async def test_query_sends_receipt_headers(base_url: str) -> None:
    seen_headers.clear()
    async with httpx.AsyncClient() as client:
        await query(
            f"{base_url}/alice", client=client, receipt_nonce=bytes(16), receipt_secret=bytes(32)
        )
    assert base64.b64decode(seen_headers[0]["receipt-nonce"]) == bytes(16)
    assert base64.b64decode(seen_headers[0]["receipt-secret"]) == bytes(32)


@pytest.mark.parametrize("path", ["/missing", "/short", "/html"])
async def test_unusable_answers_raise_a_query_error(base_url: str, path: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(SpspQueryError):
            await query(f"{base_url}{path}", client=client)


async def test_not_found_carries_its_status(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(SpspQueryError) as info:
            await query(f"{base_url}/missing", client=client)
    assert info.value.status_code == 404


async def test_unreachable_receiver_raises_a_query_error() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(SpspQueryError):
            await query("http://127.0.0.1:9/alice", client=client)


async def test_bad_pointer_raises_a_query_error() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(SpspQueryError):
            await query("$example.com:443/alice", client=client)
