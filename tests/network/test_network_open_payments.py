"""A Kiungo node pays another's incoming payment over Open Payments from its admin API alone, as
Rafiki does: full nodes (connector, backend and authorization server processes, each node with
its own database and Redis key prefix), A the client of B's authorization and resource servers
with its own identity (its WALLET_ADDRESS_URL and key)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.network.harness import (
    FullNode,
    GraphQLError,
    create_quote,
    full_node,
    incoming_payment,
    money,
    pay,
    peer_both_ways,
    wait_outgoing_payment,
)

pytestmark = pytest.mark.interop

MAX_PACKET = 100
_AMOUNT = "{ value assetCode assetScale }"
_RECEIVER_FIELDS = (
    f"id walletAddressUrl completed incomingAmount {_AMOUNT} receivedAmount {_AMOUNT}"
    " expiresAt metadata createdAt"
)
CREATE = (
    "mutation($i: CreateReceiverInput!) { createReceiver(input: $i) {"
    f" receiver {{ {_RECEIVER_FIELDS} }} }} }}"
)
READ = f"query($id: String!) {{ receiver(id: $id) {{ {_RECEIVER_FIELDS} }} }}"
COMPLETE = (
    "mutation($i: CompleteReceiverInput!) { completeReceiver(input: $i) {"
    f" receiver {{ {_RECEIVER_FIELDS} }} }} }}"
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


async def _ledgers_check(*nodes: FullNode) -> None:
    checks = await asyncio.gather(*(node.ledger_check() for node in nodes))
    for node, (code, report) in zip(nodes, checks, strict=True):
        assert code == 0, f"{node.name}: {report}"


async def test_a_pays_an_incoming_payment_it_created_on_b_over_open_payments(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client, auth=True) as a,
        full_node("beta", postgres_server_url, redis_server_url, client, auth=True) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        _, bob_url = await b.create_wallet(b_usd, "/bob")

        # A's own client key, where B's authorization server reads it.
        keys = (await client.get(f"{a.connector_url}/.well-known/pay/jwks.json")).json()
        assert [key["kty"] for key in keys["keys"]] == ["OKP"]

        created = await a.gql(
            CREATE,
            {"i": {"walletAddressUrl": bob_url, "incomingAmount": money(500, "USD"),
                   "metadata": {"invoice": "A-1"}}},
        )  # fmt: skip
        receiver = created["createReceiver"]["receiver"]
        url = receiver["id"]
        # B's Open Payments id: on B's resource server, for bob.
        assert url.startswith(f"{b.connector_url}/incoming-payments/")
        assert receiver["walletAddressUrl"] == bob_url
        assert receiver["incomingAmount"] == money(500, "USD")
        assert receiver["receivedAmount"] == money(0, "USD")
        assert receiver["completed"] is False and receiver["metadata"] == {"invoice": "A-1"}
        b_payment = url.rsplit("/", 1)[1]
        # The same row on B, made by A's client identity.
        on_b = await incoming_payment(b, b_payment)
        assert on_b["state"] == "PENDING" and on_b["incomingAmount"] == {"value": "500"}
        client_of = await b.gql(
            "query($id: String!) { incomingPayment(id: $id) { client } }", {"id": b_payment}
        )
        assert client_of["incomingPayment"]["client"] == f"{a.connector_url}/.well-known/pay"

        # A quotes it with no amount: what it still expects, read over Open Payments.
        quote = await create_quote(a, alice, url)
        assert quote["receiveAmount"] == money(500, "USD")
        paid = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))
        assert paid["state"] == "COMPLETED", paid
        assert paid["sentAmount"] == {"value": "500", "assetCode": "USD"}

        done = await incoming_payment(b, b_payment)
        assert done["state"] == "COMPLETED", done
        assert done["receivedAmount"] == {"value": "500", "assetCode": "USD"}
        read = (await a.gql(READ, {"id": url}))["receiver"]
        assert read["completed"] is True and read["receivedAmount"] == money(500, "USD")
        with pytest.raises(GraphQLError) as refused:
            await create_quote(a, alice, url)
        assert refused.value.errors[0]["extensions"]["quoteError"] == "InvalidReceiver"

        # completeReceiver (Rafiki's incomingPaymentUrl) ends another one on B early.
        second = (await a.gql(CREATE, {"i": {"walletAddressUrl": bob_url}}))["createReceiver"]
        early = await a.gql(COMPLETE, {"i": {"incomingPaymentUrl": second["receiver"]["id"]}})
        assert early["completeReceiver"]["receiver"]["completed"] is True
        second_id = second["receiver"]["id"].rsplit("/", 1)[1]
        assert (await incoming_payment(b, second_id))["state"] == "COMPLETED"

        missing = f"{b.connector_url}/incoming-payments/{uuid.uuid4()}"
        with pytest.raises(GraphQLError) as unknown:
            await a.gql(READ, {"id": missing})
        assert unknown.value.code == "NOT_FOUND", unknown.value.errors
        await _ledgers_check(a, b)
