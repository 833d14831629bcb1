"""Quotes and outgoing payments through the admin API: local and remote quoting (fixed send,
fixed receive, an incoming payment's remaining amount), fees, typed refusals, expiry, and the
payment's life up to the connector's worker (create, fund, cancel, withdraw), with events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.backend.harness import (
    SECRET,
    WALLET_BASE,
    Admin,
    backend_settings,
    create_wallet_address,
    credit,
    running_backend,
)
from tests.loopback import serve

from kiungo.events import (
    OUTGOING_PAYMENT_EVENT_ROW,
    EventType,
    insert_event,
    outgoing_payment_data,
)
from kiungo.payments.quotes import SendingFee
from kiungo.signatures import SignatureError, verify

AMOUNT = "{ value assetCode assetScale }"
QUOTE_FIELDS = (
    f"id walletAddressId receiver debitAmount {AMOUNT} receiveAmount {AMOUNT} createdAt "
    "expiresAt estimatedExchangeRate"
)
PAYMENT_FIELDS = (
    f"id walletAddressId state error stateAttempts receiver debitAmount {AMOUNT} "
    f"receiveAmount {AMOUNT} sentAmount {AMOUNT} metadata liquidity createdAt grantId client "
    "quote { id }"
)
CREATE_QUOTE = f"""
mutation($input: CreateQuoteInput!) {{
  createQuote(input: $input) {{ quote {{ {QUOTE_FIELDS} }} }}
}}
"""
CREATE_PAYMENT = f"""
mutation($input: CreateOutgoingPaymentInput!) {{
  createOutgoingPayment(input: $input) {{ payment {{ {PAYMENT_FIELDS} }} }}
}}
"""
FROM_INCOMING = f"""
mutation($input: CreateOutgoingPaymentFromIncomingPaymentInput!) {{
  createOutgoingPaymentFromIncomingPayment(input: $input) {{ payment {{ {PAYMENT_FIELDS} }} }}
}}
"""
CANCEL = f"""
mutation($input: CancelOutgoingPaymentInput!) {{
  cancelOutgoingPayment(input: $input) {{ payment {{ {PAYMENT_FIELDS} }} }}
}}
"""
DEPOSIT = """
mutation($input: DepositOutgoingPaymentLiquidityInput!) {
  depositOutgoingPaymentLiquidity(input: $input) { success }
}
"""
WITHDRAW = """
mutation($input: CreateOutgoingPaymentWithdrawalInput!) {
  createOutgoingPaymentWithdrawal(input: $input) { success }
}
"""
READ_PAYMENT = f"query($id: String!) {{ outgoingPayment(id: $id) {{ {PAYMENT_FIELDS} }} }}"

# What the fake rates service knows (whole units of the quote currency per unit of the base).
RATES = {"USD": {"EUR": "0.9"}, "EUR": {"USD": "1.1"}}


def amount(value: int | str, code: str = "USD", scale: int = 2) -> dict[str, Any]:
    return {"value": str(value), "assetCode": code, "assetScale": scale}


@dataclass
class FakeConnector:
    """The connector's ``POST /internal/quote`` as the contract has it: answers by receiver."""

    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        try:
            verify(SECRET, request.headers.get("signature"), body, ttl_seconds=30)
        except SignatureError as exc:
            return JSONResponse({"code": "Unauthorized", "message": str(exc)}, status_code=401)
        self.requests.append(body)
        status, answer = self.answers.get(
            body["receiver"], (404, {"code": "InvalidReceiver", "message": "no such receiver"})
        )
        return JSONResponse(answer, status_code=status)


async def _rates(request: Request) -> Response:
    base = request.query_params.get("base", "")
    return JSONResponse({"base": base, "rates": RATES.get(base, {})})


@dataclass
class Node:
    admin: Admin
    connector: FakeConnector


@contextlib.asynccontextmanager
async def sending_node(
    database_url: str, redis_url: str, redis_prefix: str, **overrides: Any
) -> AsyncIterator[Node]:
    connector = FakeConnector()
    rates_app = Starlette(routes=[Route("/rates", _rates)])
    connector_app = Starlette(routes=[Route("/internal/quote", connector.handle, methods=["POST"])])
    async with serve(rates_app) as rates_url, serve(connector_app) as connector_url:
        values = {
            "exchange_rates_url": rates_url + "/rates",
            "ilp_connector_url": connector_url,
            **overrides,
        }
        settings = backend_settings(redis_prefix, **values)
        async with running_backend(database_url, redis_url, settings) as admin:
            yield Node(admin, connector)


@pytest.fixture
async def node(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> AsyncIterator[Node]:
    async with sending_node(migrated_database, redis_server_url, redis_prefix) as running:
        yield running


@dataclass
class World:
    usd: str
    eur: str
    alice: str  # USD
    bob: str  # EUR
    carol: str  # USD


async def world(admin: Admin) -> World:
    usd = await admin.create_asset("USD", 2)
    eur = await admin.create_asset("EUR", 2)
    alice = await create_wallet_address(admin, usd, "/alice")
    bob = await create_wallet_address(admin, eur, "/bob")
    carol = await create_wallet_address(admin, usd, "/carol")
    return World(usd, eur, alice, bob, carol)


async def quote(
    admin: Admin,
    wallet: str,
    receiver: str,
    *,
    debit: dict[str, Any] | None = None,
    receive: dict[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    given: dict[str, Any] = {"walletAddressId": wallet, "receiver": receiver}
    if debit is not None:
        given["debitAmount"] = debit
    if receive is not None:
        given["receiveAmount"] = receive
    if key is not None:
        given["idempotencyKey"] = key
    data = await admin.data(CREATE_QUOTE, {"input": given})
    result: dict[str, Any] = data["createQuote"]["quote"]
    return result


async def incoming_payment(
    admin: Admin,
    wallet: str,
    incoming: dict[str, Any] | None = None,
    expires_in: timedelta | None = None,
) -> str:
    """An incoming payment's URL."""
    given: dict[str, Any] = {"walletAddressId": wallet}
    if incoming is not None:
        given["incomingAmount"] = incoming
    if expires_in is not None:
        given["expiresAt"] = (datetime.now(UTC) + expires_in).isoformat()
    data = await admin.data(
        "mutation($input: CreateIncomingPaymentInput!) {"
        " createIncomingPayment(input: $input) { payment { id } } }",
        {"input": given},
    )
    payment_id = data["createIncomingPayment"]["payment"]["id"]
    owner = await admin.pool.fetchval(
        "SELECT w.url FROM wallet_addresses w JOIN incoming_payments p "
        "ON p.wallet_address_id = w.id WHERE p.id = $1",
        uuid.UUID(payment_id),
    )
    return f"{owner}/incoming-payments/{payment_id}"


def shown(receiver: str) -> str:
    """An incoming payment of this node named in its receiver form, as Quote.receiver and
    OutgoingPayment.receiver show it: by its Open Payments URL (Rafiki's ``url``)."""
    return f"{WALLET_BASE}/incoming-payments/{receiver.rsplit('/', 1)[1]}"


async def set_fee(admin: Admin, asset: str, fixed: int, basis_points: int) -> str:
    data = await admin.data(
        "mutation($input: SetFeeInput!) { setFee(input: $input) { fee { id } } }",
        {
            "input": {
                "assetId": asset,
                "type": "SENDING",
                "fee": {"fixed": str(fixed), "basisPoints": basis_points},
            }
        },
    )
    fee_id: str = data["setFee"]["fee"]["id"]
    return fee_id


async def quote_row(admin: Admin, quote_id: str) -> dict[str, Any]:
    row = await admin.pool.fetchrow("SELECT * FROM quotes WHERE id = $1", uuid.UUID(quote_id))
    assert row is not None
    return dict(row)


def rate(row: dict[str, Any], name: str) -> Fraction:
    return Fraction(int(row[f"{name}_numerator"]), int(row[f"{name}_denominator"]))


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def create_payment(admin: Admin, wallet: str, quote_id: str, **extra: Any) -> dict[str, Any]:
    data = await admin.data(
        CREATE_PAYMENT, {"input": {"walletAddressId": wallet, "quoteId": quote_id, **extra}}
    )
    payment: dict[str, Any] = data["createOutgoingPayment"]["payment"]
    return payment


async def events_of(admin: Admin, resource: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await admin.pool.fetch(
        "SELECT id, type, data FROM webhook_events WHERE resource_id = $1 ORDER BY seq",
        uuid.UUID(resource),
    )
    return [(r["type"], {**json.loads(r["data"]), "_event": str(r["id"])}) for r in rows]


async def deposit(admin: Admin, payment: str, key: str | None = None) -> dict[str, Any]:
    return await admin.execute(
        DEPOSIT,
        {"input": {"outgoingPaymentId": payment, "idempotencyKey": key or str(uuid.uuid4())}},
    )


# -- the fee formula ---------------------------------------------------------------------------


def test_the_sending_fee_formula_is_exact() -> None:
    for fixed in (0, 1, 7):
        for basis_points in (0, 1, 33, 100, 2500, 9999, 10_000):
            fee = SendingFee(None, fixed, basis_points)
            exact = {sent + fee.on(sent) for sent in range(0, 3000)}
            for debit in range(0, 2500):
                sent = fee.sendable(debit)
                if debit <= fixed:
                    assert sent == 0
                    continue
                assert sent + fee.on(sent) <= debit < sent + 1 + fee.on(sent + 1)
                leftover = debit - sent - fee.on(sent)
                assert leftover == (0 if debit in exact else 1), (fixed, basis_points, debit)


# -- local quoting -----------------------------------------------------------------------------


async def test_fixed_send_and_fixed_receive_in_one_currency(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    before = datetime.now(UTC)
    sent = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(1234))
    assert sent["walletAddressId"] == w.alice
    assert sent["receiver"] == f"{WALLET_BASE}/carol"
    assert sent["debitAmount"] == amount(1234)
    assert sent["receiveAmount"] == amount(1234)
    assert sent["estimatedExchangeRate"] == 1.0
    lifespan = moment(sent["expiresAt"]) - moment(sent["createdAt"])
    assert lifespan == timedelta(milliseconds=admin.backend.settings.quote_lifespan_ms)
    assert moment(sent["createdAt"]) >= before - timedelta(seconds=1)
    row = await quote_row(admin, sent["id"])
    assert rate(row, "low_estimated_exchange_rate") == 1
    assert rate(row, "high_estimated_exchange_rate") == 1
    assert rate(row, "min_exchange_rate") == Fraction(99, 100)
    assert row["fee_amount"] == 0 and row["fee_id"] is None
    assert row["max_packet_amount"] is None

    # A payment pointer and a trailing slash name the same wallet address.
    received = await quote(admin, w.alice, "$wallet.example/carol/", receive=amount(77, "USD", 2))
    assert received["receiver"] == f"{WALLET_BASE}/carol"
    # A fixed receive has the slippage's room: ceil(77 / 0.99) = 78.
    assert received["debitAmount"] == amount(78)
    assert received["receiveAmount"] == amount(77)
    read = await admin.data(
        f"query($id: String!) {{ quote(id: $id) {{ {QUOTE_FIELDS} }} }}", {"id": received["id"]}
    )
    assert read["quote"] == received
    missing = await admin.error(
        "query($id: String!) { quote(id: $id) { id } }", {"id": str(uuid.uuid4())}
    )
    assert missing.code == "NOT_FOUND"


async def test_cross_currency_rounds_toward_the_node(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    bob = f"{WALLET_BASE}/bob"
    fixed_send = await quote(admin, w.alice, bob, debit=amount(1001))
    # floor(1001 × 0.9) = 900
    assert fixed_send["receiveAmount"] == amount(900, "EUR")
    assert fixed_send["debitAmount"] == amount(1001)
    assert fixed_send["estimatedExchangeRate"] == 0.9
    row = await quote_row(admin, fixed_send["id"])
    assert rate(row, "low_estimated_exchange_rate") == Fraction(9, 10)
    assert rate(row, "min_exchange_rate") == Fraction(9, 10) * Fraction(99, 100)
    assert row["receive_asset_code"] == "EUR" and row["receive_asset_scale"] == 2

    # At the minimum rate (0.9 less the 1 % slippage): ceil(901 / 0.891) = 1012
    fixed_receive = await quote(admin, w.alice, bob, receive=amount(901, "EUR"))
    assert fixed_receive["debitAmount"] == amount(1012)
    assert fixed_receive["receiveAmount"] == amount(901, "EUR")

    # The other way, with the other base: 1.1 USD per EUR.
    back = await quote(admin, w.bob, f"{WALLET_BASE}/alice", debit=amount(1000, "EUR"))
    assert back["receiveAmount"] == amount(1100, "USD")

    # Scales count: EUR at scale 4 gets 0.9 × 10^2 of its units per cent.
    eur4 = await admin.create_asset("EUR", 4)
    dave = await create_wallet_address(admin, eur4, "/dave")
    scaled = await quote(admin, w.alice, f"{WALLET_BASE}/dave", debit=amount(1000))
    assert scaled["receiveAmount"] == amount(90000, "EUR", 4)
    assert scaled["estimatedExchangeRate"] == 90.0
    assert dave

    tiny = await admin.error(
        CREATE_QUOTE,
        {"input": {"walletAddressId": w.alice, "receiver": bob, "debitAmount": amount(1)}},
    )
    assert tiny.code == "BAD_USER_INPUT"
    # ceil(1 / 0.9) = 2 cents deliver one euro cent.
    assert tiny.errors[0]["extensions"]["minSendAmount"] == "2"


async def test_an_incoming_payment_is_paid_what_it_still_expects(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    target = await incoming_payment(admin, w.bob, amount(500, "EUR"), timedelta(seconds=60))
    whole = await quote(admin, w.alice, target)
    assert whole["receiver"] == shown(target) != target
    assert whole["receiveAmount"] == amount(500, "EUR")
    assert whole["debitAmount"] == amount(562)  # ceil(500 / 0.891), the minimum rate
    # The quote lives no longer than the incoming payment.
    payment_expiry = await admin.pool.fetchval(
        "SELECT expires_at FROM incoming_payments WHERE id = $1",
        uuid.UUID(target.rsplit("/", 1)[1]),
    )
    assert moment(whole["expiresAt"]) == payment_expiry.replace(
        microsecond=payment_expiry.microsecond // 1000 * 1000
    )

    await credit(admin, "INCOMING_PAYMENT", target.rsplit("/", 1)[1], 200)
    rest = await quote(admin, w.alice, target)
    assert rest["receiveAmount"] == amount(300, "EUR")
    assert rest["debitAmount"] == amount(337)  # ceil(300 / 0.891)
    fixed_send = await quote(admin, w.alice, target, debit=amount(100))
    assert fixed_send["receiveAmount"] == amount(90, "EUR")

    too_much = await admin.error(
        CREATE_QUOTE,
        {
            "input": {
                "walletAddressId": w.alice,
                "receiver": target,
                "receiveAmount": amount(301, "EUR"),
            }
        },
    )
    assert too_much.code == "BAD_USER_INPUT"
    too_much = await admin.error(
        CREATE_QUOTE,
        {"input": {"walletAddressId": w.alice, "receiver": target, "debitAmount": amount(400)}},
    )
    assert too_much.code == "BAD_USER_INPUT"

    # Neither amount needs an incoming payment that says how much it expects.
    open_ended = await incoming_payment(admin, w.bob)
    for receiver in (open_ended, f"{WALLET_BASE}/bob"):
        failure = await admin.error(
            CREATE_QUOTE, {"input": {"walletAddressId": w.alice, "receiver": receiver}}
        )
        assert failure.code == "BAD_USER_INPUT", receiver


async def test_the_sending_fee_is_charged_exactly(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    carol = f"{WALLET_BASE}/carol"
    await set_fee(admin, w.usd, 5, 200)  # replaced by the next one
    fee_id = await set_fee(admin, w.usd, 5, 100)  # 5 cents + 1%
    sent = await quote(admin, w.alice, carol, debit=amount(1000))
    # sent = floor(10000 × 995 / 10100) = 985; fee = 5 + ceil(9.85) = 15; 985 + 15 = 1000
    assert sent["receiveAmount"] == amount(985)
    row = await quote_row(admin, sent["id"])
    assert row["fee_amount"] == 15 and str(row["fee_id"]) == fee_id
    received = await quote(admin, w.alice, carol, receive=amount(985))
    # At most ceil(985 / 0.99) = 995 sent (the slippage's room); fee 5 + ceil(9.95) = 15
    assert received["debitAmount"] == amount(1010)

    # Cross currency: the fee is on what is sent, in the sender's asset.
    euros = await quote(admin, w.alice, f"{WALLET_BASE}/bob", receive=amount(900, "EUR"))
    # ceil(900 / 0.891) = 1011 at most sent, and 5 + ceil(10.11) of fee on it
    assert euros["debitAmount"] == amount(1011 + 5 + 11)

    too_small = await admin.error(
        CREATE_QUOTE,
        {"input": {"walletAddressId": w.alice, "receiver": carol, "debitAmount": amount(6)}},
    )
    assert too_small.code == "BAD_USER_INPUT"
    assert too_small.errors[0]["extensions"]["minSendAmount"] == "7"  # 1 + 5 + ceil(0.01)
    assert (await quote(admin, w.alice, carol, debit=amount(7)))["receiveAmount"] == amount(1)

    # A debit the basis points skip over: the unit left over is fee, never more than one.
    await set_fee(admin, w.usd, 0, 10_000)
    odd = await quote(admin, w.alice, carol, debit=amount(7))
    assert odd["receiveAmount"] == amount(3)
    assert (await quote_row(admin, odd["id"]))["fee_amount"] == 4
    # A fee on another asset is not ours.
    await set_fee(admin, w.eur, 1000, 0)
    assert (await quote(admin, w.alice, carol, debit=amount(8)))["receiveAmount"] == amount(4)


async def test_bad_quotes_are_typed_and_change_nothing(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    inactive = await create_wallet_address(admin, w.usd, "/gone")
    await admin.data(
        "mutation($id: ID!) { updateWalletAddress(input: {id: $id, status: INACTIVE})"
        " { walletAddress { id } } }",
        {"id": inactive},
    )
    jpy = await admin.create_asset("JPY", 0)
    await create_wallet_address(admin, jpy, "/yuki")
    done = await incoming_payment(admin, w.bob, amount(10, "EUR"))
    await credit(admin, "INCOMING_PAYMENT", done.rsplit("/", 1)[1], 10)
    cancelled = await incoming_payment(admin, w.bob)
    await admin.data(
        "mutation($id: ID!) { cancelIncomingPayment(input: {id: $id}) { payment { id } } }",
        {"id": cancelled.rsplit("/", 1)[1]},
    )
    of_another_wallet = done.replace("/bob/", "/carol/")
    await admin.pool.execute("DELETE FROM webhook_events")
    carol = f"{WALLET_BASE}/carol"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"walletAddressId": str(uuid.uuid4()), "debitAmount": amount(5)}, "NOT_FOUND"),
        ({"walletAddressId": "nope", "debitAmount": amount(5)}, "BAD_USER_INPUT"),
        ({"walletAddressId": inactive, "debitAmount": amount(5)}, "INACTIVE"),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiveAmount": amount(5)},
            "BAD_USER_INPUT",
        ),
        ({"walletAddressId": w.alice, "debitAmount": amount(0)}, "BAD_USER_INPUT"),
        ({"walletAddressId": w.alice, "receiveAmount": amount(0)}, "BAD_USER_INPUT"),
        ({"walletAddressId": w.alice, "debitAmount": amount(5, "EUR")}, "BAD_USER_INPUT"),
        ({"walletAddressId": w.alice, "debitAmount": amount(5, "USD", 3)}, "BAD_USER_INPUT"),
        ({"walletAddressId": w.alice, "receiveAmount": amount(5, "EUR")}, "BAD_USER_INPUT"),
        ({"walletAddressId": w.alice}, "BAD_USER_INPUT"),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": "not a url"},
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": ""},
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": f"{carol}?x=1"},
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": WALLET_BASE + "/x"},
            "BAD_USER_INPUT",
        ),
        (
            {
                "walletAddressId": w.alice,
                "debitAmount": amount(5),
                "receiver": WALLET_BASE + "/gone",
            },
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": done},
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": cancelled},
            "BAD_USER_INPUT",
        ),
        (
            {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": of_another_wallet},
            "BAD_USER_INPUT",
        ),
        (
            {
                "walletAddressId": w.alice,
                "debitAmount": amount(5),
                "receiver": f"{WALLET_BASE}/bob/incoming-payments/{uuid.uuid4()}",
            },
            "BAD_USER_INPUT",
        ),
        # No USD → JPY rate: the node cannot quote, and says so.
        (
            {
                "walletAddressId": w.alice,
                "debitAmount": amount(5),
                "receiver": WALLET_BASE + "/yuki",
            },
            "INTERNAL_SERVER_ERROR",
        ),
    ]
    for given, code in cases:
        failure = await admin.error(CREATE_QUOTE, {"input": {"receiver": carol, **given}})
        assert failure.code == code, given
        assert failure.errors[0]["message"] != "internal server error", given
    invalid = await admin.error(
        CREATE_QUOTE,
        {"input": {"walletAddressId": w.alice, "debitAmount": amount(5), "receiver": done}},
    )
    assert invalid.errors[0]["message"].startswith("invalid receiver")
    assert invalid.errors[0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "receiver",
        "quoteError": "InvalidReceiver",
    }
    assert await admin.pool.fetchval("SELECT count(*) FROM quotes") == 0
    assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 0
    assert await admin.pool.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert node.connector.requests == []


# -- remote quoting ----------------------------------------------------------------------------


def probe_answer(**changes: Any) -> dict[str, Any]:
    return {
        "receiveAssetCode": "EUR",
        "receiveAssetScale": 2,
        "lowEstimatedExchangeRate": "9/10",
        "highEstimatedExchangeRate": "1/1",
        "maxPacketAmount": "1000",
        "incomingAmount": None,
        "receivedAmount": None,
        "expiresAt": None,
        **changes,
    }


async def test_a_remote_receiver_is_quoted_by_the_connector(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    remote = "https://remote.example/bob"
    node.connector.answers[remote] = (200, probe_answer())
    node.connector.answers["$remote.example/bob"] = (200, probe_answer())
    sent = await quote(admin, w.alice, remote, debit=amount(1000))
    assert node.connector.requests == [{"receiver": remote, "assetCode": "USD", "assetScale": 2}]
    assert sent["receiver"] == remote
    assert sent["receiveAmount"] == amount(900, "EUR")
    row = await quote_row(admin, sent["id"])
    assert rate(row, "low_estimated_exchange_rate") == Fraction(9, 10)
    assert rate(row, "high_estimated_exchange_rate") == 1
    assert rate(row, "min_exchange_rate") == Fraction(891, 1000)
    assert row["max_packet_amount"] == 1000
    pointer = await quote(admin, w.alice, "$remote.example/bob", receive=amount(901, "EUR"))
    assert pointer["receiver"] == "$remote.example/bob"
    assert pointer["debitAmount"] == amount(1012)  # ceil(901 / 0.891)

    # A remote incoming payment: the rest of its amount, and no later than it expires.
    invoice = "https://remote.example/bob/incoming-payments/abc"
    expires = datetime.now(UTC) + timedelta(seconds=30)
    node.connector.answers[invoice] = (
        200,
        probe_answer(
            incomingAmount="1000",
            receivedAmount="400",
            expiresAt=expires.isoformat().replace("+00:00", "Z"),
        ),
    )
    rest = await quote(admin, w.alice, invoice)
    assert rest["receiveAmount"] == amount(600, "EUR")
    assert rest["debitAmount"] == amount(674)  # ceil(600 / 0.891)
    assert abs(moment(rest["expiresAt"]) - expires) < timedelta(milliseconds=2)

    # Refusals, typed, and nothing stored.
    count = await admin.pool.fetchval("SELECT count(*) FROM quotes")
    node.connector.answers["https://remote.example/probe-fails"] = (
        422,
        {"code": "RateProbeFailed", "message": "no exchange rate found"},
    )
    node.connector.answers["https://remote.example/paid"] = (
        200,
        probe_answer(incomingAmount="10", receivedAmount="10"),
    )
    node.connector.answers["https://remote.example/late"] = (
        200,
        probe_answer(expiresAt="2001-01-01T00:00:00.000Z"),
    )
    node.connector.answers["https://remote.example/broken"] = (
        200,
        probe_answer(lowEstimatedExchangeRate="0.9"),
    )
    node.connector.answers["https://remote.example/down"] = (503, {"message": "busy"})
    cases = [
        ("https://remote.example/unknown", {"debitAmount": amount(5)}, "BAD_USER_INPUT"),
        ("https://remote.example/probe-fails", {"debitAmount": amount(5)}, "BAD_USER_INPUT"),
        ("https://remote.example/paid", {}, "BAD_USER_INPUT"),
        ("https://remote.example/late", {"debitAmount": amount(5)}, "BAD_USER_INPUT"),
        (remote, {"receiveAmount": amount(5, "USD")}, "BAD_USER_INPUT"),
        (remote, {}, "BAD_USER_INPUT"),
        (remote, {"debitAmount": amount(1)}, "BAD_USER_INPUT"),
        ("https://remote.example/broken", {"debitAmount": amount(5)}, "INTERNAL_SERVER_ERROR"),
        ("https://remote.example/down", {"debitAmount": amount(5)}, "INTERNAL_SERVER_ERROR"),
    ]
    for receiver, amounts, code in cases:
        failure = await admin.error(
            CREATE_QUOTE, {"input": {"walletAddressId": w.alice, "receiver": receiver, **amounts}}
        )
        assert failure.code == code, receiver
    failure = await admin.error(
        CREATE_QUOTE,
        {
            "input": {
                "walletAddressId": w.alice,
                "receiver": "https://remote.example/probe-fails",
                "debitAmount": amount(5),
            }
        },
    )
    assert failure.errors[0]["extensions"]["quoteError"] == "RateProbeFailed"
    assert "no exchange rate found" in failure.errors[0]["message"]
    assert await admin.pool.fetchval("SELECT count(*) FROM quotes") == count


async def test_an_unreachable_connector_is_reported(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with sending_node(
        migrated_database, redis_server_url, redis_prefix, admin_api_secret=None
    ) as running:
        admin = running.admin
        w = await world(admin)
        # Unsigned without ADMIN_API_SECRET: the fake refuses, which reads as a failure.
        failure = await admin.error(
            CREATE_QUOTE,
            {
                "input": {
                    "walletAddressId": w.alice,
                    "receiver": "https://remote.example/bob",
                    "debitAmount": amount(5),
                }
            },
        )
        assert failure.code == "INTERNAL_SERVER_ERROR"
    async with sending_node(
        migrated_database,
        redis_server_url,
        redis_prefix + "x:",
        ilp_connector_url="http://127.0.0.1:9",
    ) as running:
        admin = running.admin
        alice = await admin.pool.fetchval(
            "SELECT id FROM wallet_addresses WHERE url LIKE '%/alice'"
        )
        failure = await admin.error(
            CREATE_QUOTE,
            {
                "input": {
                    "walletAddressId": str(alice),
                    "receiver": "https://remote.example/bob",
                    "debitAmount": amount(5),
                }
            },
        )
        assert failure.code == "INTERNAL_SERVER_ERROR"
        assert "connector" in failure.errors[0]["message"]


# -- outgoing payments -------------------------------------------------------------------------


async def test_create_an_outgoing_payment_with_its_event(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    q = await quote(admin, w.alice, f"{WALLET_BASE}/bob", debit=amount(1000))
    payment = await create_payment(admin, w.alice, q["id"], metadata={"description": "rent"})
    assert payment["state"] == "FUNDING"
    assert payment["walletAddressId"] == w.alice
    assert payment["receiver"] == f"{WALLET_BASE}/bob"
    assert payment["debitAmount"] == amount(1000)
    assert payment["receiveAmount"] == amount(900, "EUR")
    assert payment["sentAmount"] == amount(0)
    assert payment["liquidity"] == "0"
    assert payment["stateAttempts"] == 0
    assert payment["error"] is None and payment["grantId"] is None and payment["client"] is None
    assert payment["metadata"] == {"description": "rent"}
    assert payment["quote"] == {"id": q["id"]}
    ((kind, event),) = await events_of(admin, payment["id"])
    assert kind == "outgoing_payment.created"
    assert event == {
        "id": payment["id"],
        "walletAddressId": w.alice,
        "state": "FUNDING",
        "receiver": f"{WALLET_BASE}/bob",
        "debitAmount": amount(1000),
        "receiveAmount": amount(900, "EUR"),
        "sentAmount": amount(0),
        "createdAt": payment["createdAt"],
        "stateAttempts": 0,
        "metadata": {"description": "rent"},
        "_event": event["_event"],
    }
    read = await admin.data(READ_PAYMENT, {"id": payment["id"]})
    assert read["outgoingPayment"] == payment
    nested = await admin.data(
        f"query($id: String!) {{ outgoingPayment(id: $id) {{ quote {{ {QUOTE_FIELDS} }} }} }}",
        {"id": payment["id"]},
    )
    assert nested["outgoingPayment"]["quote"] == q

    duplicate = await admin.error(
        CREATE_PAYMENT, {"input": {"walletAddressId": w.alice, "quoteId": q["id"]}}
    )
    assert duplicate.code == "DUPLICATE"
    other = await quote(admin, w.alice, f"{WALLET_BASE}/bob", debit=amount(10))
    wrong_wallet = await admin.error(
        CREATE_PAYMENT, {"input": {"walletAddressId": w.carol, "quoteId": other["id"]}}
    )
    assert wrong_wallet.code == "BAD_USER_INPUT"
    unknown = await admin.error(
        CREATE_PAYMENT, {"input": {"walletAddressId": w.alice, "quoteId": str(uuid.uuid4())}}
    )
    assert unknown.code == "NOT_FOUND"
    bad = await admin.error(CREATE_PAYMENT, {"input": {"walletAddressId": w.alice, "quoteId": "q"}})
    assert bad.code == "BAD_USER_INPUT"
    huge = {"x": "y" * 20_000}
    too_big = await admin.error(
        CREATE_PAYMENT,
        {"input": {"walletAddressId": w.alice, "quoteId": other["id"], "metadata": huge}},
    )
    assert too_big.code == "BAD_USER_INPUT"
    await admin.data(
        "mutation($id: ID!) { updateWalletAddress(input: {id: $id, status: INACTIVE})"
        " { walletAddress { id } } }",
        {"id": w.alice},
    )
    inactive = await admin.error(
        CREATE_PAYMENT, {"input": {"walletAddressId": w.alice, "quoteId": other["id"]}}
    )
    assert inactive.code == "INACTIVE"
    missing = await admin.error(READ_PAYMENT, {"id": str(uuid.uuid4())})
    assert missing.code == "NOT_FOUND"
    assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 1


async def test_concurrent_payments_of_one_quote_make_one(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    q = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(100))
    # Each its own body: identical signed requests in one millisecond are refused as replays.
    bodies = await asyncio.gather(
        *(
            admin.execute(
                CREATE_PAYMENT,
                {"input": {"walletAddressId": w.alice, "quoteId": q["id"], "metadata": {"n": n}}},
            )
            for n in range(5)
        )
    )
    codes = sorted(
        b["errors"][0]["extensions"]["code"] if b.get("errors") else "OK" for b in bodies
    )
    assert codes == ["DUPLICATE"] * 4 + ["OK"]
    assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 1


async def test_an_expired_quote_makes_no_payment(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with sending_node(
        migrated_database, redis_server_url, redis_prefix, quote_lifespan_ms=300
    ) as running:
        admin = running.admin
        w = await world(admin)
        q = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(100))
        assert moment(q["expiresAt"]) - moment(q["createdAt"]) == timedelta(milliseconds=300)
        await asyncio.sleep(0.4)
        expired = await admin.error(
            CREATE_PAYMENT, {"input": {"walletAddressId": w.alice, "quoteId": q["id"]}}
        )
        assert expired.code == "BAD_USER_INPUT"
        assert expired.errors[0]["message"] == "quote expired"
        assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 0


async def test_funding_moves_the_payment_to_sending_once(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    q = await quote(admin, w.alice, f"{WALLET_BASE}/bob", debit=amount(1000))
    payment = await create_payment(admin, w.alice, q["id"])
    body = await deposit(admin, payment["id"], "fund-1")
    assert body == {"data": {"depositOutgoingPaymentLiquidity": {"success": True}}}
    # The same key replays; another key finds it funded.
    assert await deposit(admin, payment["id"], "fund-1") == body
    again = await deposit(admin, payment["id"], "fund-2")
    assert again["errors"][0]["extensions"]["code"] == "DUPLICATE"
    assert again["errors"][0]["extensions"]["liquidityError"] == "TransferExists"
    read = (await admin.data(READ_PAYMENT, {"id": payment["id"]}))["outgoingPayment"]
    assert read["state"] == "SENDING"
    assert read["liquidity"] == "1000"
    row = await admin.pool.fetchrow(
        "SELECT process_at, state FROM outgoing_payments WHERE id = $1", uuid.UUID(payment["id"])
    )
    # Due now, and never claimed: a connector's worker takes it first (NULLS FIRST) and sends
    # it without asking the receiver what it got already.
    assert row["state"] == "SENDING" and row["process_at"] is None
    transfers = await admin.data(
        "query($id: String!) { accountingTransfers(id: $id) { credits { amount transferType } } }",
        {"id": payment["id"]},
    )
    assert transfers["accountingTransfers"]["credits"] == [
        {"amount": "1000", "transferType": "DEPOSIT"}
    ]
    # A SENDING payment is no longer cancelled, and sending raised no event of ours.
    cancel = await admin.error(CANCEL, {"input": {"id": payment["id"]}})
    assert cancel.code == "CONFLICT"
    assert [k for k, _ in await events_of(admin, payment["id"])] == ["outgoing_payment.created"]
    early = await admin.error(
        WITHDRAW,
        {
            "input": {
                "outgoingPaymentId": payment["id"],
                "idempotencyKey": "w",
                "timeoutSeconds": "0",
            }
        },
    )
    assert early.code == "FORBIDDEN"
    unknown = await deposit(admin, str(uuid.uuid4()))
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_cancel_from_funding_only(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    q = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(100))
    payment = await create_payment(admin, w.alice, q["id"], metadata={"order": 7})
    data = await admin.data(CANCEL, {"input": {"id": payment["id"], "reason": "changed my mind"}})
    cancelled = data["cancelOutgoingPayment"]["payment"]
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["metadata"] == {"order": 7, "cancellationReason": "changed my mind"}
    kinds = await events_of(admin, payment["id"])
    assert [k for k, _ in kinds] == ["outgoing_payment.created", "outgoing_payment.cancelled"]
    event = kinds[1][1]
    assert event["state"] == "CANCELLED"
    assert event["metadata"]["cancellationReason"] == "changed my mind"
    assert "withdrawal" not in event
    again = await admin.error(CANCEL, {"input": {"id": payment["id"]}})
    assert again.code == "CONFLICT"
    unknown = await admin.error(CANCEL, {"input": {"id": str(uuid.uuid4())}})
    assert unknown.code == "NOT_FOUND"
    late = await deposit(admin, payment["id"])
    assert late["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    nothing = await admin.error(
        WITHDRAW,
        {
            "input": {
                "outgoingPaymentId": payment["id"],
                "idempotencyKey": "w",
                "timeoutSeconds": "0",
            }
        },
    )
    assert nothing.code == "BAD_USER_INPUT"
    assert nothing.errors[0]["extensions"]["liquidityError"] == "AmountZero"

    # Without a reason the metadata stays as it was.
    q2 = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(100))
    bare = await create_payment(admin, w.alice, q2["id"])
    data = await admin.data(CANCEL, {"input": {"id": bare["id"]}})
    assert data["cancelOutgoingPayment"]["payment"]["metadata"] is None


async def test_what_is_left_of_an_ended_payment_is_withdrawn(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    q = await quote(admin, w.alice, f"{WALLET_BASE}/carol", debit=amount(1000))
    payment = await create_payment(admin, w.alice, q["id"])
    await deposit(admin, payment["id"])
    payment_id = uuid.UUID(payment["id"])
    # The connector's worker, as the contract has it: it sent 700 and ends the payment
    # COMPLETED with its event, written with the same data helper.
    from kiungo.ledger import AccountKind, account_id_for

    ledger = admin.backend.ledger
    await ledger.withdraw(
        uuid.uuid4(), account_id_for(AccountKind.OUTGOING_PAYMENT, payment_id), 700
    )
    async with admin.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE outgoing_payments SET state = 'COMPLETED', sent_amount = 700 WHERE id = $1",
            payment_id,
        )
        row = await OUTGOING_PAYMENT_EVENT_ROW.fetchrow(conn, id=payment_id)
        assert row is not None
        event_id = await insert_event(
            conn,
            EventType.OUTGOING_PAYMENT_COMPLETED,
            payment_id,
            outgoing_payment_data(row),
            withdrawal=(
                account_id_for(AccountKind.OUTGOING_PAYMENT, payment_id),
                row["asset_id"],
                300,
            ),
        )
    read = (await admin.data(READ_PAYMENT, {"id": payment["id"]}))["outgoingPayment"]
    assert read["state"] == "COMPLETED"
    assert read["sentAmount"] == amount(700)
    assert read["liquidity"] == "300"
    (_, completed) = (await events_of(admin, payment["id"]))[1]
    assert completed["sentAmount"] == amount(700) and completed["state"] == "COMPLETED"

    given = {"outgoingPaymentId": payment["id"], "idempotencyKey": "w1", "timeoutSeconds": "60"}
    done = await admin.data(WITHDRAW, {"input": given})
    assert done["createOutgoingPaymentWithdrawal"]["success"] is True
    assert await admin.data(WITHDRAW, {"input": given}) == done  # replayed
    held = (await admin.data(READ_PAYMENT, {"id": payment["id"]}))["outgoingPayment"]
    assert held["liquidity"] == "0"
    # Two-phase: its id is the event's, as for incoming payments.
    post = await admin.data(
        "mutation($id: String!) { postLiquidityWithdrawal("
        'input: {withdrawalId: $id, idempotencyKey: "p1"}) { success } }',
        {"id": str(event_id)},
    )
    assert post["postLiquidityWithdrawal"]["success"] is True
    empty = await admin.error(
        WITHDRAW, {"input": {**given, "idempotencyKey": "w2", "timeoutSeconds": "0"}}
    )
    assert empty.code == "BAD_USER_INPUT"
    unknown = await admin.error(
        WITHDRAW,
        {"input": {**given, "outgoingPaymentId": str(uuid.uuid4()), "idempotencyKey": "w3"}},
    )
    assert unknown.code == "NOT_FOUND"


async def test_pay_an_incoming_payment_in_one_step(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    target = await incoming_payment(admin, w.bob, amount(450, "EUR"))
    data = await admin.data(
        FROM_INCOMING,
        {
            "input": {
                "walletAddressId": w.alice,
                "incomingPayment": target,
                "metadata": {"invoice": "A-1"},
                "idempotencyKey": "pay-a1",
            }
        },
    )
    payment = data["createOutgoingPaymentFromIncomingPayment"]["payment"]
    assert payment["state"] == "FUNDING"
    assert payment["receiver"] == shown(target) != target
    assert payment["receiveAmount"] == amount(450, "EUR")
    assert payment["debitAmount"] == amount(506)  # ceil(450 / 0.891)
    assert payment["metadata"] == {"invoice": "A-1"}
    again = await admin.data(
        FROM_INCOMING,
        {
            "input": {
                "walletAddressId": w.alice,
                "incomingPayment": target,
                "metadata": {"invoice": "A-1"},
                "idempotencyKey": "pay-a1",
            }
        },
    )
    assert again["createOutgoingPaymentFromIncomingPayment"]["payment"] == payment
    assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 1

    part = await admin.data(
        FROM_INCOMING,
        {
            "input": {
                "walletAddressId": w.alice,
                "incomingPayment": target,
                "debitAmount": amount(100),
            }
        },
    )
    assert part["createOutgoingPaymentFromIncomingPayment"]["payment"]["receiveAmount"] == amount(
        90, "EUR"
    )
    open_ended = await incoming_payment(admin, w.bob)
    failure = await admin.error(
        FROM_INCOMING, {"input": {"walletAddressId": w.alice, "incomingPayment": open_ended}}
    )
    assert failure.code == "BAD_USER_INPUT"


async def test_pages_and_filters(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    ids: list[str] = []
    for receiver in ("/bob", "/carol", "/carol"):
        q = await quote(admin, w.alice, WALLET_BASE + receiver, debit=amount(100))
        ids.append((await create_payment(admin, w.alice, q["id"]))["id"])
    q = await quote(admin, w.carol, WALLET_BASE + "/bob", debit=amount(100))
    ids.append((await create_payment(admin, w.carol, q["id"]))["id"])
    await deposit(admin, ids[1])

    async def listed(args: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        declared = ", ".join(f"${name}: [String!]!" for name in variables or {})
        data = await admin.data(
            f"query{f'({declared})' if declared else ''} {{ outgoingPayments({args}) {{"
            " pageInfo { hasNextPage hasPreviousPage endCursor }"
            " edges { cursor node { id state } } } }",
            variables,
        )
        result: dict[str, Any] = data["outgoingPayments"]
        return result

    everything = await listed("first: 10")
    assert [e["node"]["id"] for e in everything["edges"]] == ids[::-1]
    first = await listed("first: 2")
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await admin.data(
        "query($after: String!) { outgoingPayments(first: 10, after: $after) {"
        " pageInfo { hasPreviousPage } edges { node { id } } } }",
        {"after": first["pageInfo"]["endCursor"]},
    )
    assert [e["node"]["id"] for e in rest["outgoingPayments"]["edges"]] == ids[1::-1]
    ascending = await listed("sortOrder: ASC")
    assert [e["node"]["id"] for e in ascending["edges"]] == ids
    by_wallet = await listed("filter: {walletAddressId: {in: $w}}", {"w": [w.carol]})
    assert [e["node"]["id"] for e in by_wallet["edges"]] == [ids[3]]
    by_receiver = await listed("filter: {receiver: {in: $r}}", {"r": [WALLET_BASE + "/carol"]})
    assert [e["node"]["id"] for e in by_receiver["edges"]] == [ids[2], ids[1]]
    by_state = await listed('filter: {state: {in: ["SENDING"]}}')
    assert [e["node"] for e in by_state["edges"]] == [{"id": ids[1], "state": "SENDING"}]
    failure = await admin.error(
        '{ outgoingPayments(filter: {state: {in: ["LOST"]}}) { edges { cursor } } }'
    )
    assert failure.code == "BAD_USER_INPUT"
    combined = await admin.data(
        '{ payments(filter: {type: {in: ["OUTGOING"]}}) { edges { node { id type liquidity } } } }'
    )
    assert {e["node"]["id"] for e in combined["payments"]["edges"]} == set(ids)


async def test_idempotent_quotes_and_payments(node: Node) -> None:
    admin = node.admin
    w = await world(admin)
    carol = f"{WALLET_BASE}/carol"
    first = await quote(admin, w.alice, carol, debit=amount(100), key="q-1")
    again = await quote(admin, w.alice, carol, debit=amount(100), key="q-1")
    assert first == again
    conflict = await admin.error(
        CREATE_QUOTE,
        {
            "input": {
                "walletAddressId": w.alice,
                "receiver": carol,
                "debitAmount": amount(101),
                "idempotencyKey": "q-1",
            }
        },
    )
    assert conflict.code == "CONFLICT"
    assert await admin.pool.fetchval("SELECT count(*) FROM quotes") == 1
    made = await create_payment(admin, w.alice, first["id"], idempotencyKey="p-1")
    replayed = await create_payment(admin, w.alice, first["id"], idempotencyKey="p-1")
    assert made == replayed
    assert await admin.pool.fetchval("SELECT count(*) FROM outgoing_payments") == 1
    cancel = {"id": made["id"], "reason": "r", "idempotencyKey": "c-1"}
    one = await admin.data(CANCEL, {"input": cancel})
    two = await admin.data(CANCEL, {"input": cancel})
    assert one == two
    assert len(await events_of(admin, made["id"])) == 2
