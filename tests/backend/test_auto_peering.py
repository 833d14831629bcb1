"""Auto-peering (issue 17): the endpoint another node peers through (``POST /`` on
AUTO_PEERING_SERVER_PORT) and ``createOrUpdatePeerByUrl``, which asks it. Two backends here,
each on a database of its own; hostile auto-peering servers answer the mutation badly on
purpose. (tests/network/test_auto_peering.py peers two full nodes and pays across.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.hostile_http import (
    complete,
    endless,
    hostile_server,
    raw,
    silent,
    trickled,
    trickled_head,
)
from tests.loopback import serve
from tests.stores import create_database, drop_database

from kiungo.backend.auto_peering import INITIAL_CREDIT, MAX_BODY_BYTES, auto_peering_app
from kiungo.models.peer import token_hash

PEER_FIELDS = (
    "id staticIlpAddress name maxPacketAmount liquidityThreshold liquidity"
    " http { outgoing { endpoint authToken } } asset { code scale }"
)
BY_URL = (
    "mutation($i: CreateOrUpdatePeerByUrlInput!) { createOrUpdatePeerByUrl(input: $i)"
    f" {{ peer {{ {PEER_FIELDS} }} }} }}"
)
FETCH_SECONDS = 0.5
"""How long the hostile-peer test lets a peer take (short, so its many cases stay quick)."""
HONEST_FETCH_SECONDS = 10.0
"""How long the other tests let a peer answer: an honest exchange on a loaded machine."""


@pytest.fixture
async def beta(
    postgres_server_url: str, migrated_template: str, redis_server_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Admin, str]]:
    """A second backend (ILP address test.beta, connector http://beta.example) on a database of
    its own, and the URL of its auto-peering endpoint."""
    database = await create_database(postgres_server_url, template=migrated_template)
    settings = backend_settings(
        redis_prefix + "beta:", ilp_address="test.beta", ilp_connector_url="http://beta.example"
    )
    try:
        async with (
            running_backend(database, redis_server_url, settings, workers=False) as admin,
            serve(auto_peering_app(admin.backend)) as url,
        ):
            yield admin, f"{url}/"
    finally:
        await drop_database(database)


@pytest.fixture
async def alpha(
    request: pytest.FixtureRequest,
    migrated_database: str,
    redis_server_url: str,
    redis_prefix: str,
    redis: object,
) -> AsyncIterator[Admin]:
    """The asking backend (test.alpha, connector http://alpha.example), reading peers within
    HONEST_FETCH_SECONDS, or FETCH_SECONDS for a test marked ``hasty``."""
    seconds = FETCH_SECONDS if request.node.get_closest_marker("hasty") else HONEST_FETCH_SECONDS
    settings = backend_settings(
        redis_prefix,
        ilp_address="test.alpha",
        ilp_connector_url="http://alpha.example/",
        receiver_fetch_timeout_ms=int(seconds * 1000),
    )
    async with running_backend(migrated_database, redis_server_url, settings) as admin:
        yield admin


async def _peers(admin: Admin) -> list[dict[str, Any]]:
    data = await admin.data(f"{{ peers(first: 10) {{ edges {{ node {{ {PEER_FIELDS} }} }} }} }}")
    return [edge["node"] for edge in data["peers"]["edges"]]


async def _tokens(admin: Admin, peer_id: str) -> list[bytes]:
    rows = await admin.pool.fetch(
        "SELECT token_hash FROM peer_incoming_tokens WHERE peer_id = $1::uuid", peer_id
    )
    return [bytes(row["token_hash"]) for row in rows]


async def _outgoing_token(admin: Admin, peer_id: str) -> str:
    token: str = await admin.pool.fetchval(
        "SELECT http_outgoing_token FROM peers WHERE id = $1::uuid", peer_id
    )
    return token


def _request(**overrides: Any) -> dict[str, Any]:
    return {
        "staticIlpAddress": "test.alpha",
        "ilpConnectorUrl": "http://alpha.example/ilp",
        "asset": {"code": "USD", "scale": 2},
        "httpToken": "alpha-token-0123456789",
        "maxPacketAmount": 1000,
        "name": "alpha",
        **overrides,
    }


# -- the endpoint -----------------------------------------------------------------------------


async def test_the_endpoint_makes_a_peer_with_the_askers_token_and_answers_its_own(
    beta: tuple[Admin, str],
) -> None:
    admin, url = beta
    await admin.create_asset("USD", 2)
    response = await admin.client.post(url, json=_request())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["staticIlpAddress"] == "test.beta"
    assert answer["ilpConnectorUrl"] == "http://beta.example/ilp"
    [peer] = await _peers(admin)
    assert peer["staticIlpAddress"] == "test.alpha"
    assert peer["name"] == "alpha"
    assert peer["maxPacketAmount"] == "1000"
    assert peer["http"]["outgoing"]["endpoint"] == "http://alpha.example/ilp"
    assert int(peer["liquidity"]) == INITIAL_CREDIT  # Rafiki's credit to a new peer
    assert await _tokens(admin, peer["id"]) == [token_hash("alpha-token-0123456789")]
    assert await _outgoing_token(admin, peer["id"]) == answer["httpToken"]

    # Asked again: the same peer, its tokens replaced, no second credit.
    again = await admin.client.post(url, json=_request(httpToken="alpha-token-2", name=None))
    assert again.status_code == 200, again.text
    [same] = await _peers(admin)
    assert same["id"] == peer["id"]
    assert same["name"] == "alpha"  # kept: none was given
    assert int(same["liquidity"]) == INITIAL_CREDIT
    assert await _tokens(admin, peer["id"]) == [token_hash("alpha-token-2")]
    assert again.json()["httpToken"] != answer["httpToken"]
    assert await _outgoing_token(admin, peer["id"]) == again.json()["httpToken"]


BAD_REQUESTS: list[tuple[Any, int, str]] = [
    (_request(asset={"code": "EUR", "scale": 2}), 404, "UnknownAsset"),
    (_request(asset={"code": "USD", "scale": 3}), 404, "UnknownAsset"),
    (_request(staticIlpAddress="not an address"), 400, "InvalidPeerIlpConfiguration"),
    (_request(staticIlpAddress=None), 400, "InvalidPeerIlpConfiguration"),
    (_request(ilpConnectorUrl="ftp://alpha.example"), 400, "InvalidPeerIlpConfiguration"),
    (_request(ilpConnectorUrl="http://"), 400, "InvalidPeerIlpConfiguration"),
    (_request(httpToken=""), 400, "InvalidPeeringRequest"),
    (_request(httpToken="t\n"), 400, "InvalidPeeringRequest"),
    (_request(httpToken="x" * 1025), 400, "InvalidPeeringRequest"),
    (_request(httpToken=7), 400, "InvalidPeeringRequest"),
    (_request(asset="USD"), 400, "InvalidPeeringRequest"),
    (_request(asset={"code": "USD", "scale": "2"}), 400, "InvalidPeeringRequest"),
    (_request(asset={"code": "USD", "scale": 256}), 400, "InvalidPeeringRequest"),
    (_request(asset={"code": "US\x00D", "scale": 2}), 400, "InvalidPeeringRequest"),
    (_request(maxPacketAmount=-1), 400, "InvalidPeeringRequest"),
    (_request(maxPacketAmount=2**64), 400, "InvalidPeeringRequest"),
    (_request(maxPacketAmount=1.5), 400, "InvalidPeeringRequest"),
    (_request(name="a\x00b"), 400, "InvalidPeeringRequest"),
    (_request(name="n" * 256), 400, "InvalidPeeringRequest"),
    ([_request()], 400, "InvalidPeeringRequest"),
    ("{", 400, "InvalidPeeringRequest"),
]


async def test_the_endpoint_refuses_bad_requests_with_rafikis_errors_and_makes_nothing(
    beta: tuple[Admin, str],
) -> None:
    admin, url = beta
    await admin.create_asset("USD", 2)
    for body, status, kind in BAD_REQUESTS:
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = await admin.client.post(url, content=content)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert (error["code"], error["type"]) == (status, kind), body
        assert error["message"]
    assert await _peers(admin) == []


async def test_the_endpoint_bounds_the_body_and_takes_amounts_as_rafiki_sends_them(
    beta: tuple[Admin, str],
) -> None:
    admin, url = beta
    await admin.create_asset("USD", 2)
    huge = json.dumps(_request(name="n" * MAX_BODY_BYTES)).encode()
    response = await admin.client.post(url, content=huge)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "InvalidPeeringRequest"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until too many
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = await admin.client.post(url, content=chunks())
    assert response.status_code == 413
    # Rafiki sends null when it has no limit (Number(undefined) is NaN), and a string is read.
    ok = await admin.client.post(url, json=_request(maxPacketAmount=None))
    assert ok.status_code == 200, ok.text
    assert (await _peers(admin))[0]["maxPacketAmount"] is None
    ok = await admin.client.post(url, json=_request(maxPacketAmount="500", httpToken="t2"))
    assert ok.status_code == 200, ok.text
    assert (await _peers(admin))[0]["maxPacketAmount"] == "500"
    assert (await admin.client.get(url)).status_code == 405


async def test_a_token_another_peer_already_has_is_refused(beta: tuple[Admin, str]) -> None:
    admin, url = beta
    await admin.create_asset("USD", 2)
    assert (await admin.client.post(url, json=_request())).status_code == 200
    other = _request(staticIlpAddress="test.gamma")  # alpha's token
    response = await admin.client.post(url, content=json.dumps(other).encode())
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "InvalidPeeringRequest"
    assert [p["staticIlpAddress"] for p in await _peers(admin)] == ["test.alpha"]


# -- createOrUpdatePeerByUrl ------------------------------------------------------------------


async def test_one_mutation_peers_both_backends_and_a_second_updates_them(
    alpha: Admin, beta: tuple[Admin, str]
) -> None:
    b, url = beta
    a_usd = await alpha.create_asset("USD", 2)
    await b.create_asset("USD", 2)
    given = {
        "peerUrl": url,
        "assetId": a_usd,
        "maxPacketAmount": "100",
        "liquidityThreshold": "10",
        "liquidityToDeposit": "5000",
    }
    data = await alpha.data(BY_URL, {"i": given})
    peer = data["createOrUpdatePeerByUrl"]["peer"]
    assert peer["staticIlpAddress"] == "test.beta"
    assert peer["http"]["outgoing"]["endpoint"] == "http://beta.example/ilp"
    assert (peer["maxPacketAmount"], peer["liquidityThreshold"]) == ("100", "10")
    assert peer["liquidity"] == "5000"
    [b_peer] = await _peers(b)
    assert b_peer["staticIlpAddress"] == "test.alpha"
    assert b_peer["http"]["outgoing"]["endpoint"] == "http://alpha.example/ilp"
    assert b_peer["maxPacketAmount"] == "100"
    # Each side's incoming token is the other's outgoing one.
    a_out, b_out = await _outgoing_token(alpha, peer["id"]), await _outgoing_token(b, b_peer["id"])
    assert await _tokens(b, b_peer["id"]) == [token_hash(a_out)]
    assert await _tokens(alpha, peer["id"]) == [token_hash(b_out)]

    # Again, named: both peers updated (fresh tokens, still matching), none duplicated.
    data = await alpha.data(BY_URL, {"i": {"peerUrl": url, "assetId": a_usd, "name": "beta"}})
    again = data["createOrUpdatePeerByUrl"]["peer"]
    assert again["id"] == peer["id"]
    assert (again["name"], again["maxPacketAmount"], again["liquidity"]) == ("beta", "100", "5000")
    [b_again] = await _peers(b)
    assert b_again["id"] == b_peer["id"]
    a_out2, b_out2 = (
        await _outgoing_token(alpha, peer["id"]),
        await _outgoing_token(b, b_peer["id"]),
    )
    assert a_out2 != a_out and b_out2 != b_out
    assert await _tokens(b, b_peer["id"]) == [token_hash(a_out2)]
    assert await _tokens(alpha, peer["id"]) == [token_hash(b_out2)]
    assert len(await _peers(alpha)) == 1

    # An idempotency key answers a retry with the first result and asks beta only once.
    keyed = {"peerUrl": url, "assetId": a_usd, "idempotencyKey": "k1"}
    first = await alpha.data(BY_URL, {"i": keyed})
    tokens = await _tokens(b, b_peer["id"])
    assert await alpha.data(BY_URL, {"i": keyed}) == first
    assert await _tokens(b, b_peer["id"]) == tokens


async def test_the_mutation_refuses_what_it_cannot_ask_with(
    alpha: Admin, beta: tuple[Admin, str]
) -> None:
    b, url = beta
    a_usd = await alpha.create_asset("USD", 2)
    cases = [
        ({"peerUrl": "not a url", "assetId": a_usd}, "NOT_FOUND", "InvalidPeerUrl"),
        ({"peerUrl": "file:///etc/passwd", "assetId": a_usd}, "NOT_FOUND", "InvalidPeerUrl"),
        (
            {"peerUrl": url, "assetId": "00000000-0000-4000-8000-000000000000"},
            "NOT_FOUND",
            "UnknownAsset",
        ),
        # beta has no USD: Rafiki's PeerUnsupportedAsset.
        ({"peerUrl": url, "assetId": a_usd}, "BAD_USER_INPUT", "PeerUnsupportedAsset"),
    ]
    for given, code, kind in cases:
        error = await alpha.error(BY_URL, {"i": given})
        assert (error.code, error.errors[0]["extensions"]["autoPeeringError"]) == (code, kind)
    error = await alpha.error(BY_URL, {"i": {"peerUrl": url, "assetId": "x"}})
    assert error.code == "BAD_USER_INPUT"
    error = await alpha.error(
        BY_URL, {"i": {"peerUrl": url, "assetId": a_usd, "maxPacketAmount": "0"}}
    )
    assert error.code == "BAD_USER_INPUT"
    error = await alpha.error(BY_URL, {"i": {"peerUrl": url, "assetId": a_usd, "name": "a\x00"}})
    assert error.code == "BAD_USER_INPUT"
    assert await _peers(alpha) == []
    assert await _peers(b) == []  # beta made nothing


def _details(**overrides: Any) -> bytes:
    answer = {
        "staticIlpAddress": "test.hostile",
        "ilpConnectorUrl": "http://hostile.example/ilp",
        "httpToken": "hostile-token",
        **overrides,
    }
    return json.dumps(answer).encode()


HOSTILE: list[tuple[str, Any, str, str]] = [
    ("garbage", raw(b"\x00\xffnot http at all\r\n\r\n"), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    (
        "not JSON",
        complete(b"<html>hi</html>", "text/html"),
        "BAD_USER_INPUT",
        "InvalidPeeringRequest",
    ),
    ("a JSON list", complete(b"[1, 2]"), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("deep JSON", complete(b"[" * 10_000), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("no token", complete(_details(httpToken=None)), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("bad token", complete(_details(httpToken="a\tb")), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("bad name", complete(_details(name=["x"])), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    (
        "bad address",
        complete(_details(staticIlpAddress="g")),
        "INTERNAL_SERVER_ERROR",
        "InvalidPeerIlpConfiguration",
    ),
    (
        "bad endpoint",
        complete(_details(ilpConnectorUrl="javascript:alert(1)")),
        "INTERNAL_SERVER_ERROR",
        "InvalidPeerIlpConfiguration",
    ),
    (
        "huge",
        complete(_details(name="n" * MAX_BODY_BYTES)),
        "BAD_USER_INPUT",
        "InvalidPeeringRequest",
    ),
    ("endless", endless(), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("trickled", trickled(_details(), 0.2), "BAD_USER_INPUT", "InvalidPeeringRequest"),  # 22 s
    ("slow head", trickled_head(0.05), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("silent", silent(), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("500", complete(b"oops", "text/plain", 500), "BAD_USER_INPUT", "InvalidPeeringRequest"),
    ("404", complete(b"", "text/plain", 404), "NOT_FOUND", "InvalidPeerUrl"),
    (
        "refuses our address",
        complete(b'{"error": {"type": "InvalidPeerIlpConfiguration"}}', status=400),
        "BAD_USER_INPUT",
        "InvalidIlpConfiguration",
    ),
    (
        "gzip",
        complete(_details(), "application/json; x=1\r\nContent-Encoding: gzip"),
        "BAD_USER_INPUT",
        "InvalidPeeringRequest",
    ),
]


@pytest.mark.hasty
async def test_a_hostile_peer_is_a_typed_error_within_the_bound_and_nothing_is_made(
    alpha: Admin,
) -> None:
    a_usd = await alpha.create_asset("USD", 2)
    for what, reply, code, kind in HOSTILE:
        async with hostile_server(reply) as server:
            started = time.monotonic()
            error = await alpha.error(BY_URL, {"i": {"peerUrl": server.url, "assetId": a_usd}})
            # Ample slack over the bound for a loaded machine (no hostile answer ends within it).
            assert time.monotonic() - started < FETCH_SECONDS + 4.5, what
            assert server.requests, what
        assert (error.code, error.errors[0]["extensions"]["autoPeeringError"]) == (code, kind), what
    assert await _peers(alpha) == []


async def test_an_unreachable_peer_is_invalid_peer_url(alpha: Admin) -> None:
    a_usd = await alpha.create_asset("USD", 2)
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    error = await alpha.error(
        BY_URL, {"i": {"peerUrl": f"http://127.0.0.1:{port}/", "assetId": a_usd}}
    )
    assert (error.code, error.errors[0]["extensions"]["autoPeeringError"]) == (
        "NOT_FOUND",
        "InvalidPeerUrl",
    )
    assert await _peers(alpha) == []


async def test_a_peer_answering_a_token_already_ours_is_a_duplicate(
    alpha: Admin, beta: tuple[Admin, str]
) -> None:
    """The answered token is the incoming token of another peer here: DUPLICATE, and the
    other peer is untouched."""
    a_usd = await alpha.create_asset("USD", 2)
    await alpha.data(
        "mutation($i: CreatePeerInput!) { createPeer(input: $i) { peer { id } } }",
        {"i": {"assetId": a_usd, "staticIlpAddress": "test.other",
               "http": {"incoming": {"authTokens": ["hostile-token"]},
                        "outgoing": {"authToken": "x", "endpoint": "http://o.example/ilp"}}}},
    )  # fmt: skip
    async with hostile_server(complete(_details())) as server:
        error = await alpha.error(BY_URL, {"i": {"peerUrl": server.url, "assetId": a_usd}})
    assert error.code == "DUPLICATE"
    assert [p["staticIlpAddress"] for p in await _peers(alpha)] == ["test.other"]


def test_settings_read_rafikis_names() -> None:
    from kiungo.config import Settings

    assert Settings.from_env({}).enable_auto_peering is False
    assert Settings.from_env({}).auto_peering_server_port == 3005
    settings = Settings.from_env(
        {"ENABLE_AUTO_PEERING": "true", "AUTO_PEERING_SERVER_PORT": "4005"}
    )
    assert (settings.enable_auto_peering, settings.auto_peering_server_port) == (True, 4005)
