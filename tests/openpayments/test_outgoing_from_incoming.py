"""``POST /outgoing-payments`` from an incoming payment and a debit amount (Open Payments' second
create form, no ``quoteId``) on a whole node: the node quotes that debit amount itself and makes
the payment of that quote (one row, the lifecycle of any other: FUNDING, funded by the
operator, COMPLETED into the incoming payment); the grant's limits hold as for quote-based
payments, atomically, and a refused payment leaves no quote behind; bad requests change
nothing. And the admin API taking this node's incoming payment by its Open Payments URL
(``createQuote``, ``createOutgoingPaymentFromIncomingPayment``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.interop.node import node_script
from tests.openpayments.resource_harness import (  # noqa: F401 (fixture op_node)
    Client,
    OpNode,
    incoming_access,
    op_node_fixture,
)
from tests.openpayments.test_outgoing_payments_rs import (
    DEPOSIT,
    QUOTE_ACCESS,
    incoming,
    outgoing_access,
    sending_rows,
    usd,
    wait_state,
)

from kiungo.openpayments.jwk import private_key_to_pem


async def pay_incoming(client: Client, token: str, incoming_payment: Any, **body: Any) -> Any:
    return await client.send(
        "POST",
        f"{client.node.url}/outgoing-payments",
        {"walletAddress": client.url, "incomingPayment": incoming_payment, **body},
        token=token,
    )


async def fund(node: OpNode, payment: str) -> str:
    """Fund the payment (its Open Payments URL or admin id) through the admin API; its id."""
    payment_id = payment.rsplit("/", 1)[-1]
    funded = await node.admin.data(
        DEPOSIT, {"input": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}}
    )
    assert funded["depositOutgoingPaymentLiquidity"]["success"] is True
    return payment_id


async def received(node: OpNode, incoming_url: str) -> tuple[str, int]:
    """The incoming payment's state and received amount, as the admin API shows them."""
    data = await node.admin.data(
        "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value } } }",
        {"id": incoming_url.rsplit("/", 1)[1]},
    )
    payment = data["incomingPayment"]
    return payment["state"], int(payment["receivedAmount"]["value"])


async def unpaid_quotes(node: OpNode) -> int:
    count: int = await node.pool.fetchval(
        "SELECT count(*) FROM quotes q"
        " WHERE NOT EXISTS (SELECT 1 FROM outgoing_payments p WHERE p.quote_id = q.id)"
    )
    return count


async def test_a_client_pays_an_incoming_payment_by_a_debit_amount_without_a_quote(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    receiver = await incoming(op_node, alice, 500)
    token = (
        await alice.interactive_grant(
            outgoing_access(
                alice.url, {"debitAmount": usd(1000), "interval": "R/2026-01-01T00:00:00Z/P1M"}
            )
        )
    )["value"]
    quotes_before = await op_node.pool.fetchval("SELECT count(*) FROM quotes")
    created = await pay_incoming(
        alice, token, receiver, debitAmount=usd(300), metadata={"ref": "invoice-9"}
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["receiver"] == receiver and payment["walletAddress"] == alice.url
    assert payment["debitAmount"] == usd(300) and payment["receiveAmount"] == usd(300)
    assert payment["sentAmount"] == usd(0) and payment["failed"] is False
    assert payment["metadata"] == {"ref": "invoice-9"}
    assert payment["grantSpentDebitAmount"] == usd(300)
    assert payment["grantSpentReceiveAmount"] == usd(300)
    assert payment["quoteId"].startswith(f"{op_node.url}/quotes/")
    # One quote, one payment: the admin API's row, FUNDING, with its webhook.
    assert await op_node.pool.fetchval("SELECT count(*) FROM quotes") == quotes_before + 1
    payment_id = payment["id"].rsplit("/", 1)[1]
    row = await op_node.pool.fetchrow(
        "SELECT p.state, p.client, p.grant_id, q.client AS quote_client, q.id AS quote_id"
        " FROM outgoing_payments p JOIN quotes q ON q.id = p.quote_id WHERE p.id = $1",
        uuid.UUID(payment_id),
    )
    assert (row["state"], row["client"], row["quote_client"]) == ("FUNDING", alice.url, alice.url)
    assert row["grant_id"] is not None
    assert payment["quoteId"] == f"{op_node.url}/quotes/{row['quote_id']}"
    event = await op_node.events(payment_id, "outgoing_payment.created")
    assert event["data"]["debitAmount"] == usd(300)
    # The quote the node made is the client's own to read.
    quote_token = (await alice.grant(QUOTE_ACCESS))["value"]
    quote = await alice.send("GET", payment["quoteId"], token=quote_token)
    assert quote.status_code == 200, quote.text
    assert quote.json()["debitAmount"] == usd(300) and quote.json()["receiver"] == receiver

    await fund(op_node, payment["id"])
    await wait_state(op_node, payment_id, "COMPLETED")
    assert await received(op_node, receiver) == ("PROCESSING", 300)
    got = await alice.send("GET", payment["id"], token=token)
    assert got.status_code == 200, got.text
    assert got.json()["sentAmount"] == usd(300)

    # The rest, by the incoming payment's wallet-address form: it completes.
    wallet_form = await op_node.pool.fetchval(
        "SELECT w.url || '/incoming-payments/' || p.id FROM incoming_payments p"
        " JOIN wallet_addresses w ON w.id = p.wallet_address_id WHERE p.id = $1",
        uuid.UUID(receiver.rsplit("/", 1)[1]),
    )
    rest = await pay_incoming(alice, token, wallet_form, debitAmount=usd(200))
    assert rest.status_code == 201, rest.text
    assert rest.json()["receiver"] == receiver
    assert rest.json()["grantSpentDebitAmount"] == usd(500)
    await wait_state(op_node, await fund(op_node, rest.json()["id"]), "COMPLETED")
    assert await received(op_node, receiver) == ("COMPLETED", 500)
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=token)
    assert spent.json() == {"spentDebitAmount": usd(500), "spentReceiveAmount": usd(500)}


async def test_limits_hold_and_a_refused_payment_leaves_no_quote(op_node: OpNode) -> None:
    alice = await op_node.client()
    receivers = [await incoming(op_node, alice, 100) for _ in range(5)]
    token = (await alice.interactive_grant(outgoing_access(alice.url, {"debitAmount": usd(250)})))[
        "value"
    ]
    unpaid = await unpaid_quotes(op_node)
    answers = await asyncio.gather(
        *(pay_incoming(alice, token, r, debitAmount=usd(100)) for r in receivers)
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 403, 403, 403], [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 403} == {
        "insufficient_grant"
    }
    assert await unpaid_quotes(op_node) == unpaid
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=token)
    assert spent.json()["spentDebitAmount"] == usd(200)
    # What is left (50) still fits one smaller payment, and then nothing more.
    left = [r for r, a in zip(receivers, answers, strict=True) if a.status_code == 403]
    assert (await pay_incoming(alice, token, left[0], debitAmount=usd(50))).status_code == 201
    before = await sending_rows(op_node)
    refused = await pay_incoming(alice, token, left[1], debitAmount=usd(1))
    assert refused.status_code == 403, refused.text
    assert await sending_rows(op_node) == before
    assert await unpaid_quotes(op_node) == unpaid


async def test_bad_payments_from_incoming_payments_are_refused_and_change_nothing(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    receiver = await incoming(op_node, alice, 100)
    other = await incoming(op_node, alice, 100)
    done = await incoming(op_node, alice, 100)
    complete_token = (await alice.grant(incoming_access(["complete"])))["value"]
    completing = await alice.send("POST", f"{done}/complete", {}, token=complete_token)
    assert completing.status_code == 200, completing.text
    token = (await alice.interactive_grant(outgoing_access(alice.url)))["value"]
    only_other = (await alice.interactive_grant(outgoing_access(alice.url, {"receiver": other})))[
        "value"
    ]
    quote_token = (await alice.grant(QUOTE_ACCESS))["value"]
    url = op_node.url

    def pay(
        incoming_payment: Any = receiver, *, with_token: str | None = token, **body: Any
    ) -> Any:
        fields = {"debitAmount": usd(10), **body}
        return alice.send(
            "POST",
            f"{url}/outgoing-payments",
            {"walletAddress": alice.url, "incomingPayment": incoming_payment, **fields},
            token=with_token,
        )

    bad, receiver_code, grant_code = "invalid_request", "invalid_receiver", "insufficient_grant"
    elsewhere = f"https://elsewhere.test/incoming-payments/{uuid.uuid4()}"
    cases: list[tuple[str, Any, int, str]] = [
        ("no token", pay(with_token=None), 401, "unauthorized"),
        ("a quote grant", pay(with_token=quote_token), 403, grant_code),
        ("another receiver than the grant's", pay(with_token=only_other), 403, grant_code),
        ("no debitAmount", pay(debitAmount=None), 400, bad),
        ("debitAmount in EUR", pay(debitAmount={**usd(10), "assetCode": "EUR"}), 400, bad),
        ("debitAmount zero", pay(debitAmount=usd(0)), 400, bad),
        ("more than it expects", pay(debitAmount=usd(500)), 400, bad),
        ("with a quoteId too", pay(quoteId=f"{url}/quotes/{uuid.uuid4()}"), 400, bad),
        ("unknown field", pay(coffee=1), 400, bad),
        ("bad metadata", pay(metadata="x"), 400, bad),
        ("a wallet address", pay(alice.url), 400, receiver_code),
        ("a number", pay(7), 400, receiver_code),
        ("unknown here", pay(f"{url}/incoming-payments/{uuid.uuid4()}"), 400, receiver_code),
        ("completed", pay(done), 400, receiver_code),
        ("another node's", pay(elsewhere), 400, receiver_code),
    ]
    before = await sending_rows(op_node)
    quotes_before = await op_node.pool.fetchval("SELECT count(*) FROM quotes")
    for name, call, status, code in cases:
        response = await call
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, (name, response.text)
    assert await sending_rows(op_node) == before
    assert await op_node.pool.fetchval("SELECT count(*) FROM quotes") == quotes_before


QUOTE = """
mutation($input: CreateQuoteInput!) {
  createQuote(input: $input) {
    quote { id receiver debitAmount { value } receiveAmount { value } }
  }
}"""
FROM_INCOMING = """
mutation($input: CreateOutgoingPaymentFromIncomingPaymentInput!) {
  createOutgoingPaymentFromIncomingPayment(input: $input) {
    payment { id state receiver debitAmount { value } receiveAmount { value } }
  }
}"""


async def test_the_admin_api_takes_an_incoming_payment_by_its_open_payments_url(
    op_node: OpNode,
) -> None:
    """``createQuote`` and ``createOutgoingPaymentFromIncomingPayment`` take this node's
    incoming payment by ``{OPEN_PAYMENTS_URL}/incoming-payments/{id}`` (its ``url``), stored
    in the wallet-address form the resource server's quotes use, and the payment completes.
    Quote.receiver and OutgoingPayment.receiver show it by that URL, as Rafiki's do (its
    quotes keep the incoming payment URL they are given), whichever form was given."""
    alice_id, _ = await op_node.wallet()
    sam = await op_node.client()
    receiver = await incoming(op_node, sam, 400)
    receiver_id = uuid.UUID(receiver.rsplit("/", 1)[1])
    wallet_form = await op_node.pool.fetchval(
        "SELECT w.url || '/incoming-payments/' || p.id FROM incoming_payments p"
        " JOIN wallet_addresses w ON w.id = p.wallet_address_id WHERE p.id = $1",
        receiver_id,
    )
    assert receiver == f"{op_node.url}/incoming-payments/{receiver_id}" != wallet_form
    quoted = await op_node.admin.data(
        QUOTE,
        {"input": {"walletAddressId": alice_id, "receiver": receiver, "receiveAmount": usd(150)}},
    )
    quote = quoted["createQuote"]["quote"]
    assert quote["receiver"] == receiver and quote["receiveAmount"] == {"value": "150"}
    remaining = await op_node.admin.data(
        QUOTE, {"input": {"walletAddressId": alice_id, "receiver": receiver}}
    )
    assert remaining["createQuote"]["quote"]["receiveAmount"] == {"value": "400"}
    # Given in the wallet-address form, shown (and read back) by the Open Payments URL too.
    by_wallet_form = await op_node.admin.data(
        QUOTE, {"input": {"walletAddressId": alice_id, "receiver": wallet_form}}
    )
    again = await op_node.admin.data(
        "query($id: String!) { quote(id: $id) { receiver } }",
        {"id": by_wallet_form["createQuote"]["quote"]["id"]},
    )
    assert by_wallet_form["createQuote"]["quote"]["receiver"] == receiver
    assert again["quote"]["receiver"] == receiver

    made = await op_node.admin.data(
        FROM_INCOMING,
        {
            "input": {
                "walletAddressId": alice_id,
                "incomingPayment": receiver,
                "debitAmount": usd(400),
            }
        },
    )
    payment = made["createOutgoingPaymentFromIncomingPayment"]["payment"]
    assert payment["state"] == "FUNDING" and payment["receiver"] == receiver
    assert payment["debitAmount"] == payment["receiveAmount"] == {"value": "400"}
    await wait_state(op_node, await fund(op_node, payment["id"]), "COMPLETED")
    assert await received(op_node, receiver) == ("COMPLETED", 400)
    # Listed by the receiver in either form.
    listing = (
        "query($filter: OutgoingPaymentFilter) { outgoingPayments(filter: $filter, first: 5)"
        " { edges { node { id } } } }"
    )
    for given in (receiver, wallet_form):
        for test, expected in (("in", [payment["id"]]), ("notIn", [])):
            found = await op_node.admin.data(
                listing,
                {"filter": {"receiver": {test: [given]}, "walletAddressId": {"in": [alice_id]}}},
            )
            edges = found["outgoingPayments"]["edges"]
            assert [e["node"]["id"] for e in edges] == expected, (given, test)
    # Its events show the receiver as the payment does (and so do their webhooks).
    events = await op_node.admin.data(
        "query($filter: WebhookEventFilter) { webhookEvents(filter: $filter, first: 20)"
        " { edges { node { type data } } } }",
        {"filter": {"type": {"in": ["outgoing_payment.created", "outgoing_payment.completed"]}}},
    )
    shown = [
        e["node"]["data"]["receiver"]
        for e in events["webhookEvents"]["edges"]
        if e["node"]["data"]["id"] == payment["id"]
    ]
    assert shown == [receiver, receiver]
    # Paid in full: neither form quotes it any more; an unknown one is bad input.
    for given in (receiver, wallet_form, f"{op_node.url}/incoming-payments/{uuid.uuid4()}"):
        refused = await op_node.admin.error(
            FROM_INCOMING,
            {
                "input": {
                    "walletAddressId": alice_id,
                    "incomingPayment": given,
                    "debitAmount": usd(1),
                }
            },
        )
        assert refused.code == "BAD_USER_INPUT", (given, refused)


@pytest.mark.interop
async def test_the_open_payments_client_pays_an_incoming_payment_by_a_debit_amount(
    op_node: OpNode, tmp_path: Path
) -> None:
    alice = await op_node.client()
    receiver = await incoming(op_node, alice, 250)
    pem = tmp_path / "alice.pem"
    pem.write_bytes(private_key_to_pem(alice.key))
    token = (await alice.interactive_grant(outgoing_access(alice.url, {"debitAmount": usd(250)})))[
        "value"
    ]
    async with node_script("open_payments_grants.js", alice.url, str(pem), alice.kid) as js:
        answer = await js.command(
            {
                "op": "createOutgoing",
                "url": op_node.url,
                "accessToken": token,
                "body": {
                    "walletAddress": alice.url,
                    "incomingPayment": receiver,
                    "debitAmount": usd(250),
                },
            }
        )
        assert answer["ok"], answer
        created = answer["body"]
        assert created["receiver"] == receiver and created["grantSpentDebitAmount"] == usd(250)
        await wait_state(op_node, await fund(op_node, created["id"]), "COMPLETED")
        got = await js.command({"op": "getOutgoing", "url": created["id"], "accessToken": token})
        assert got["ok"], got
        assert got["body"]["sentAmount"] == usd(250)
    assert await received(op_node, receiver) == ("COMPLETED", 250)
