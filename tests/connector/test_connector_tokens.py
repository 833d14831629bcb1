"""Peer tokens, both ways, through the admin API and the connector.

Tokens are printable ASCII: the admin API refuses any other (BAD_USER_INPUT), since HTTP
implementations agree on a header's bytes only there. The connector hashes an incoming token's
bytes as they come and sends an outgoing token as UTF-8, the encoding the stored digests are of,
so even a token written into the database by hand means the same bytes both ways.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.connector.harness import (
    Connector,
    create_peer,
    fulfilling_hop,
    next_hop,
    prepare_to,
)

from kiungo.ilp.ildcp import build_request, parse_response
from kiungo.ilp.packet import Fulfill, decode_reply, encode_packet
from kiungo.ledger import Ledger
from kiungo.store.channels import PEERS_CHANGED_CHANNEL

CREATE_PEER = """
mutation($input: CreatePeerInput!) { createPeer(input: $input) { peer { id } } }
"""
UPDATE_PEER = """
mutation($input: UpdatePeerInput!) { updatePeer(input: $input) { peer { id } } }
"""
NON_ASCII = "jeton-de-pair-été-ключ"


@pytest.fixture
async def admin(
    connector: Connector, database_url: str, redis_server_url: str, redis_prefix: str
) -> AsyncIterator[Admin]:
    """The admin API on the connector's database and Redis prefix (its peer changes reach the
    connector)."""
    settings = backend_settings(redis_prefix)
    async with running_backend(database_url, redis_server_url, settings, workers=False) as admin:
        yield admin


def peer_input(
    connector: Connector, address: str, incoming: str, outgoing: str
) -> dict[str, object]:
    return {
        "assetId": str(connector.seeded.usd),
        "staticIlpAddress": address,
        "http": {
            "incoming": {"authTokens": [incoming]},
            "outgoing": {"authToken": outgoing, "endpoint": "http://127.0.0.1:9/ilp"},
        },
    }


async def post_ilp(connector: Connector, token: bytes, body: bytes) -> httpx.Response:
    return await connector.client.post(
        f"{connector.url}/ilp",
        content=body,
        headers={
            b"Authorization": b"Bearer " + token,
            b"Content-Type": b"application/octet-stream",
        },
    )


async def ildcp_address(connector: Connector, token: bytes, seconds: float = 5.0) -> str | None:
    """The address IL-DCP tells the peer holding ``token``, once the connector knows it (its
    peers reload on a change message); None if it never does."""
    body = encode_packet(build_request(datetime.now(UTC)))
    for _ in range(int(seconds / 0.05)):
        response = await post_ilp(connector, token, body)
        if response.status_code == 200:
            reply = decode_reply(response.content)
            assert isinstance(reply, Fulfill), reply
            return parse_response(reply).client_address
        assert response.status_code == 401, response.text
        await asyncio.sleep(0.05)
    return None


async def test_a_peer_made_in_the_api_authenticates_with_its_token(
    connector: Connector, admin: Admin
) -> None:
    token = "zoe-to-us-~!#$%&'*+-.^_`|0123456789"  # printable ASCII, punctuation and all
    await admin.data(CREATE_PEER, {"input": peer_input(connector, "test.zoe", token, "us-to-zoe")})
    assert await ildcp_address(connector, token.encode()) == "test.zoe"


async def test_tokens_that_are_not_printable_ascii_are_refused_by_the_api(
    connector: Connector, admin: Admin
) -> None:
    before = await admin.pool.fetchval("SELECT count(*) FROM peer_incoming_tokens")
    for incoming, outgoing in (
        (NON_ASCII, "us-to-them"),
        ("line\r\nbreak", "us-to-them"),
        ("them-to-us", NON_ASCII),
    ):
        failure = await admin.error(
            CREATE_PEER, {"input": peer_input(connector, "test.them", incoming, outgoing)}
        )
        assert failure.code == "BAD_USER_INPUT", failure.errors
    assert (
        await admin.pool.fetchval(
            "SELECT count(*) FROM peers WHERE static_ilp_address = $1", "test.them"
        )
        == 0
    )

    peer = await admin.data(
        CREATE_PEER, {"input": peer_input(connector, "test.them", "them-to-us", "us-to-them")}
    )
    peer_id = peer["createPeer"]["peer"]["id"]
    failure = await admin.error(
        UPDATE_PEER,
        {
            "input": {
                "id": peer_id,
                "http": {
                    "incoming": {"authTokens": ["fine", NON_ASCII]},
                    "outgoing": {"authToken": "us-to-them", "endpoint": "http://127.0.0.1:9/ilp"},
                },
            }
        },
    )
    assert failure.code == "BAD_USER_INPUT", failure.errors
    assert await admin.pool.fetchval("SELECT count(*) FROM peer_incoming_tokens") == before + 1
    # The token it has still works; a non-ASCII one is an unknown token (401), not an error.
    assert await ildcp_address(connector, b"them-to-us") == "test.them"
    assert (await post_ilp(connector, NON_ASCII.encode(), b"")).status_code == 401


async def test_a_token_is_the_same_utf8_bytes_incoming_and_outgoing(
    connector: Connector, redis: Redis, redis_prefix: str
) -> None:
    """Tokens written into the database by hand (the API takes ASCII only), as their UTF-8."""
    authorizations: list[bytes] = []

    async def hop(request: Request) -> Response:
        authorizations.extend(v for k, v in request.scope["headers"] if k == b"authorization")
        return await fulfilling_hop()(request)

    async with next_hop(hop) as endpoint:
        async with connector.pool.acquire() as conn, Ledger(connector.pool) as ledger:
            await create_peer(
                conn, ledger, asset=connector.seeded.usd, address="test.yuki",
                endpoint=endpoint, incoming_token=NON_ASCII, outgoing_token=NON_ASCII,
                routes=("test.yukiland",), liquidity=1000,
            )  # fmt: skip
        await redis.publish(redis_prefix + PEERS_CHANGED_CHANNEL, "changed")
        # In: the peer sends its token as UTF-8 and is known by it.
        assert await ildcp_address(connector, NON_ASCII.encode("utf-8")) == "test.yuki"
        # Out: a packet routed to the peer carries its outgoing token as UTF-8.
        reply = await connector.send(prepare_to(f"test.yukiland.{uuid.uuid4().hex}", 10))
        assert isinstance(reply, Fulfill), reply
    assert authorizations == [b"Bearer " + NON_ASCII.encode("utf-8")]
