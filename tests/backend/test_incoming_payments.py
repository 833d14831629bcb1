"""Incoming payments through the admin API, with their events, expiry and withdrawal; the
combined payments list and accounting transfers."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.backend.harness import Admin, create_wallet_address, credit

FIELDS = (
    "id walletAddressId state expiresAt metadata liquidity createdAt "
    "incomingAmount { value assetCode assetScale } receivedAmount { value assetCode assetScale }"
)
CREATE = f"""
mutation($input: CreateIncomingPaymentInput!) {{
  createIncomingPayment(input: $input) {{ payment {{ {FIELDS} }} }}
}}
"""
WITHDRAW = """
mutation($input: CreateIncomingPaymentWithdrawalInput!) {
  createIncomingPaymentWithdrawal(input: $input) { success }
}
"""


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def setup(admin: Admin) -> tuple[str, str]:
    asset = await admin.create_asset("USD", 2)
    return asset, await create_wallet_address(admin, asset, "/alice")


async def events_of(admin: Admin, resource: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await admin.pool.fetch(
        "SELECT id, type, data FROM webhook_events WHERE resource_id = $1 ORDER BY seq",
        uuid.UUID(resource),
    )
    return [(r["type"], {**json.loads(r["data"]), "_event": str(r["id"])}) for r in rows]


async def test_create_an_incoming_payment_and_its_created_event(admin: Admin) -> None:
    _, wallet = await setup(admin)
    data = await admin.data(
        CREATE,
        {
            "input": {
                "walletAddressId": wallet,
                "incomingAmount": {"value": "1234", "assetCode": "USD", "assetScale": 2},
                "metadata": {"description": "coffee"},
                "expiresAt": later(hours=1),
            }
        },
    )
    payment = data["createIncomingPayment"]["payment"]
    assert payment["state"] == "PENDING"
    assert payment["incomingAmount"] == {"value": "1234", "assetCode": "USD", "assetScale": 2}
    assert payment["receivedAmount"]["value"] == "0"
    assert payment["metadata"] == {"description": "coffee"}
    assert payment["liquidity"] == "0"
    ((kind, event),) = await events_of(admin, payment["id"])
    assert kind == "incoming_payment.created"
    assert event["id"] == payment["id"] and event["incomingAmount"]["value"] == "1234"

    read = await admin.data(
        f"query($id: String!) {{ incomingPayment(id: $id) {{ {FIELDS} }} }}", {"id": payment["id"]}
    )
    assert read["incomingPayment"]["id"] == payment["id"]
    nested = await admin.data(
        "query($id: String!) { walletAddress(id: $id) {"
        " incomingPayments { edges { node { id } } } } }",
        {"id": wallet},
    )
    edges = nested["walletAddress"]["incomingPayments"]["edges"]
    assert [e["node"]["id"] for e in edges] == [payment["id"]]
    listed = await admin.data(
        "query($w: [String!]!) { incomingPayments(filter: {walletAddressId: {in: $w},"
        ' state: {in: ["PENDING"]}}) { edges { node { id } } } }',
        {"w": [wallet]},
    )
    assert len(listed["incomingPayments"]["edges"]) == 1


async def test_incoming_payment_bad_inputs_change_nothing(admin: Admin) -> None:
    asset, wallet = await setup(admin)
    inactive = await create_wallet_address(admin, asset, "/gone")
    await admin.data(
        "mutation($id: ID!) { updateWalletAddress(input: {id: $id, status: INACTIVE})"
        " { walletAddress { id } } }",
        {"id": inactive},
    )
    usd = {"assetCode": "USD", "assetScale": 2}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"walletAddressId": str(uuid.uuid4())}, "NOT_FOUND"),
        ({"walletAddressId": "x"}, "BAD_USER_INPUT"),
        ({"walletAddressId": inactive}, "INACTIVE"),
        ({"walletAddressId": wallet, "incomingAmount": {"value": "0", **usd}}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "incomingAmount": {"value": "-5", **usd}}, "BAD_USER_INPUT"),
        (
            {
                "walletAddressId": wallet,
                "incomingAmount": {"value": "5", "assetCode": "EUR", "assetScale": 2},
            },
            "BAD_USER_INPUT",
        ),
        ({"walletAddressId": wallet, "expiresAt": later(seconds=-5)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "expiresAt": later(days=400)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "expiresAt": "tomorrow"}, "BAD_USER_INPUT"),
    ]
    for given, code in cases:
        failure = await admin.error(CREATE, {"input": given})
        assert failure.code == code, given
    assert await admin.pool.fetchval("SELECT count(*) FROM incoming_payments") == 0
    assert await admin.pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_update_and_cancel(admin_on_each_backend: Admin) -> None:
    admin = admin_on_each_backend
    _, wallet = await setup(admin)
    created = await admin.data(CREATE, {"input": {"walletAddressId": wallet}})
    payment = created["createIncomingPayment"]["payment"]["id"]
    updated = await admin.data(
        "mutation($id: ID!) { updateIncomingPayment(input: {id: $id, metadata: {a: 1}})"
        " { payment { metadata } } }",
        {"id": payment},
    )
    assert updated["updateIncomingPayment"]["payment"]["metadata"] == {"a": 1}
    cancel = "mutation($id: ID!) { cancelIncomingPayment(input: {id: $id}) { payment { state } } }"
    cancelled = await admin.data(cancel, {"id": payment})
    assert cancelled["cancelIncomingPayment"]["payment"]["state"] == "EXPIRED"
    failure = await admin.error(cancel, {"id": payment})
    assert failure.code == "CONFLICT"
    failure = await admin.error(cancel, {"id": str(uuid.uuid4())})
    assert failure.code == "NOT_FOUND"

    second = await admin.data(CREATE, {"input": {"walletAddressId": wallet}})
    paid = second["createIncomingPayment"]["payment"]["id"]
    await credit(admin, "INCOMING_PAYMENT", paid, 10)
    failure = await admin.error(cancel, {"id": paid})
    assert failure.code == "CONFLICT"


async def test_expiry_with_money_raises_an_event_and_the_money_is_withdrawn(
    admin_on_each_backend: Admin,
) -> None:
    admin = admin_on_each_backend
    _, wallet = await setup(admin)
    created = await admin.data(
        CREATE,
        {
            "input": {
                "walletAddressId": wallet,
                "incomingAmount": {"value": "500", "assetCode": "USD", "assetScale": 2},
                # Two seconds: the refused withdrawal and the credit come before the expiry
                # even on a loaded machine.
                "expiresAt": later(seconds=2),
            }
        },
    )
    payment = created["createIncomingPayment"]["payment"]["id"]
    too_early = await admin.error(
        WITHDRAW,
        {"input": {"incomingPaymentId": payment, "idempotencyKey": "w0", "timeoutSeconds": "0"}},
    )
    assert too_early.code == "FORBIDDEN"
    await credit(admin, "INCOMING_PAYMENT", payment, 200)
    events = await wait_for(admin, payment, 2)
    kind, event = events[1]
    assert kind == "incoming_payment.expired"
    assert event["receivedAmount"]["value"] == "200"
    assert event["withdrawal"]["amount"] == "200"
    state = await admin.data(
        "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value }"
        " liquidity } }",
        {"id": payment},
    )
    assert state["incomingPayment"] == {
        "state": "EXPIRED",
        "receivedAmount": {"value": "200"},
        "liquidity": "200",
    }
    await admin.data(
        WITHDRAW,
        {"input": {"incomingPaymentId": payment, "idempotencyKey": "w1", "timeoutSeconds": "60"}},
    )
    held = await admin.data(
        "query($id: String!) { incomingPayment(id: $id) { liquidity } }", {"id": payment}
    )
    assert held["incomingPayment"]["liquidity"] == "0"
    # The two-phase withdrawal's id is the event's, as in Rafiki.
    post = (
        "mutation($id: String!, $key: String!) { postLiquidityWithdrawal("
        "input: {withdrawalId: $id, idempotencyKey: $key}) { success } }"
    )
    done = await admin.data(post, {"id": event["_event"], "key": "p1"})
    assert done["postLiquidityWithdrawal"]["success"] is True
    again = await admin.error(post, {"id": event["_event"], "key": "p2"})
    assert again.code == "CONFLICT"
    nothing = await admin.error(
        WITHDRAW,
        {"input": {"incomingPaymentId": payment, "idempotencyKey": "w2", "timeoutSeconds": "0"}},
    )
    assert nothing.code == "BAD_USER_INPUT"
    transfers = await admin.data(
        "query($id: String!) { accountingTransfers(id: $id) { debits { amount transferType"
        " state ledger } credits { amount transferType state } } }",
        {"id": payment},
    )
    assert transfers["accountingTransfers"]["credits"] == [
        {"amount": "200", "transferType": "DEPOSIT", "state": "POSTED"}
    ]
    assert transfers["accountingTransfers"]["debits"][0]["transferType"] == "WITHDRAWAL"
    assert transfers["accountingTransfers"]["debits"][0]["state"] == "POSTED"


async def test_expiry_without_money_is_quiet(admin: Admin) -> None:
    _, wallet = await setup(admin)
    created = await admin.data(
        # Still in the future when the request arrives, even on a loaded machine.
        CREATE,
        {"input": {"walletAddressId": wallet, "expiresAt": later(seconds=2)}},
    )
    payment = created["createIncomingPayment"]["payment"]["id"]
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        state = await admin.pool.fetchval(
            "SELECT state FROM incoming_payments WHERE id = $1", uuid.UUID(payment)
        )
        if state == "EXPIRED":
            break
        await asyncio.sleep(0.05)
    assert state == "EXPIRED"
    assert [kind for kind, _ in await events_of(admin, payment)] == ["incoming_payment.created"]


async def test_payments_lists_incoming_payments(admin: Admin) -> None:
    _, wallet = await setup(admin)
    for _ in range(3):
        await admin.data(CREATE, {"input": {"walletAddressId": wallet}})
    data = await admin.data(
        'query($w: [String!]!) { payments(first: 2, filter: {type: {in: ["INCOMING"]},'
        " walletAddressId: {in: $w}}) { pageInfo { hasNextPage } edges { node { id type"
        " walletAddressId state liquidity } } } }",
        {"w": [wallet]},
    )
    payments = data["payments"]
    assert payments["pageInfo"]["hasNextPage"] is True
    assert {e["node"]["type"] for e in payments["edges"]} == {"INCOMING"}
    failure = await admin.error(
        '{ payments(filter: {type: {in: ["SIDEWAYS"]}}) { edges { cursor } } }'
    )
    assert failure.code == "BAD_USER_INPUT"
    failure = await admin.error(
        "query($id: String!) { accountingTransfers(id: $id) { debits { id } } }",
        {"id": str(uuid.uuid4())},
    )
    assert failure.code == "NOT_FOUND"


async def test_idempotent_create(admin: Admin) -> None:
    _, wallet = await setup(admin)
    given = {"walletAddressId": wallet, "idempotencyKey": "ip-1"}
    first = await admin.data(CREATE, {"input": given})
    again = await admin.data(CREATE, {"input": given})
    assert first == again
    conflict = await admin.error(CREATE, {"input": {**given, "metadata": {"x": 1}}})
    assert conflict.code == "CONFLICT"
    assert await admin.pool.fetchval("SELECT count(*) FROM incoming_payments") == 1


async def wait_for(admin: Admin, resource: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        events = await events_of(admin, resource)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} events: {await events_of(admin, resource)}")
