"""The resource server's sending side over HTTP on a whole node: a client with an interactive
outgoing-payment grant (consent through the interaction API) quotes a local incoming payment,
creates the outgoing payment (the admin API's row and lifecycle: FUNDING with its webhook),
the operator funds it through the admin API, and it completes into the incoming payment; grant
limits (refused beyond the interval's remainder, allowed again in the next interval, never
overspent by concurrent payments); reads, lists and spent amounts; refusals that change
nothing; the real Open Payments client doing the same."""

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

from kiungo.openpayments.jwk import private_key_to_pem

DEPOSIT = """
mutation($input: DepositOutgoingPaymentLiquidityInput!) {
  depositOutgoingPaymentLiquidity(input: $input) { success }
}"""
QUOTE_ACCESS = [{"type": "quote", "actions": ["create", "read"]}]


def usd(value: int) -> dict[str, Any]:
    return {"value": str(value), "assetCode": "USD", "assetScale": 2}


def outgoing_access(wallet: str, limits: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    item: dict[str, Any] = {
        "type": "outgoing-payment",
        "actions": ["create", "read", "list"],
        "identifier": wallet,
    }
    if limits is not None:
        item["limits"] = limits
    return [item]


async def incoming(node: OpNode, payer: Client, amount: int) -> str:
    """An incoming payment of ``amount`` on a new wallet address; its Open Payments id."""
    _, receiver = await node.wallet()
    token = (await payer.grant(incoming_access(["create"], receiver)))["value"]
    created = await payer.create(token, {"walletAddress": receiver, "incomingAmount": usd(amount)})
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    return payment_id


async def quote(client: Client, token: str, receiver: str, **amounts: Any) -> Any:
    return await client.send(
        "POST",
        f"{client.node.url}/quotes",
        {"walletAddress": client.url, "receiver": receiver, "method": "ilp", **amounts},
        token=token,
    )


async def pay(client: Client, token: str, quote_id: str, **extra: Any) -> Any:
    return await client.send(
        "POST",
        f"{client.node.url}/outgoing-payments",
        {"walletAddress": client.url, "quoteId": quote_id, **extra},
        token=token,
    )


async def funded_client(node: OpNode) -> Client:
    return await node.client()


async def wait_state(node: OpNode, payment_id: str, state: str, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.05)):
        row = await node.pool.fetchval(
            "SELECT state FROM outgoing_payments WHERE id = $1", uuid.UUID(payment_id)
        )
        if row == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} is {row}, not {state}")


async def test_a_client_quotes_pays_and_the_operator_funds_to_completion(op_node: OpNode) -> None:
    alice = await op_node.client()
    receiver = await incoming(op_node, alice, 300)
    quote_token = (await alice.grant(QUOTE_ACCESS))["value"]
    made = await quote(alice, quote_token, receiver)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["receiver"] == receiver and body["method"] == "ilp"
    assert body["receiveAmount"] == usd(300) and body["walletAddress"] == alice.url
    debit = int(body["debitAmount"]["value"])
    read = await alice.send("GET", body["id"], token=quote_token)
    assert read.status_code == 200 and read.json() == body

    out = await alice.interactive_grant(
        outgoing_access(
            alice.url, {"debitAmount": usd(debit), "interval": "R/2026-01-01T00:00:00Z/P1M"}
        )
    )
    created = await pay(alice, out["value"], body["id"], metadata={"ref": "order-7"})
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["quoteId"] == body["id"] and payment["receiver"] == receiver
    assert payment["debitAmount"] == body["debitAmount"] and payment["sentAmount"] == usd(0)
    assert payment["grantSpentDebitAmount"] == usd(debit)
    assert payment["grantSpentReceiveAmount"] == usd(300)
    assert payment["metadata"] == {"ref": "order-7"} and payment["failed"] is False
    payment_id = payment["id"].rsplit("/", 1)[1]
    row = await op_node.pool.fetchrow(
        "SELECT state, client, grant_id FROM outgoing_payments WHERE id = $1", uuid.UUID(payment_id)
    )
    assert row["state"] == "FUNDING" and row["client"] == alice.url
    created_event = await op_node.events(payment_id, "outgoing_payment.created")
    assert created_event["data"]["debitAmount"]["value"] == str(debit)

    funded = await op_node.admin.data(
        DEPOSIT, {"input": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}}
    )
    assert funded["depositOutgoingPaymentLiquidity"]["success"] is True
    await wait_state(op_node, payment_id, "COMPLETED")
    incoming_id = receiver.rsplit("/", 1)[1]
    received = await op_node.pool.fetchval(
        "SELECT received_amount FROM incoming_payments WHERE id = $1", uuid.UUID(incoming_id)
    )
    assert int(received) == 300
    sent = await op_node.pool.fetchval(
        "SELECT sent_amount FROM outgoing_payments WHERE id = $1", uuid.UUID(payment_id)
    )
    got = await alice.send("GET", payment["id"], token=out["value"])
    assert got.status_code == 200, got.text
    assert got.json() == {
        **{k: v for k, v in payment.items() if not k.startswith("grantSpent")},
        "sentAmount": usd(int(sent)),
    }
    assert 300 <= int(sent) <= debit
    listed = await alice.send(
        "GET", f"{op_node.url}/outgoing-payments?wallet-address={alice.url}", token=out["value"]
    )
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["result"]] == [payment["id"]]
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=out["value"])
    assert spent.status_code == 200, spent.text
    assert spent.json() == {"spentDebitAmount": usd(debit), "spentReceiveAmount": usd(300)}


async def quotes(node: OpNode, client: Client, count: int, amount: int) -> list[dict[str, Any]]:
    """``count`` quotes of ``amount`` each, to as many local incoming payments."""
    token = (await client.grant(QUOTE_ACCESS))["value"]
    made = []
    for _ in range(count):
        response = await quote(client, token, await incoming(node, client, amount))
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def sending_rows(node: OpNode) -> list[tuple[Any, ...]]:
    payments = await node.pool.fetch("SELECT id, state FROM outgoing_payments ORDER BY id")
    events = await node.pool.fetch("SELECT id FROM webhook_events ORDER BY id")
    return [tuple(r) for r in payments] + [tuple(r) for r in events]


async def test_a_payment_beyond_the_intervals_remainder_is_refused_until_the_next_interval(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    first, second = await quotes(op_node, alice, 2, 200)
    debit = int(first["debitAmount"]["value"])
    limits = {"debitAmount": usd(debit + debit // 2), "interval": "R/2026-01-01T00:00:00Z/P1D"}
    token = (await alice.interactive_grant(outgoing_access(alice.url, limits)))["value"]
    assert (await pay(alice, token, first["id"])).status_code == 201
    before = await sending_rows(op_node)
    refused = await pay(alice, token, second["id"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "insufficient_grant"
    assert await sending_rows(op_node) == before
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=token)
    assert spent.json()["spentDebitAmount"] == usd(debit)
    # A day later (the first payment made in the previous interval), the limit is whole again.
    await op_node.pool.execute(
        "UPDATE outgoing_payments SET created_at = created_at - interval '1 day'"
        " WHERE quote_id = $1",
        uuid.UUID(first["id"].rsplit("/", 1)[1]),
    )
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=token)
    assert spent.json() == {"spentDebitAmount": None, "spentReceiveAmount": None}
    allowed = await pay(alice, token, second["id"])
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["grantSpentDebitAmount"] == usd(debit)


async def test_concurrent_payments_never_overspend_a_limit(op_node: OpNode) -> None:
    alice = await op_node.client()
    made = await quotes(op_node, alice, 5, 100)
    debit = int(made[0]["debitAmount"]["value"])
    limits = {"debitAmount": usd(2 * debit)}
    token = (await alice.interactive_grant(outgoing_access(alice.url, limits)))["value"]
    answers = await asyncio.gather(*(pay(alice, token, q["id"]) for q in made))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 403, 403, 403], [a.text for a in answers]
    spent = await alice.send("GET", f"{op_node.url}/outgoing-payment-grant", token=token)
    assert spent.json()["spentDebitAmount"] == usd(2 * debit)


async def test_limits_on_the_receive_amount_and_the_receiver(op_node: OpNode) -> None:
    alice = await op_node.client()
    first, second = await quotes(op_node, alice, 2, 100)
    token = (
        await alice.interactive_grant(
            outgoing_access(alice.url, {"receiveAmount": usd(150), "receiver": first["receiver"]})
        )
    )["value"]
    other = await pay(alice, token, second["id"])
    assert other.status_code == 403, other.text
    assert (await pay(alice, token, first["id"])).status_code == 201


async def test_bad_and_unauthorized_sending_requests_are_refused_and_change_nothing(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    mallory = await op_node.client()
    (own,) = await quotes(op_node, alice, 1, 100)
    (theirs,) = await quotes(op_node, mallory, 1, 100)
    receiver = await incoming(op_node, alice, 100)
    quote_token = (await alice.grant(QUOTE_ACCESS))["value"]
    incoming_token = (await alice.grant(incoming_access(["create"])))["value"]
    out = (await alice.interactive_grant(outgoing_access(alice.url)))["value"]
    url = op_node.url

    def q(**body: Any) -> Any:
        return alice.send("POST", f"{url}/quotes", body, token=quote_token)

    base = {"walletAddress": alice.url, "receiver": receiver, "method": "ilp"}
    cases: list[tuple[str, Any, int]] = [
        ("quote without a token", alice.send("POST", f"{url}/quotes", base), 401),
        (
            "quote with an incoming grant",
            alice.send("POST", f"{url}/quotes", base, token=incoming_token),
            403,
        ),
        ("method btc", q(**{**base, "method": "btc"}), 400),
        ("no method", q(walletAddress=alice.url, receiver=receiver), 400),
        ("unknown field", q(**base, coffee=1), 400),
        ("no receiver", q(walletAddress=alice.url, method="ilp"), 400),
        ("receiver a number", q(**{**base, "receiver": 7}), 400),
        (
            "remote receiver",
            q(
                **{
                    **base,
                    "receiver": "https://elsewhere.test/incoming-payments/" + str(uuid.uuid4()),
                }
            ),
            400,
        ),
        (
            "unknown local payment",
            q(**{**base, "receiver": f"{url}/incoming-payments/{uuid.uuid4()}"}),
            400,
        ),
        ("both amounts", q(**base, debitAmount=usd(1), receiveAmount=usd(1)), 400),
        ("negative amount", q(**base, debitAmount={**usd(1), "value": "-1"}), 400),
        ("huge amount", q(**base, debitAmount={**usd(1), "value": "9" * 30}), 400),
        ("wrong asset", q(**base, debitAmount={**usd(1), "assetCode": "EUR"}), 400),
        ("float scale", q(**base, debitAmount={**usd(1), "assetScale": 2.0}), 400),
        ("unknown wallet", q(**{**base, "walletAddress": f"{url}/nobody"}), 404),
        ("not json", alice.send("POST", f"{url}/quotes", raw=b"{nope", token=quote_token), 400),
        (
            "quote unknown",
            alice.send("GET", f"{url}/quotes/{uuid.uuid4()}", token=quote_token),
            404,
        ),
        ("quote not a uuid", alice.send("GET", f"{url}/quotes/nope", token=quote_token), 404),
        ("someone else's quote", alice.send("GET", theirs["id"], token=quote_token), 404),
        ("pay with a quote grant", pay(alice, quote_token, own["id"]), 403),
        ("pay someone else's quote", pay(alice, out, theirs["id"]), 400),
        ("pay an unknown quote", pay(alice, out, f"{url}/quotes/{uuid.uuid4()}"), 400),
        (
            "pay a foreign quote URL",
            pay(alice, out, f"https://elsewhere.test/quotes/{uuid.uuid4()}"),
            400,
        ),
        (
            "pay from another wallet",
            mallory.send(
                "POST",
                f"{url}/outgoing-payments",
                {"walletAddress": mallory.url, "quoteId": theirs["id"]},
                token=out,
            ),
            401,
        ),
        (
            "pay on another wallet's grant",
            alice.send(
                "POST",
                f"{url}/outgoing-payments",
                {"walletAddress": mallory.url, "quoteId": theirs["id"]},
                token=out,
            ),
            403,
        ),
        (
            "pay from a quote and an incoming payment",
            pay(alice, out, own["id"], incomingPayment=receiver, debitAmount=usd(1)),
            400,
        ),
        ("bad metadata", pay(alice, out, own["id"], metadata="x"), 400),
        (
            "unknown payment",
            alice.send("GET", f"{url}/outgoing-payments/{uuid.uuid4()}", token=out),
            404,
        ),
        ("payment not a uuid", alice.send("GET", f"{url}/outgoing-payments/x", token=out), 404),
        ("list without wallet", alice.send("GET", f"{url}/outgoing-payments", token=out), 400),
        (
            "list bad cursor",
            alice.send(
                "GET", f"{url}/outgoing-payments?wallet-address={alice.url}&cursor=x", token=out
            ),
            400,
        ),
        (
            "list first and last",
            alice.send(
                "GET",
                f"{url}/outgoing-payments?wallet-address={alice.url}&first=1&last=1",
                token=out,
            ),
            400,
        ),
        (
            "list another wallet",
            alice.send("GET", f"{url}/outgoing-payments?wallet-address={mallory.url}", token=out),
            403,
        ),
        (
            "spent with a quote grant",
            alice.send("GET", f"{url}/outgoing-payment-grant", token=quote_token),
            403,
        ),
    ]
    before = await sending_rows(op_node)
    quotes_before = await op_node.pool.fetchval("SELECT count(*) FROM quotes")
    for name, call, status in cases:
        response = await call
        assert response.status_code == status, (name, response.text)
        assert "error" in response.json(), name
    assert await sending_rows(op_node) == before
    assert await op_node.pool.fetchval("SELECT count(*) FROM quotes") == quotes_before


async def test_lists_page_forward_and_back_and_read_reaches_only_the_grants_client(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    made = await quotes(op_node, alice, 3, 100)
    token = (await alice.interactive_grant(outgoing_access(alice.url)))["value"]
    ids = [(await pay(alice, token, q["id"])).json()["id"] for q in made]
    listing = f"{op_node.url}/outgoing-payments?wallet-address={alice.url}"
    page = (await alice.send("GET", f"{listing}&first=2", token=token)).json()
    assert [p["id"] for p in page["result"]] == ids[:2]
    assert page["pagination"]["hasNextPage"] is True
    rest = (
        await alice.send(
            "GET", f"{listing}&first=2&cursor={page['pagination']['endCursor']}", token=token
        )
    ).json()
    assert [p["id"] for p in rest["result"]] == ids[2:]
    assert rest["pagination"]["hasNextPage"] is False
    back = (
        await alice.send(
            "GET", f"{listing}&last=2&cursor={rest['pagination']['startCursor']}", token=token
        )
    ).json()
    assert [p["id"] for p in back["result"]] == ids[:2]
    # Another client's grant on the same wallet address (read, not read-all) sees nothing.
    bob = await op_node.client()
    foreign = (await bob.interactive_grant(outgoing_access(alice.url)))["value"]
    assert (await bob.send("GET", ids[0], token=foreign)).status_code == 404
    assert (await bob.send("GET", listing, token=foreign)).json()["result"] == []


@pytest.mark.interop
async def test_the_open_payments_client_quotes_pays_and_reads_spent_amounts(
    op_node: OpNode, tmp_path: Path
) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    pem = tmp_path / "alice.pem"
    pem.write_bytes(private_key_to_pem(alice.key))
    url = op_node.url
    async with node_script("open_payments_grants.js", alice.url, str(pem), alice.kid) as js:

        async def ok(request: dict[str, Any]) -> Any:
            answer = await js.command(request)
            assert answer["ok"], answer
            return answer["body"]

        incoming_grant = await ok(
            {"op": "grant", "url": op_node.auth_url, "access": incoming_access(["create"], bob)}
        )
        payment = await ok(
            {
                "op": "createIncoming",
                "url": url,
                "accessToken": incoming_grant["access_token"]["value"],
                "body": {"walletAddress": bob, "incomingAmount": usd(250)},
            }
        )
        quote_grant = await ok({"op": "grant", "url": op_node.auth_url, "access": QUOTE_ACCESS})
        quote_token = quote_grant["access_token"]["value"]
        made = await ok(
            {
                "op": "createQuote",
                "url": url,
                "accessToken": quote_token,
                "body": {"walletAddress": alice.url, "receiver": payment["id"], "method": "ilp"},
            }
        )
        assert made["receiveAmount"] == usd(250)
        assert await ok({"op": "getQuote", "url": made["id"], "accessToken": quote_token}) == made
        debit = int(made["debitAmount"]["value"])
        token = (
            await alice.interactive_grant(
                outgoing_access(alice.url, {"debitAmount": usd(debit * 2)})
            )
        )["value"]
        created = await ok(
            {
                "op": "createOutgoing",
                "url": url,
                "accessToken": token,
                "body": {"walletAddress": alice.url, "quoteId": made["id"]},
            }
        )
        assert created["grantSpentDebitAmount"] == usd(debit)
        payment_id = created["id"].rsplit("/", 1)[1]
        await op_node.admin.data(
            DEPOSIT,
            {"input": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}},
        )
        await wait_state(op_node, payment_id, "COMPLETED")
        got = await ok({"op": "getOutgoing", "url": created["id"], "accessToken": token})
        assert got["failed"] is False and int(got["sentAmount"]["value"]) >= 250
        listed = await ok(
            {"op": "listOutgoing", "url": url, "accessToken": token, "walletAddress": alice.url}
        )
        assert [p["id"] for p in listed["result"]] == [created["id"]]
        spent = await ok({"op": "grantSpent", "url": url, "accessToken": token})
        assert spent == {"spentDebitAmount": usd(debit), "spentReceiveAmount": usd(250)}


GRANTS = """
query($filter: GrantFilter) {
  grants(filter: $filter, first: 5) {
    edges { node { id client state finalizationReason access {
      type actions identifier
      limits {
        receiver interval debitAmount { value assetCode assetScale } receiveAmount { value }
      }
    } } }
  }
}"""
GRANT = "query($id: String!) { grant(id: $id) { id state finalizationReason client } }"
REVOKE = """
mutation($input: RevokeGrantInput!) { revokeGrant(input: $input) { id } }"""


async def test_the_operator_lists_reads_and_revokes_grants_through_the_admin_api(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    limits = {"debitAmount": usd(700), "interval": "R/2026-01-01T00:00:00Z/P1W"}
    token = (await alice.interactive_grant(outgoing_access(alice.url, limits)))["value"]
    found = await op_node.admin.data(
        GRANTS, {"filter": {"identifier": {"in": [alice.url]}, "state": {"in": ["APPROVED"]}}}
    )
    (edge,) = found["grants"]["edges"]
    grant = edge["node"]
    assert grant["client"] == alice.url and grant["state"] == "APPROVED"
    assert grant["finalizationReason"] is None
    assert grant["access"] == [
        {
            "type": "outgoing-payment",
            "actions": ["create", "read", "list"],
            "identifier": alice.url,
            "limits": {
                "receiver": None,
                "interval": "R/2026-01-01T00:00:00Z/P1W",
                "debitAmount": {"value": "700", "assetCode": "USD", "assetScale": 2},
                "receiveAmount": None,
            },
        }
    ]
    none = await op_node.admin.data(GRANTS, {"filter": {"identifier": {"in": ["https://x.test"]}}})
    assert none["grants"]["edges"] == []
    assert (await op_node.admin.data(GRANT, {"id": grant["id"]}))["grant"]["id"] == grant["id"]

    listing = f"{op_node.url}/outgoing-payments?wallet-address={alice.url}"
    assert (await alice.send("GET", listing, token=token)).status_code == 200
    revoked = await op_node.admin.data(REVOKE, {"input": {"grantId": grant["id"]}})
    assert revoked == {"revokeGrant": {"id": grant["id"]}}
    after = (await op_node.admin.data(GRANT, {"id": grant["id"]}))["grant"]
    assert (after["state"], after["finalizationReason"]) == ("FINALIZED", "REVOKED")
    assert (await alice.send("GET", listing, token=token)).status_code == 401

    again = await op_node.admin.error(REVOKE, {"input": {"grantId": grant["id"]}})
    assert again.code == "NOT_FOUND"
    assert (await op_node.admin.error(GRANT, {"id": str(uuid.uuid4())})).code == "NOT_FOUND"
    assert (await op_node.admin.error(GRANT, {"id": "nope"})).code == "BAD_USER_INPUT"


async def test_wallet_addresses_named_like_the_sending_routes_are_still_served(
    op_node: OpNode,
) -> None:
    """``GET`` without a token on ``/quotes`` or ``/outgoing-payments`` is no Open Payments
    request: a wallet address at that path answers its document there, as before."""
    for name in ("quotes", "outgoing-payments", "outgoing-payment-grant"):
        _, url = await op_node.wallet(name)
        response = await op_node.http.get(url, headers={"Accept": "application/json"})
        assert response.status_code == 200, (name, response.text)
        assert response.json()["id"] == url
