"""The SPSP client against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.hostile_http import close_delimited, complete, endless, hostile_server, trickled
from tests.loopback import serve

from kiungo.runtime.receiver_fetch import is_public_address, receiver_client
from kiungo.spsp import SPSP_CONTENT_TYPE, SpspQueryError, SpspResponse, query
from kiungo.spsp.client import MAX_SPSP_BYTES

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


# -- hostile receivers: every query is bounded in time and size -----------------------------------

GOOD_BODY = json.dumps(SpspResponse("test.receiver.token", SECRET).to_json()).encode()


async def test_a_trickling_receiver_fails_within_the_time_limit() -> None:
    body = GOOD_BODY[:-1] + b" " * 1200 + b"}"  # still a good answer, of 60 s at that pace
    async with (
        hostile_server(trickled(body, 0.05)) as server,
        receiver_client(refuse_private=False) as client,
    ):
        started = time.monotonic()
        with pytest.raises(SpspQueryError, match=r"did not answer within 0\.5 s"):
            await query(f"{server.url}/alice", client=client, max_seconds=0.5)
    # httpx's per-read timeout never fires; ample slack over the 0.5 s for a loaded machine.
    assert time.monotonic() - started < 10


async def test_an_oversized_answer_is_refused_even_when_it_is_valid_spsp() -> None:
    padded = GOOD_BODY[:-1] + b" " * (MAX_SPSP_BYTES + 1) + b"}"
    async with (
        hostile_server(complete(padded, SPSP_CONTENT_TYPE)) as declared,
        hostile_server(close_delimited(padded)) as undeclared,
        receiver_client(refuse_private=False) as client,
    ):
        with pytest.raises(SpspQueryError, match=f"more than {MAX_SPSP_BYTES} bytes"):
            await query(f"{declared.url}/alice", client=client)
        with pytest.raises(SpspQueryError, match="more than"):
            await query(f"{undeclared.url}/alice", client=client)


async def test_an_endless_body_is_cut_at_the_size_limit() -> None:
    async with hostile_server(endless()) as server, receiver_client(refuse_private=False) as client:
        started = time.monotonic()
        with pytest.raises(SpspQueryError, match="more than"):
            await query(f"{server.url}/alice", client=client, max_seconds=60)
    assert time.monotonic() - started < 10  # cut at the size, long before the time limit


async def test_an_answer_without_a_json_content_type_is_refused() -> None:
    async with (
        hostile_server(complete(GOOD_BODY, "text/html")) as server,
        receiver_client(refuse_private=False) as client,
    ):
        with pytest.raises(SpspQueryError, match="not JSON"):
            await query(f"{server.url}/alice", client=client)


# -- private addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "169.254.169.254", "[fd00:ec2::254]"],
)
async def test_with_private_receivers_refused_no_connection_is_made(host: str) -> None:
    async with hostile_server(complete(b'{"internal": "secret"}', status=418)) as server:
        port = server.url.rsplit(":", 1)[1]
        async with receiver_client(refuse_private=True) as client:
            with pytest.raises(SpspQueryError) as raised:
                await query(f"http://{host}:{port}/admin", client=client, allow_http=True)
        assert "non-public address" in str(raised.value)
        # The port may contain the digits 418; the message must not report the reply's status.
        message = str(raised.value).replace(f":{port}/", ":PORT/")
        assert "418" not in message and "secret" not in message
        assert raised.value.status_code is None
        assert server.requests == []


async def test_private_receivers_are_read_when_allowed() -> None:
    async with (
        hostile_server(complete(GOOD_BODY, SPSP_CONTENT_TYPE)) as server,
        receiver_client(refuse_private=False) as client,
    ):
        answer = await query(f"{server.url}/alice", client=client)
    assert answer.destination_account == "test.receiver.token"


def test_what_counts_as_a_public_address() -> None:
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"]
    private = [
        "127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1",
        "169.254.169.254", "169.254.1.1", "fe80::1", "fc00::1", "fd00:ec2::254", "100.64.0.1",
        "0.0.0.0", "::", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "64:ff9b::7f00:1",
        "2002:7f00:1::1", "2002:a9fe:a9fe::1", "198.18.0.1", "192.0.2.1",
    ]  # fmt: skip
    assert all(is_public_address(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public_address(ipaddress.ip_address(a)) for a in private)
