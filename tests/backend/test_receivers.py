"""Receivers (Rafiki's receiver API) through the admin API: incoming payments of this node named
by their URLs, created, read and completed early; other nodes' refused."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.backend.harness import (
    WALLET_BASE,
    Admin,
    backend_settings,
    create_wallet_address,
    credit,
    running_backend,
)
from tests.hostile_http import complete, hostile_server, trickled_head

FIELDS = (
    "id walletAddressUrl completed expiresAt metadata createdAt "
    "incomingAmount { value assetCode assetScale } receivedAmount { value assetCode assetScale }"
)
CREATE = f"""
mutation($input: CreateReceiverInput!) {{
  createReceiver(input: $input) {{ receiver {{ {FIELDS} }} }}
}}
"""
READ = f"query($id: String!) {{ receiver(id: $id) {{ {FIELDS} }} }}"
COMPLETE = f"""
mutation($input: CompleteReceiverInput!) {{
  completeReceiver(input: $input) {{ receiver {{ {FIELDS} }} }}
}}
"""
USD = {"assetCode": "USD", "assetScale": 2}
ALICE = WALLET_BASE + "/alice"
URL_SHAPE = re.compile(
    r"^https://wallet\.example/alice/incoming-payments/"
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def payment_id(receiver: dict[str, Any]) -> str:
    match = URL_SHAPE.match(receiver["id"])
    assert match is not None, receiver["id"]
    return match["id"]


async def setup(admin: Admin) -> tuple[str, str]:
    asset = await admin.create_asset("USD", 2)
    return asset, await create_wallet_address(admin, asset, "/alice")


async def events_of(admin: Admin, resource: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await admin.pool.fetch(
        "SELECT type, data FROM webhook_events WHERE resource_id = $1 ORDER BY seq",
        uuid.UUID(resource),
    )
    return [(r["type"], json.loads(r["data"])) for r in rows]


async def create(admin: Admin, **given: Any) -> dict[str, Any]:
    data = await admin.data(CREATE, {"input": {"walletAddressUrl": ALICE, **given}})
    receiver: dict[str, Any] = data["createReceiver"]["receiver"]
    return receiver


async def counts(admin: Admin) -> tuple[int, int]:
    payments = await admin.pool.fetchval("SELECT count(*) FROM incoming_payments")
    events = await admin.pool.fetchval("SELECT count(*) FROM webhook_events")
    return int(payments), int(events)


async def test_create_a_receiver_with_amount_expiry_and_metadata(admin: Admin) -> None:
    _, wallet = await setup(admin)
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    receiver = await create(
        admin,
        incomingAmount={"value": "1234", **USD},
        expiresAt=expires_at.isoformat().replace("+00:00", "Z"),
        metadata={"description": "coffee"},
    )
    payment = payment_id(receiver)
    assert receiver["walletAddressUrl"] == ALICE
    assert receiver["completed"] is False
    assert receiver["incomingAmount"] == {"value": "1234", **USD}
    assert receiver["receivedAmount"] == {"value": "0", **USD}
    assert receiver["metadata"] == {"description": "coffee"}
    assert receiver["expiresAt"] == expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    row = await admin.pool.fetchrow(
        "SELECT wallet_address_id, state, incoming_amount FROM incoming_payments WHERE id = $1",
        uuid.UUID(payment),
    )
    assert row is not None
    assert (str(row["wallet_address_id"]), row["state"], int(row["incoming_amount"])) == (
        wallet,
        "PENDING",
        1234,
    )
    ((kind, event),) = await events_of(admin, payment)
    assert kind == "incoming_payment.created"
    assert event["id"] == payment and event["walletAddressId"] == wallet
    assert event["incomingAmount"]["value"] == "1234"
    assert event["metadata"] == {"description": "coffee"}

    read = await admin.data(READ, {"id": receiver["id"]})
    assert read["receiver"] == receiver
    # The same incoming payment as the incoming payment API sees it.
    same = await admin.data(
        "query($id: String!) { incomingPayment(id: $id) { walletAddressId state } }",
        {"id": payment},
    )
    assert same["incomingPayment"] == {"walletAddressId": wallet, "state": "PENDING"}


async def test_create_a_receiver_without_amount_by_payment_pointer(admin: Admin) -> None:
    await setup(admin)
    before = datetime.now(UTC)
    data = await admin.data(CREATE, {"input": {"walletAddressUrl": "$wallet.example/alice/"}})
    receiver = data["createReceiver"]["receiver"]
    payment = payment_id(receiver)
    assert receiver["walletAddressUrl"] == ALICE
    assert receiver["incomingAmount"] is None and receiver["metadata"] is None
    assert receiver["receivedAmount"] == {"value": "0", **USD}
    # The longest expiry (INCOMING_PAYMENT_EXPIRY_MAX_MS) when none is given.
    expires_at = datetime.fromisoformat(receiver["expiresAt"].replace("Z", "+00:00"))
    assert expires_at > before + timedelta(days=1)
    assert [kind for kind, _ in await events_of(admin, payment)] == ["incoming_payment.created"]
    # Read by its payment pointer, too.
    read = await admin.data(READ, {"id": f"$wallet.example/alice/incoming-payments/{payment}"})
    assert read["receiver"]["id"] == receiver["id"]


async def test_receiver_bad_inputs_are_typed_and_write_nothing(admin: Admin) -> None:
    asset, _ = await setup(admin)
    inactive = await create_wallet_address(admin, asset, "/gone")
    await admin.data(
        "mutation($id: ID!) { updateWalletAddress(input: {id: $id, status: INACTIVE})"
        " { walletAddress { id } } }",
        {"id": inactive},
    )
    before = await counts(admin)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"walletAddressUrl": WALLET_BASE + "/nobody"}, "NOT_FOUND"),
        ({"walletAddressUrl": "not a url"}, "BAD_USER_INPUT"),
        ({"walletAddressUrl": "ftp://wallet.example/alice"}, "BAD_USER_INPUT"),
        ({"walletAddressUrl": ""}, "BAD_USER_INPUT"),
        ({"walletAddressUrl": ALICE + "?x=1"}, "BAD_USER_INPUT"),
        # Another node's, read over Open Payments: no wallet address document there (Rafiki's
        # UnknownWalletAddress).
        ({"walletAddressUrl": "https://other.example/bob"}, "NOT_FOUND"),
        ({"walletAddressUrl": "$other.example/bob"}, "NOT_FOUND"),
        ({"walletAddressUrl": f"{ALICE}/incoming-payments/{uuid.uuid4()}"}, "BAD_USER_INPUT"),
        ({"walletAddressUrl": WALLET_BASE + "/gone"}, "INACTIVE"),
        ({"incomingAmount": {"value": "0", **USD}}, "BAD_USER_INPUT"),
        (
            {"incomingAmount": {"value": "5", "assetCode": "EUR", "assetScale": 2}},
            "BAD_USER_INPUT",
        ),
        ({"incomingAmount": {"value": "5", "assetCode": "USD", "assetScale": 3}}, "BAD_USER_INPUT"),
        ({"expiresAt": later(seconds=-5)}, "BAD_USER_INPUT"),
        ({"expiresAt": later(days=400)}, "BAD_USER_INPUT"),
        ({"expiresAt": "tomorrow"}, "BAD_USER_INPUT"),
    ]
    for given, code in cases:
        failure = await admin.error(CREATE, {"input": {"walletAddressUrl": ALICE, **given}})
        assert failure.code == code, (given, failure.errors)
    assert await counts(admin) == before

    other = await admin.error(CREATE, {"input": {"walletAddressUrl": "https://other.example/b"}})
    assert "the wallet address https://other.example/b" in other.errors[0]["message"]


async def test_reading_receivers(admin: Admin) -> None:
    asset, _ = await setup(admin)
    await create_wallet_address(admin, asset, "/bob")
    receiver = await create(admin, incomingAmount={"value": "500", **USD})
    payment = payment_id(receiver)
    await credit(admin, "INCOMING_PAYMENT", payment, 120)
    read = await admin.data(READ, {"id": receiver["id"] + "/"})
    assert read["receiver"]["receivedAmount"] == {"value": "120", **USD}
    assert read["receiver"]["completed"] is False

    cases: list[tuple[str, str]] = [
        (f"{ALICE}/incoming-payments/{uuid.uuid4()}", "NOT_FOUND"),
        # Another wallet address's URL does not name this payment.
        (f"{WALLET_BASE}/bob/incoming-payments/{payment}", "NOT_FOUND"),
        # Another node's, whose amounts cannot be read (nothing listens there).
        (f"http://127.0.0.1:1/bob/incoming-payments/{payment}", "BAD_USER_INPUT"),
        (ALICE, "BAD_USER_INPUT"),
        (f"{ALICE}/incoming-payments/nope", "BAD_USER_INPUT"),
        ("nonsense", "BAD_USER_INPUT"),
    ]
    for given, code in cases:
        failure = await admin.error(READ, {"id": given})
        assert failure.code == code, (given, failure.errors)
    other = await admin.error(READ, {"id": "https://other.example/bob/incoming-payments/1"})
    assert other.code == "BAD_USER_INPUT"
    assert "incoming payment URL" in other.errors[0]["message"]


async def test_complete_a_receiver_early(admin: Admin) -> None:
    asset, _ = await setup(admin)
    sender = await create_wallet_address(admin, asset, "/sender")
    receiver = await create(admin, incomingAmount={"value": "1000", **USD})
    payment = payment_id(receiver)
    await credit(admin, "INCOMING_PAYMENT", payment, 300)

    data = await admin.data(COMPLETE, {"input": {"id": receiver["id"]}})
    done = data["completeReceiver"]["receiver"]
    assert done["id"] == receiver["id"]
    assert done["completed"] is True
    assert done["receivedAmount"] == {"value": "300", **USD}
    assert (await admin.data(READ, {"id": receiver["id"]}))["receiver"] == done

    row = await admin.pool.fetchrow(
        "SELECT state, received_amount FROM incoming_payments WHERE id = $1", uuid.UUID(payment)
    )
    assert row is not None and (row["state"], int(row["received_amount"])) == ("COMPLETED", 300)
    kinds = [kind for kind, _ in await events_of(admin, payment)]
    assert kinds == ["incoming_payment.created", "incoming_payment.completed"]
    event = (await events_of(admin, payment))[1][1]
    assert event["state"] == "COMPLETED" and event["completed"] is True
    assert event["receivedAmount"]["value"] == "300"
    assert event["withdrawal"]["amount"] == "300"
    assert event["withdrawal"]["assetId"] == asset
    withdrawal = await admin.pool.fetchrow(
        "SELECT withdrawal_amount, withdrawal_asset_id FROM webhook_events "
        "WHERE resource_id = $1 AND type = 'incoming_payment.completed'",
        uuid.UUID(payment),
    )
    assert withdrawal is not None
    assert (int(withdrawal["withdrawal_amount"]), str(withdrawal["withdrawal_asset_id"])) == (
        300,
        asset,
    )

    # It takes no more money: quoting a payment to it is refused.
    refused = await admin.error(
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id } } }",
        {
            "input": {
                "walletAddressId": sender,
                "receiver": receiver["id"],
                "receiveAmount": {"value": "10", **USD},
            }
        },
    )
    assert refused.code == "BAD_USER_INPUT"
    assert "completed" in refused.errors[0]["message"]

    again = await admin.error(COMPLETE, {"input": {"id": receiver["id"]}})
    assert again.code == "CONFLICT"
    assert len(await events_of(admin, payment)) == 2

    # What it received can be withdrawn now.
    await admin.data(
        "mutation($input: CreateIncomingPaymentWithdrawalInput!) {"
        " createIncomingPaymentWithdrawal(input: $input) { success } }",
        {"input": {"incomingPaymentId": payment, "idempotencyKey": "w", "timeoutSeconds": "0"}},
    )


async def test_complete_without_money_expired_and_unknown(admin: Admin) -> None:
    await setup(admin)
    empty = await create(admin)
    data = await admin.data(COMPLETE, {"input": {"id": empty["id"]}})
    assert data["completeReceiver"]["receiver"]["completed"] is True
    assert data["completeReceiver"]["receiver"]["receivedAmount"]["value"] == "0"
    (_, (kind, event)) = await events_of(admin, payment_id(empty))
    assert kind == "incoming_payment.completed"
    assert event["receivedAmount"]["value"] == "0" and "withdrawal" not in event

    cancelled = await create(admin)
    await admin.data(
        "mutation($id: ID!) { cancelIncomingPayment(input: {id: $id}) { payment { id } } }",
        {"id": payment_id(cancelled)},
    )
    before = await counts(admin)
    cases: list[tuple[str, str]] = [
        (cancelled["id"], "CONFLICT"),
        (f"{ALICE}/incoming-payments/{uuid.uuid4()}", "NOT_FOUND"),
        (f"https://other.example/bob/incoming-payments/{uuid.uuid4()}", "BAD_USER_INPUT"),
        (ALICE, "BAD_USER_INPUT"),
    ]
    for given, code in cases:
        failure = await admin.error(COMPLETE, {"input": {"id": given}})
        assert failure.code == code, (given, failure.errors)
    assert await counts(admin) == before
    state = await admin.pool.fetchval(
        "SELECT state FROM incoming_payments WHERE id = $1", uuid.UUID(payment_id(cancelled))
    )
    assert state == "EXPIRED"


async def test_idempotent_create_and_complete(admin: Admin) -> None:
    await setup(admin)
    given = {"walletAddressUrl": ALICE, "idempotencyKey": "r-1", "metadata": {"n": 1}}
    first = await admin.data(CREATE, {"input": given})
    again = await admin.data(CREATE, {"input": given})
    assert first == again
    conflict = await admin.error(CREATE, {"input": {**given, "metadata": {"n": 2}}})
    assert conflict.code == "CONFLICT"
    assert await counts(admin) == (1, 1)

    receiver = first["createReceiver"]["receiver"]
    payment = payment_id(receiver)
    await credit(admin, "INCOMING_PAYMENT", payment, 7)
    complete = {"id": receiver["id"], "idempotencyKey": "c-1"}
    done = await admin.data(COMPLETE, {"input": complete})
    replayed = await admin.data(COMPLETE, {"input": complete})
    assert done == replayed
    assert done["completeReceiver"]["receiver"]["receivedAmount"]["value"] == "7"
    kinds = [kind for kind, _ in await events_of(admin, payment)]
    assert kinds == ["incoming_payment.created", "incoming_payment.completed"]


async def test_with_private_receivers_refused_an_internal_service_cannot_be_probed(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    """Reading another node's receiver fetches its URL: with REFUSE_PRIVATE_RECEIVERS a URL on
    a loopback or private address is never fetched, and the error tells nothing of what the
    internal service would have answered."""
    internal = complete(b'{"token": "internal-secret"}', status=418)
    settings = backend_settings(redis_prefix, refuse_private_receivers=True)
    async with (
        hostile_server(internal) as service,
        running_backend(migrated_database, redis_server_url, settings) as admin,
    ):
        port = service.url.rsplit(":", 1)[1]
        hosts = ("http://127.0.0.1", "http://localhost", "https://[::1]", "https://10.0.0.7")
        for host in (*hosts, "https://169.254.169.254"):
            url = f"{host}:{port}/bob/incoming-payments/{uuid.uuid4()}"
            failure = await admin.error(READ, {"id": url})
            assert failure.code == "BAD_USER_INPUT", failure.errors
            # Without the URL (a random id may hold the digits 418): what the error adds to it.
            message = failure.errors[0]["message"].replace(url, "<url>")
            assert "non-public address" in message
            assert "418" not in message and "internal-secret" not in message
        assert service.requests == []


async def test_a_receiver_read_is_bounded_in_time(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    settings = backend_settings(redis_prefix, receiver_fetch_timeout_ms=500)
    async with (
        hostile_server(trickled_head(0.05)) as slow,
        running_backend(migrated_database, redis_server_url, settings) as admin,
    ):
        started = time.monotonic()
        url = f"{slow.url}/bob/incoming-payments/{uuid.uuid4()}"
        failure = await admin.error(READ, {"id": url})
        assert failure.code == "BAD_USER_INPUT"
        assert "did not answer within 0.5 s" in failure.errors[0]["message"]
        # The head never ends; ample slack over the 0.5 s for a loaded machine.
        assert time.monotonic() - started < 10


async def test_a_pointer_with_a_bare_slash_names_the_nodes_well_known_wallet_address(
    admin: Admin,
) -> None:
    """``$wallet.example/`` is ``https://wallet.example/.well-known/pay`` (RFC 26: an empty path
    or ``/``), so it is this node's wallet address there, for receivers as for quotes; it once
    read as ``https://wallet.example``, another node's."""
    asset = await admin.create_asset("USD", 2)
    sender = await create_wallet_address(admin, asset, "/sender")
    await create_wallet_address(admin, asset, "/.well-known/pay")
    data = await admin.data(CREATE, {"input": {"walletAddressUrl": "$wallet.example/"}})
    receiver = data["createReceiver"]["receiver"]
    assert receiver["walletAddressUrl"] == WALLET_BASE + "/.well-known/pay"
    assert receiver["id"].startswith(WALLET_BASE + "/.well-known/pay/incoming-payments/")

    quoted = await admin.data(
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) {"
        " quote { receiver receiveAmount { value } } } }",
        {
            "input": {
                "walletAddressId": sender,
                "receiver": "$wallet.example/",
                "receiveAmount": {"value": "10", **USD},
            }
        },
    )
    quote = quoted["createQuote"]["quote"]
    assert quote == {"receiver": WALLET_BASE + "/.well-known/pay", "receiveAmount": {"value": "10"}}
