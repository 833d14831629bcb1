"""A Rafiki integrator's calls, in Rafiki's shapes, against two running Kiungo nodes (real
`kiungo backend` and `kiungo connector` processes): the operator's ``tenant-id`` header,
wallet addresses by name, the incoming payment's ``url`` as the receiver, paging by the last
node's id, ``completeReceiver`` by ``incomingPaymentUrl``; a payment goes through."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.network.harness import (
    FullNode,
    GraphQLError,
    full_node,
    money,
    peer_both_ways,
    wait_incoming_payment,
    wait_outgoing_payment,
)

from kiungo.signatures import signature_header

pytestmark = pytest.mark.interop

OPERATOR = "00000000-0000-0000-0000-000000000000"  # OPERATOR_TENANT_ID's default


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


async def rafiki(node: FullNode, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A request as Rafiki's clients send it: signed, with the operator's tenant-id."""
    body = {"query": query, "variables": variables}
    response = await node.client.post(
        f"{node.admin_url}/graphql",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "tenant-id": OPERATOR,
            "signature": f"{signature_header(node.secret, body)}, n={secrets.token_hex(8)}",
        },
    )
    answer = response.json()
    if answer.get("errors"):
        raise GraphQLError(answer["errors"])
    data: dict[str, Any] = answer["data"]
    return data


async def test_a_rafiki_integrators_calls_pay_across_two_nodes(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD", liquidity=10_000)
        b_usd = await b.create_asset("USD", liquidity=10_000)
        await peer_both_ways(a, a_usd, b, b_usd)
        whoami = await rafiki(a, "query { whoami { id isOperator } }", {})
        assert whoami["whoami"] == {"id": OPERATOR, "isOperator": True}

        create_wallet = (
            "mutation($input: CreateWalletAddressInput!) { createWalletAddress(input: $input) "
            "{ walletAddress { id address } } }"
        )
        alice = await rafiki(
            a,
            create_wallet,
            {"input": {"assetId": a_usd, "address": "Alice", "tenantId": OPERATOR}},
        )
        assert (
            alice["createWalletAddress"]["walletAddress"]["address"] == f"{a.connector_url}/alice"
        )
        alice_id = alice["createWalletAddress"]["walletAddress"]["id"]
        bobs = [
            await rafiki(b, create_wallet, {"input": {"assetId": b_usd, "address": f"/bob{i}"}})
            for i in range(3)
        ]
        bob_id = bobs[0]["createWalletAddress"]["walletAddress"]["id"]

        # Paging as Rafiki's clients do: after the last node's id.
        page = (
            "query($after: String) { walletAddresses(first: 2, after: $after, sortOrder: ASC, "
            f'tenantId: "{OPERATOR}") {{ edges {{ node {{ id }} }} pageInfo {{ hasNextPage }} }} }}'
        )
        first = (await rafiki(b, page, {"after": None}))["walletAddresses"]
        rest = (await rafiki(b, page, {"after": first["edges"][-1]["node"]["id"]}))[
            "walletAddresses"
        ]
        assert len(first["edges"]) == 2 and first["pageInfo"]["hasNextPage"] is True
        assert len(rest["edges"]) == 1 and rest["pageInfo"]["hasNextPage"] is False

        create_payment = (
            "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment(input: $input) "
            "{ payment { id url } } }"
        )
        created = await rafiki(
            b,
            create_payment,
            {
                "input": {
                    "walletAddressId": bob_id,
                    "incomingAmount": money(500, "USD"),
                    "senderWalletAddress": f"{a.connector_url}/alice",
                }
            },
        )
        incoming = created["createIncomingPayment"]["payment"]
        assert incoming["url"] == f"{b.connector_url}/incoming-payments/{incoming['id']}"

        # Across the nodes: alice pays bob's wallet address a fixed amount.
        sent = await _pay(
            a,
            alice_id,
            {"receiver": f"{b.connector_url}/bob0", "debitAmount": money(300, "USD")},
        )
        assert sent["state"] == "COMPLETED", sent
        # On beta: bob1 pays bob's incoming payment by its url (Rafiki's field).
        bob1 = bobs[1]["createWalletAddress"]["walletAddress"]["id"]
        local = await _pay(b, bob1, {"receiver": incoming["url"]})
        assert local["state"] == "COMPLETED", local
        done = await wait_incoming_payment(b, incoming["id"])
        assert done["receivedAmount"]["value"] == "500"

        listed = await rafiki(
            a,
            f'query {{ walletAddress(id: "{alice_id}") {{ outgoingPayments {{ edges {{ node '
            "{ id state } } } quotes { edges { node { id } } } } }",
            {},
        )
        edges = listed["walletAddress"]["outgoingPayments"]["edges"]
        assert edges == [{"node": {"id": sent["id"], "state": "COMPLETED"}}]
        assert len(listed["walletAddress"]["quotes"]["edges"]) == 1

        # completeReceiver by its URL, on an open-ended incoming payment.
        open_ended = await rafiki(b, create_payment, {"input": {"walletAddressId": bob_id}})
        url = open_ended["createIncomingPayment"]["payment"]["url"]
        completed = await rafiki(
            b,
            "mutation($input: CompleteReceiverInput!) { completeReceiver(input: $input) "
            "{ receiver { completed } } }",
            {"input": {"incomingPaymentUrl": url}},
        )
        assert completed["completeReceiver"]["receiver"]["completed"] is True


async def _pay(node: FullNode, wallet_id: str, quote_input: dict[str, Any]) -> dict[str, Any]:
    """Quote, create and fund an outgoing payment as a Rafiki integrator does; it, once ended."""
    quote = await rafiki(
        node,
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id } } }",
        {"input": {"walletAddressId": wallet_id, **quote_input}},
    )
    paid = await rafiki(
        node,
        "mutation($input: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $input)"
        " { payment { id } } }",
        {"input": {"walletAddressId": wallet_id, "quoteId": quote["createQuote"]["quote"]["id"]}},
    )
    payment_id = paid["createOutgoingPayment"]["payment"]["id"]
    await rafiki(
        node,
        "mutation($input: DepositOutgoingPaymentLiquidityInput!) "
        "{ depositOutgoingPaymentLiquidity(input: $input) { success } }",
        {"input": {"outgoingPaymentId": payment_id, "idempotencyKey": secrets.token_hex(8)}},
    )
    return await wait_outgoing_payment(node, payment_id)
