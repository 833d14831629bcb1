"""Auto-peering between two full Kiungo nodes (issue 17): each runs its backend with
ENABLE_AUTO_PEERING; node A peers with B by one ``createOrUpdatePeerByUrl`` against B's
auto-peering port, and money then crosses the new peering both ways. Asked again, the same
peers are updated with fresh tokens, and money still crosses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.network.harness import (
    FullNode,
    create_quote,
    free_port,
    full_node,
    liquidity,
    money,
    pay,
    wait_outgoing_payment,
)

from kiungo.backend.auto_peering import INITIAL_CREDIT

pytestmark = pytest.mark.interop

BY_URL = (
    "mutation($i: CreateOrUpdatePeerByUrlInput!) { createOrUpdatePeerByUrl(input: $i)"
    " { peer { id staticIlpAddress liquidity http { outgoing { endpoint } } } } }"
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


def _peering(port: int) -> dict[str, str]:
    return {"ENABLE_AUTO_PEERING": "true", "AUTO_PEERING_SERVER_PORT": str(port)}


async def _peers(node: FullNode) -> list[dict[str, Any]]:
    data = await node.gql(
        "{ peers(first: 10) { edges { node { id staticIlpAddress liquidity"
        " http { outgoing { endpoint } } } } } }"
    )
    return [edge["node"] for edge in data["peers"]["edges"]]


async def _send(a: FullNode, wallet: str, receiver: str, amount: int) -> None:
    quote = await create_quote(a, wallet, receiver, debit=money(amount, "USD"))
    view = await wait_outgoing_payment(a, await pay(a, wallet, quote["id"]))
    assert view["state"] == "COMPLETED", view
    assert view["sentAmount"] == {"value": str(amount), "assetCode": "USD"}


async def test_one_mutation_peers_two_nodes_and_payments_cross_the_new_peering(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    a_port, b_port = free_port(), free_port()
    async with (
        full_node(
            "alpha", postgres_server_url, redis_server_url, client, extra_env=_peering(a_port)
        ) as a,
        full_node(
            "beta", postgres_server_url, redis_server_url, client, extra_env=_peering(b_port)
        ) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        given = {
            "peerUrl": f"http://127.0.0.1:{b_port}/",
            "assetId": a_usd,
            "maxPacketAmount": "100",
            "liquidityToDeposit": "100000",
        }
        peer = (await a.gql(BY_URL, {"i": given}))["createOrUpdatePeerByUrl"]["peer"]
        assert peer["staticIlpAddress"] == "test.beta"
        assert peer["http"]["outgoing"]["endpoint"] == f"{b.connector_url}/ilp"
        assert peer["liquidity"] == "100000"
        [b_peer] = await _peers(b)
        assert b_peer["staticIlpAddress"] == "test.alpha"
        assert b_peer["http"]["outgoing"]["endpoint"] == f"{a.connector_url}/ilp"
        assert int(b_peer["liquidity"]) == INITIAL_CREDIT

        alice, alice_url = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        await _send(a, alice, bob_url, 1234)  # A to B: B's credit to A
        assert await liquidity(b, "walletAddress", bob) == 1234
        await _send(b, bob, alice_url, 200)  # B to A: the liquidity A deposited
        assert await liquidity(a, "walletAddress", alice) == 200

        # Asked again: both peers updated with fresh tokens, none duplicated, money crosses.
        again = (await a.gql(BY_URL, {"i": given | {"liquidityToDeposit": None}}))[
            "createOrUpdatePeerByUrl"
        ]["peer"]
        assert again["id"] == peer["id"]
        assert [p["id"] for p in await _peers(b)] == [b_peer["id"]]
        assert len(await _peers(a)) == 1
        await _send(a, alice, bob_url, 300)
        assert await liquidity(b, "walletAddress", bob) == 1234 + 300
        for node in (a, b):
            code, report = await node.ledger_check()
            assert code == 0, report
