"""The admin API in Rafiki's shapes (issue 17): incoming payments' Rafiki fields, filters with
``in``/``notIn``, a wallet address's payment connections, paging by row id, the operator
tenant, and ``completeReceiver`` by URL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from tests.backend.harness import WALLET_BASE, Admin, create_wallet_address

PAYMENT = (
    "id url walletAddressId state senderWalletAddress cancellationReason cancelledAt createdAt"
)
CREATE = f"""
mutation($input: CreateIncomingPaymentInput!) {{
  createIncomingPayment(input: $input) {{ payment {{ {PAYMENT} }} }}
}}
"""
CANCEL = f"""
mutation($input: CancelIncomingPaymentInput!) {{
  cancelIncomingPayment(input: $input) {{ payment {{ {PAYMENT} }} }}
}}
"""


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _payment(admin: Admin, wallet: str, **extra: object) -> dict[str, str]:
    data = await admin.data(
        CREATE, {"input": {"walletAddressId": wallet, "expiresAt": later(hours=1), **extra}}
    )
    payment: dict[str, str] = data["createIncomingPayment"]["payment"]
    return payment


async def test_incoming_payment_rafiki_fields_and_cancellation_reason(admin: Admin) -> None:
    asset = await admin.create_asset()
    wallet = await create_wallet_address(admin, asset, "/alice")
    payment = await _payment(admin, wallet, senderWalletAddress="https://other.example/bob")
    assert payment["url"] == f"{WALLET_BASE}/incoming-payments/{payment['id']}"
    assert payment["senderWalletAddress"] == "https://other.example/bob"
    assert payment["cancellationReason"] is None and payment["cancelledAt"] is None
    cancelled = await admin.data(
        CANCEL, {"input": {"id": payment["id"], "cancellationReason": "customer left"}}
    )
    after = cancelled["cancelIncomingPayment"]["payment"]
    assert after["state"] == "EXPIRED" and after["cancellationReason"] == "customer left"
    assert after["cancelledAt"] is not None
    read = await admin.data(f'query {{ incomingPayment(id: "{payment["id"]}") {{ {PAYMENT} }} }}')
    assert read["incomingPayment"] == after
    # The created event carries no cancellation; a bad reason changes nothing.
    other = await _payment(admin, wallet)
    failure = await admin.error(
        CANCEL, {"input": {"id": other["id"], "cancellationReason": "x" * 1025}}
    )
    assert failure.code == "BAD_USER_INPUT"
    state = await admin.pool.fetchval(
        "SELECT state FROM incoming_payments WHERE id = $1", uuid.UUID(other["id"])
    )
    assert state == "PENDING"
    failure = await admin.error(
        CREATE,
        {"input": {"walletAddressId": wallet, "senderWalletAddress": "y" * 2049}},
    )
    assert failure.code == "BAD_USER_INPUT"


async def test_filters_in_and_not_in_and_initiated_by(admin: Admin) -> None:
    asset = await admin.create_asset()
    alice = await create_wallet_address(admin, asset, "/alice")
    bob = await create_wallet_address(admin, asset, "/bob")
    by_admin = await _payment(admin, alice)
    by_client = await _payment(admin, alice)
    of_bob = await _payment(admin, bob)
    # As the resource server records an Open Payments client's payment.
    await admin.pool.execute(
        "UPDATE incoming_payments SET client = 'https://client.example/app' WHERE id = $1",
        uuid.UUID(by_client["id"]),
    )

    async def ids(query: str) -> set[str]:
        data = await admin.data(query)
        connection = next(iter(data.values()))
        if "incomingPayments" in connection:
            connection = connection["incomingPayments"]
        return {edge["node"]["id"] for edge in connection["edges"]}

    wallet_page = (
        f'query {{ walletAddress(id: "{alice}") {{ incomingPayments(filter: {{{{F}}}}) '
        "{ edges { node { id } } } } }"
    )
    assert await ids(wallet_page.replace("{F}", 'initiatedBy: {in: ["ADMIN"]}')) == {by_admin["id"]}
    assert await ids(wallet_page.replace("{F}", 'initiatedBy: {notIn: ["ADMIN"]}')) == {
        by_client["id"]
    }
    assert await ids(wallet_page.replace("{F}", "initiatedBy: {}")) == {
        by_admin["id"],
        by_client["id"],
    }
    top = "query {{ incomingPayments(filter: {{{F}}}) {{ edges {{ node {{ id }} }} }} }}"
    assert await ids(top.format(F=f'walletAddressId: {{notIn: ["{alice}"]}}')) == {of_bob["id"]}
    assert await ids(top.format(F='initiatedBy: {in: ["OPEN_PAYMENTS", "CARD"]}')) == {
        by_client["id"]
    }
    failure = await admin.error(top.format(F='initiatedBy: {in: ["NOPE"]}'))
    assert failure.code == "BAD_USER_INPUT"
    failure = await admin.error(top.format(F='walletAddressId: {notIn: ["nope"]}'))
    assert failure.code == "BAD_USER_INPUT"
    events = await admin.data(
        'query { webhookEvents(filter: {type: {notIn: ["incoming_payment.created"]}}) '
        "{ edges { node { type } } } }"
    )
    assert events["webhookEvents"]["edges"] == []
    payments = await admin.data(
        'query { payments(filter: {type: {notIn: ["OUTGOING"]}}) { edges { node { id } } } }'
    )
    assert len(payments["payments"]["edges"]) == 3
    rows = await admin.pool.fetch("SELECT data FROM webhook_events")
    assert all("cancelledAt" not in json.loads(r["data"]) for r in rows)


OPERATOR = "00000000-0000-0000-0000-000000000000"


async def test_operator_tenant_whoami_tenant_ids_and_header(admin: Admin) -> None:
    who = await admin.data("query { whoami { id isOperator } }")
    assert who["whoami"] == {"id": OPERATOR, "isOperator": True}
    asset = await admin.data(
        "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }",
        {"input": {"code": "EUR", "scale": 2, "tenantId": OPERATOR}},
    )
    asset_id = asset["createAsset"]["asset"]["id"]
    for query in ("assets", "walletAddresses", "incomingPayments", "outgoingPayments",
                  "webhookEvents", "payments", "peers"):  # fmt: skip
        listed = await admin.data(
            f'query {{ {query}(tenantId: "{OPERATOR}") {{ pageInfo {{ hasNextPage }} }} }}'
        )
        assert listed[query]["pageInfo"]["hasNextPage"] is False
        failure = await admin.error(
            f'query {{ {query}(tenantId: "{uuid.uuid4()}") {{ pageInfo {{ hasNextPage }} }} }}'
        )
        assert failure.code == "NOT_FOUND", query
    other = str(uuid.uuid4())
    failure = await admin.error(
        "mutation($input: CreateWalletAddressInput!) "
        "{ createWalletAddress(input: $input) { walletAddress { id } } }",
        {"input": {"assetId": asset_id, "address": "alice", "tenantId": other}},
    )
    assert failure.code == "NOT_FOUND"
    assert await admin.pool.fetchval("SELECT count(*) FROM wallet_addresses") == 0
    # The tenant-id header: the operator's is taken, any other is Rafiki's 401.
    taken = await admin.post("query { whoami { id } }", headers={"tenant-id": OPERATOR.upper()})
    assert taken.status_code == 200 and taken.json()["data"]["whoami"]["id"] == OPERATOR
    refused = await admin.post("query { whoami { id } }", headers={"tenant-id": other})
    assert refused.status_code == 401


async def test_pages_by_row_id_as_rafiki_clients_do(admin: Admin) -> None:
    asset = await admin.create_asset()
    wallets = [await create_wallet_address(admin, asset, f"/w{i}") for i in range(5)]
    page = "query($after: String, $before: String) { walletAddresses(first: 2, after: $after, before: $before, sortOrder: ASC) { edges { cursor node { id } } pageInfo { hasNextPage } } }"  # noqa: E501
    seen: list[str] = []
    after = None
    while True:
        data = (await admin.data(page, {"after": after}))["walletAddresses"]
        seen += [edge["node"]["id"] for edge in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["edges"][-1]["node"]["id"]  # the last node's id, not its cursor
    assert seen == wallets
    back = await admin.data(
        "query($before: String) { walletAddresses(last: 2, before: $before, sortOrder: ASC) "
        "{ edges { node { id } } } }",
        {"before": wallets[3]},
    )
    assert [e["node"]["id"] for e in back["walletAddresses"]["edges"]] == wallets[1:3]
    # An opaque cursor still works; an id of no row of the list is refused.
    first = (await admin.data(page, {}))["walletAddresses"]["edges"][0]["cursor"]
    rest = (await admin.data(page, {"after": first}))["walletAddresses"]["edges"]
    assert rest[0]["node"]["id"] == wallets[1]
    failure = await admin.error(page, {"after": asset})
    assert failure.code == "BAD_USER_INPUT"
    # Nested connections page by id too.
    payments = [(await _payment(admin, wallets[0]))["id"] for _ in range(3)]
    nested = await admin.data(
        "query($id: String!, $after: String) { walletAddress(id: $id) { incomingPayments("
        "after: $after, sortOrder: ASC) { edges { node { id } } } } }",
        {"id": wallets[0], "after": payments[0]},
    )
    edges = nested["walletAddress"]["incomingPayments"]["edges"]
    assert [e["node"]["id"] for e in edges] == payments[1:]


async def test_wallet_address_quotes_and_outgoing_payments_connections(admin: Admin) -> None:
    asset = await admin.create_asset()
    alice = await create_wallet_address(admin, asset, "/alice")
    bob = await create_wallet_address(admin, asset, "/bob")
    receiver = await _payment(
        admin, bob, incomingAmount={"value": "100", "assetCode": "USD", "assetScale": 2}
    )
    quote = await admin.data(
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id } } }",
        {"input": {"walletAddressId": alice, "receiver": receiver["url"]}},
    )
    quote_id = quote["createQuote"]["quote"]["id"]
    fields = (
        "quotes { edges { node { id walletAddressId tenantId } } } "
        "outgoingPayments { edges { node { id } } }"
    )
    before = await admin.data(
        f'query {{ a: walletAddress(id: "{alice}") {{ {fields} }} '
        f'b: walletAddress(id: "{bob}") {{ {fields} }} }}'
    )
    assert before["a"]["quotes"]["edges"] == [
        {"node": {"id": quote_id, "walletAddressId": alice, "tenantId": OPERATOR}}
    ]
    assert before["b"]["quotes"]["edges"] == [] and before["a"]["outgoingPayments"]["edges"] == []
    await admin.deposit_asset(asset, 1000)
    paid = await admin.data(
        "mutation($input: CreateOutgoingPaymentInput!) "
        "{ createOutgoingPayment(input: $input) { payment { id } } }",
        {"input": {"walletAddressId": alice, "quoteId": quote_id}},
    )
    payment_id = paid["createOutgoingPayment"]["payment"]["id"]
    after = await admin.data(f'query {{ walletAddress(id: "{alice}") {{ {fields} }} }}')
    assert after["walletAddress"]["outgoingPayments"]["edges"] == [{"node": {"id": payment_id}}]


async def test_complete_receiver_by_incoming_payment_url(admin: Admin) -> None:
    asset = await admin.create_asset()
    wallet = await create_wallet_address(admin, asset, "/alice")
    complete = (
        "mutation($input: CompleteReceiverInput!) "
        "{ completeReceiver(input: $input) { receiver { id completed } } }"
    )
    by_wallet_url = await _payment(admin, wallet)
    spsp_url = f"{WALLET_BASE}/alice/incoming-payments/{by_wallet_url['id']}"
    done = await admin.data(complete, {"input": {"incomingPaymentUrl": spsp_url}})
    assert done["completeReceiver"]["receiver"] == {"id": spsp_url, "completed": True}
    by_op_url = await _payment(admin, wallet)  # its url field: the Open Payments URL
    done = await admin.data(complete, {"input": {"incomingPaymentUrl": by_op_url["url"]}})
    assert done["completeReceiver"]["receiver"]["completed"] is True
    for given in ({}, {"incomingPaymentUrl": spsp_url, "id": spsp_url}):
        failure = await admin.error(complete, {"input": given})
        assert failure.code == "BAD_USER_INPUT"
    unknown = f"{WALLET_BASE}/incoming-payments/{uuid.uuid4()}"
    failure = await admin.error(complete, {"input": {"incomingPaymentUrl": unknown}})
    assert failure.code == "NOT_FOUND"
