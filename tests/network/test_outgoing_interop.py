"""Our outgoing payments pay the real JavaScript STREAM receivers: `@interledger/stream-receiver`
(what Rafiki receives with) and an `ilp-protocol-stream` server, each behind a peer of a full
Kiungo node, quoted by a rate probe and paid through the node's packet pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.interop.node import node_script
from tests.network.harness import (
    create_quote,
    full_node,
    money,
    pay,
    rates_service,
    wait_outgoing_payment,
)

pytestmark = pytest.mark.interop


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


@pytest.mark.parametrize("script", ["stream_receiver.js", "stream_server.js"])
async def test_an_outgoing_payment_pays_a_javascript_receiver_behind_a_peer(
    script: str, postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    args = ("--address", "test.erin", "--asset-code", "EUR", "--asset-scale", "2")
    async with (
        rates_service() as rates,
        node_script(script, *args, "--token", "to-erin") as receiver,
        full_node("alpha", postgres_server_url, redis_server_url, client, rates_url=rates) as a,
    ):
        ready = await receiver.read()
        erin = f"http://127.0.0.1:{ready['port']}"
        usd = await a.create_asset("USD")
        eur = await a.create_asset("EUR", liquidity=1_000_000)
        await a.gql(
            "mutation($i: CreatePeerInput!) { createPeer(input: $i) { peer { id } } }",
            {"i": {"assetId": eur, "staticIlpAddress": "test.erin", "maxPacketAmount": "50",
                   "http": {"incoming": {"authTokens": ["from-erin"]},
                            "outgoing": {"authToken": "to-erin",
                                         "endpoint": f"{erin}/ilp"}}}},
        )  # fmt: skip
        alice, _ = await a.create_wallet(usd, "/alice")

        quote = await create_quote(a, alice, f"{erin}/spsp", receive=money(450, "EUR"))
        assert quote["receiveAmount"]["value"] == "450"
        # 450 EUR at 0.9 EUR per USD is 500 USD, 506 with the slippage's 1 % of room; the
        # probe's packets are small (erin takes 50 at most), so their flooring makes its lower
        # bound of the rate a little lower.
        assert quote["debitAmount"]["assetCode"] == "USD", quote
        assert 506 <= int(quote["debitAmount"]["value"]) <= 516, quote
        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)
        assert view["state"] == "COMPLETED", view
        # Paid at the real rate: about 500 sent, the rest of the debit left to withdraw.
        assert 500 <= int(view["sentAmount"]["value"]) <= int(quote["debitAmount"]["value"])
        total = (await receiver.command("total"))["totalReceived"]
        assert total == "450"
        code, report = await a.ledger_check()
        assert code == 0, report
