"""Two full Kiungo nodes (separate processes, own databases and key prefixes) peered over
loopback and set up only through their admin APIs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.interop.node import run_script
from tests.network.harness import FullNode, full_node, rates_service

pytestmark = pytest.mark.interop


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


async def test_a_payment_through_node_a_into_node_b_in_another_currency(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """`@interledger/pay`, a peer of node A, pays an incoming payment on node B: A forwards the
    USD packets to B, B converts them to EUR and receives them. Both ledgers agree."""
    async with (
        rates_service() as rates,
        full_node("alpha", postgres_server_url, redis_server_url, client, rates_url=rates) as a,
        full_node("beta", postgres_server_url, redis_server_url, client, rates_url=rates) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        b_eur = await b.create_asset("EUR", liquidity=1_000_000)
        # The sender, a peer of A holding 10 USD of credit there.
        await a.gql(
            "mutation($i: CreatePeerInput!) { createPeer(input: $i) { peer { id } } }",
            {"i": {"assetId": a_usd, "staticIlpAddress": "test.sender",
                   "initialLiquidity": "1000", "maxPacketAmount": "100",
                   "http": {"incoming": {"authTokens": ["sender-token"]},
                            "outgoing": {"authToken": "unused",
                                         "endpoint": "http://127.0.0.1:9/ilp"}}}},
        )  # fmt: skip
        a_to_b = await a.create_peer(
            a_usd, b, incoming_token="b-to-a", outgoing_token="a-to-b", max_packet_amount=100
        )
        b_to_a = await b.create_peer(b_usd, a, incoming_token="a-to-b", outgoing_token="b-to-a")
        bob, bob_url = await b.create_wallet(b_eur, "/bob")
        payment = await b.create_incoming_payment(bob, 450, "EUR")

        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{a.connector_url}/ilp",
            "--token", "sender-token",
            "--spsp-url", f"{bob_url}/incoming-payments/{payment}",
            "--amount", "500",
            "--asset-code", "USD",
            "--asset-scale", "2",
            "--prices", json.dumps({"USD": 1, "EUR": 1 / 0.9}),
        )  # fmt: skip
        assert status == 0, json.dumps(result)
        assert result["amountDelivered"] == "450"

        view = await _wait_completed(b, payment)
        assert view["receivedAmount"]["value"] == "450"
        # 450 EUR cents at 0.9 EUR per USD took 500 USD cents through both nodes.
        a_peer = await a.gql("query($id: String!) { peer(id: $id) { liquidity } }", {"id": a_to_b})
        b_peer = await b.gql("query($id: String!) { peer(id: $id) { liquidity } }", {"id": b_to_a})
        sent = int(a_peer["peer"]["liquidity"]) - 1_000_000
        assert sent == 1_000_000 - int(b_peer["peer"]["liquidity"])
        assert 500 <= sent <= 501  # the last packet may round up a cent
        for node in (a, b):
            code, report = await node.ledger_check()
            assert code == 0, report


async def _wait_completed(node: FullNode, payment: str) -> dict[str, Any]:
    for _ in range(100):
        data = await node.gql(
            "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value } } }",
            {"id": payment},
        )
        if data["incomingPayment"]["state"] == "COMPLETED":
            view: dict[str, Any] = data["incomingPayment"]
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"incoming payment not completed: {data}")
