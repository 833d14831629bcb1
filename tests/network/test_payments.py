"""Sending money across full Kiungo nodes (real `kiungo connector` + `kiungo backend` processes,
each with its own database and Redis key prefix), set up and paid only through the admin API:
quote, outgoing payment, funding, then the connector's worker sends it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from tests.network.harness import (
    FullNode,
    GraphQLError,
    create_outgoing_payment,
    create_quote,
    free_port,
    full_node,
    incoming_payment,
    liquidity,
    money,
    packets_answered,
    pay,
    peer_both_ways,
    rates_service,
    stop_service,
    wait_incoming_payment,
    wait_outgoing_payment,
    webhook_events,
)

from kiungo.ledger import AccountKind, account_id_for

pytestmark = pytest.mark.interop

# Small packets, so that every payment here takes several.
MAX_PACKET = 100


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


async def _ledgers_check(*nodes: FullNode) -> None:
    """`kiungo ledger check` passes on every node."""
    checks = await asyncio.gather(*(node.ledger_check() for node in nodes))
    for node, (code, report) in zip(nodes, checks, strict=True):
        assert code == 0, f"{node.name}: {report}"


async def test_fixed_send_to_a_wallet_address_on_another_node(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """USD to USD, fixed send (debitAmount) to bob's wallet address URL on B: B's wallet
    address receives exactly the quote's receive amount, the peers' balances move by exactly
    what was sent."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        a_peer, b_peer = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        a_packets = await packets_answered(a)

        quote = await create_quote(a, alice, bob_url, debit=money(1234, "USD"))
        assert quote["receiver"] == bob_url
        assert quote["debitAmount"] == money(1234, "USD")
        # The same currency on both sides: the probed rate is exactly 1.
        assert quote["receiveAmount"] == {"value": "1234", "assetCode": "USD", "assetScale": 2}
        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)

        assert view["state"] == "COMPLETED", view
        assert view["error"] is None
        assert view["sentAmount"] == {"value": "1234", "assetCode": "USD"}
        assert int(view["liquidity"] or 0) == 0  # nothing left over: no fee, rate 1
        assert await liquidity(b, "walletAddress", bob) == 1234
        assert await liquidity(a, "peer", a_peer) == 1_000_000 + 1234
        assert await liquidity(b, "peer", b_peer) == 1_000_000 - 1234
        assert await liquidity(b, "asset", b_usd) == 0  # same asset: no liquidity moved
        # It went over ILP: at least ceil(1234 / 100) fulfilled packets.
        assert await packets_answered(a) - a_packets >= 13
        await _ledgers_check(a, b)


async def test_fixed_receive_across_currencies_to_an_incoming_payment(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """A holds USD, B EUR; they are peered in USD and B converts (1 USD = 0.9 EUR). A quote for
    exactly 450 EUR into bob's incoming payment debits what 450 costs at the minimum rate
    (0.9 less the 1 % slippage): ceil(450 / 0.891) = 506 USD cents. The incoming payment
    completes with exactly 450, which took 500 to send; the 6 left are withdrawable."""
    async with (
        rates_service() as rates,
        full_node("alpha", postgres_server_url, redis_server_url, client, rates_url=rates) as a,
        full_node("beta", postgres_server_url, redis_server_url, client, rates_url=rates) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        b_eur = await b.create_asset("EUR", liquidity=1_000_000)
        a_peer, b_peer = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_eur, "/bob")
        incoming = await b.create_incoming_payment(bob, 450, "EUR")
        receiver = f"{bob_url}/incoming-payments/{incoming}"

        quote = await create_quote(a, alice, receiver, receive=money(450, "EUR"))
        assert quote["receiveAmount"] == money(450, "EUR")
        assert quote["debitAmount"] == money(506, "USD")
        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)

        assert view["state"] == "COMPLETED", view
        sent = int(view["sentAmount"]["value"])
        assert sent == 500  # packets of 100 at 0.9 deliver 90 each: nothing lost to rounding
        assert int(view["liquidity"] or 0) == 506 - sent
        received = await wait_incoming_payment(b, incoming)
        assert received["receivedAmount"] == {"value": "450", "assetCode": "EUR"}
        assert await liquidity(a, "peer", a_peer) == 1_000_000 + sent
        assert await liquidity(b, "peer", b_peer) == 1_000_000 - sent
        assert await liquidity(b, "asset", b_usd) == sent  # B took the USD ...
        assert await liquidity(b, "asset", b_eur) == 1_000_000 - 450  # ... and paid EUR
        events = [event["type"] for event in await webhook_events(a, payment)]
        assert events == ["outgoing_payment.created", "outgoing_payment.completed"]
        completed = (await webhook_events(a, payment))[-1]["data"]
        assert completed["state"] == "COMPLETED"
        assert completed["sentAmount"]["value"] == str(sent)
        await _ledgers_check(a, b)


_RECEIVER = (
    "query($id: String!) { receiver(id: $id) { id walletAddressUrl completed"
    " incomingAmount { value assetCode assetScale } receivedAmount { value assetCode assetScale }"
    " expiresAt createdAt } }"
)


async def test_another_nodes_incoming_payment_is_read_quoted_and_paid_by_what_it_expects(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """B's incoming payment expects 3.00 USD and has been paid 0.40 locally. A reads it as a
    receiver (from B, over HTTP), quotes it without naming an amount (so for the 2.60 it still
    expects), pays, and reads it again: completed with 3.00. A second quote is refused."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        carol, _ = await b.create_wallet(b_usd, "/carol")
        incoming = await b.create_incoming_payment(bob, 300, "USD")
        url = f"{bob_url}/incoming-payments/{incoming}"
        local = await create_quote(b, carol, url, debit=money(40, "USD"))
        await wait_outgoing_payment(b, await pay(b, carol, local["id"]))

        # What B tells whoever knows the URL (plain JSON; SPSP stays on the same URL).
        answer = await client.get(url, headers={"Accept": "application/json"})
        assert answer.status_code == 200, answer.text
        told = answer.json()
        assert told["id"] == url and told["walletAddress"] == bob_url
        assert told["incomingAmount"] == {"value": "300", "assetCode": "USD", "assetScale": 2}
        assert told["receivedAmount"] == {"value": "40", "assetCode": "USD", "assetScale": 2}
        assert told["completed"] is False

        read = (await a.gql(_RECEIVER, {"id": url}))["receiver"]
        assert read["id"] == url and read["walletAddressUrl"] == bob_url
        assert read["incomingAmount"] == {"value": "300", "assetCode": "USD", "assetScale": 2}
        assert read["receivedAmount"] == {"value": "40", "assetCode": "USD", "assetScale": 2}
        assert read["completed"] is False and read["expiresAt"] and read["createdAt"]

        quote = await create_quote(a, alice, url)
        assert quote["receiveAmount"] == money(260, "USD")
        assert quote["debitAmount"] == money(263, "USD")  # ceil(260 / 0.99)
        view = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))
        assert view["state"] == "COMPLETED", view
        assert view["sentAmount"] == {"value": "260", "assetCode": "USD"}

        read = (await a.gql(_RECEIVER, {"id": url}))["receiver"]
        assert read["completed"] is True
        assert read["receivedAmount"] == {"value": "300", "assetCode": "USD", "assetScale": 2}
        completed = await client.get(url, headers={"Accept": "application/json"})
        assert completed.json()["completed"] is True
        spsp = await client.get(url, headers={"Accept": "application/spsp4+json"})
        assert spsp.status_code == 404  # completed: no more credentials
        with pytest.raises(GraphQLError) as refused:
            await create_quote(a, alice, url)
        assert refused.value.errors[0]["extensions"]["quoteError"] == "InvalidReceiver"

        unknown = f"{bob_url}/incoming-payments/{uuid.uuid4()}"
        with pytest.raises(GraphQLError) as missing:
            await a.gql(_RECEIVER, {"id": unknown})
        assert missing.value.code == "NOT_FOUND", missing.value.errors
        await _ledgers_check(a, b)


async def test_payment_pointers_are_https_only(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """A payment pointer stands for an https URL without a port (RFC 26), so
    `$127.0.0.1:<port>/bob` names no node here (the nodes serve plain http on a port): the
    quote is refused with a typed InvalidReceiver error. The pointer's http URL pays."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, alice_url = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        carol, _ = await a.create_wallet(a_usd, "/carol")

        for pointer in (
            "$" + bob_url.removeprefix("http://"),  # $127.0.0.1:<port>/bob, on B
            "$" + alice_url.removeprefix("http://").replace("/alice", "/carol"),  # on A itself
        ):
            with pytest.raises(GraphQLError) as refused:
                await create_quote(a, alice, pointer, debit=money(100, "USD"))
            assert refused.value.code == "BAD_USER_INPUT", refused.value.errors
            extensions = refused.value.errors[0]["extensions"]
            assert extensions["quoteError"] == "InvalidReceiver", refused.value.errors
            assert "port" in refused.value.errors[0]["message"], refused.value.errors

        quote = await create_quote(a, alice, bob_url, debit=money(250, "USD"))
        view = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))
        assert view["state"] == "COMPLETED", view
        assert await liquidity(b, "walletAddress", bob) == 250
        assert await liquidity(a, "walletAddress", carol) == 0
        await _ledgers_check(a, b)


async def test_through_an_intermediate_connector(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """A → B → C: A's peer B carries a route to test.gamma, B forwards to its peer C (its
    static address). A pays an incoming payment on C; every node's books move by the amount."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
        full_node("gamma", postgres_server_url, redis_server_url, client) as c,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        c_usd = await c.create_asset("USD")
        a_to_b, b_to_a = await peer_both_ways(
            a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET, a_routes=[c.ilp_address]
        )
        # (C's peer B routes test.alpha back through B; nothing here needs it.)
        b_to_c, c_to_b = await peer_both_ways(
            b, b_usd, c, c_usd, max_packet_amount=MAX_PACKET, b_routes=[a.ilp_address]
        )
        alice, _ = await a.create_wallet(a_usd, "/alice")
        carol, carol_url = await c.create_wallet(c_usd, "/carol")
        incoming = await c.create_incoming_payment(carol, 700, "USD")
        b_packets = await packets_answered(b)

        quote = await create_quote(
            a, alice, f"{carol_url}/incoming-payments/{incoming}", receive=money(700, "USD")
        )
        assert quote["debitAmount"] == money(708, "USD")  # ceil(700 / 0.99): the slippage's room
        view = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))

        assert view["state"] == "COMPLETED", view
        assert view["sentAmount"]["value"] == "700"
        assert view["liquidity"] == "8"
        received = await wait_incoming_payment(c, incoming)
        assert received["receivedAmount"]["value"] == "700"
        assert await liquidity(a, "peer", a_to_b) == 1_000_000 + 700
        assert await liquidity(b, "peer", b_to_a) == 1_000_000 - 700
        assert await liquidity(b, "peer", b_to_c) == 1_000_000 + 700
        assert await liquidity(c, "peer", c_to_b) == 1_000_000 - 700
        assert await liquidity(b, "asset", b_usd) == 0
        # B forwarded the packets (at least 7 fulfilled, besides the probes').
        assert await packets_answered(b) - b_packets >= 7
        await _ledgers_check(a, b, c)


async def test_a_local_payment_sends_no_packets(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """Both wallet addresses on A: the quote, the payment and the delivery happen in A's ledger
    only (A's connector answers no ILP packet), with exact amounts, in the same currency and
    across currencies (through A's assets' liquidity)."""
    async with (
        rates_service() as rates,
        full_node("alpha", postgres_server_url, redis_server_url, client, rates_url=rates) as a,
    ):
        a_usd = await a.create_asset("USD", liquidity=10_000)
        a_eur = await a.create_asset("EUR", liquidity=10_000)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        carol, carol_url = await a.create_wallet(a_usd, "/carol")
        dave, dave_url = await a.create_wallet(a_eur, "/dave")
        incoming = await a.create_incoming_payment(dave, 450, "EUR")
        before = await packets_answered(a)

        # Same currency, fixed send, to a wallet address.
        quote = await create_quote(a, alice, carol_url, debit=money(300, "USD"))
        assert quote["receiveAmount"] == money(300, "USD")
        first = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))
        assert first["state"] == "COMPLETED", first
        assert first["sentAmount"]["value"] == "300"
        assert await liquidity(a, "walletAddress", carol) == 300

        # Across currencies, neither amount given: what the incoming payment expects.
        quote = await create_quote(a, alice, f"{dave_url}/incoming-payments/{incoming}")
        assert quote["receiveAmount"] == money(450, "EUR")
        assert quote["debitAmount"] == money(506, "USD")  # ceil(450 / (0.9 × 0.99))
        second = await wait_outgoing_payment(a, await pay(a, alice, quote["id"]))
        assert second["state"] == "COMPLETED", second
        # One transfer of what 450 EUR costs at the quote's rate; the slippage's room stays.
        assert second["sentAmount"]["value"] == "500"
        assert second["liquidity"] == "6"
        received = await wait_incoming_payment(a, incoming)
        assert received["receivedAmount"] == {"value": "450", "assetCode": "EUR"}
        assert await liquidity(a, "asset", a_usd) == 10_000 + 500
        assert await liquidity(a, "asset", a_eur) == 10_000 - 450

        assert await packets_answered(a) == before  # no ILP at all
        await _ledgers_check(a)


async def test_a_sending_fee_stays_with_the_sending_node(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """A charges a sending fee (25 cents + 150 basis points). Debiting 1040 USD cents sends 1000
    to B and charges 25 + ceil(1000 × 1.5%) = 40 of fee. The fee is never sent: it stays in
    the payment's ledger account on A (its `liquidity`, offered as the completed event's
    `withdrawal`) until createOutgoingPaymentWithdrawal moves it to A's
    settlement account."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        a_peer, _ = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        await a.gql(
            "mutation($i: SetFeeInput!) { setFee(input: $i) { fee { id } } }",
            {"i": {"assetId": a_usd, "type": "SENDING",
                   "fee": {"fixed": "25", "basisPoints": 150}}},
        )  # fmt: skip

        # A fixed send of 1040 buys 1000: floor(10000 × 1015 / 10150).
        quote = await create_quote(a, alice, bob_url, debit=money(1040, "USD"))
        assert quote["receiveAmount"]["value"] == "1000"
        # Receiving the same 1000 has the slippage's room besides: at most ceil(1000 / 0.99)
        # = 1011 sent, and the fee on that, 25 + ceil(1011 × 1.5%) = 41.
        fixed_receive = await create_quote(a, alice, bob_url, receive=money(1000, "USD"))
        assert fixed_receive["debitAmount"] == money(1052, "USD")
        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)

        assert view["state"] == "COMPLETED", view
        assert view["sentAmount"]["value"] == "1000"
        assert await liquidity(b, "walletAddress", bob) == 1000
        assert await liquidity(a, "peer", a_peer) == 1_000_000 + 1000
        # The fee, on A, in the payment's account.
        assert view["liquidity"] == "40"
        completed = (await webhook_events(a, payment))[-1]
        assert completed["type"] == "outgoing_payment.completed"
        assert completed["data"]["withdrawal"]["amount"] == "40"

        await a.gql(
            "mutation($i: CreateOutgoingPaymentWithdrawalInput!) {"
            " createOutgoingPaymentWithdrawal(input: $i) { success } }",
            {"i": {"outgoingPaymentId": payment, "idempotencyKey": str(uuid.uuid4()),
                   "timeoutSeconds": 0}},
        )  # fmt: skip
        assert await liquidity(a, "outgoingPayment", payment) == 0
        settlement = str(account_id_for(AccountKind.SETTLEMENT, uuid.UUID(a_usd)))
        moved = await a.gql(
            "query($id: String!) { accountingTransfers(id: $id) { credits { amount"
            " debitAccountId transferType state } } }",
            {"id": settlement},
        )
        payment_account = str(account_id_for(AccountKind.OUTGOING_PAYMENT, uuid.UUID(payment)))
        assert {
            "amount": "40",
            "debitAccountId": payment_account,
            "transferType": "WITHDRAWAL",
            "state": "POSTED",
        } in moved["accountingTransfers"]["credits"]
        await _ledgers_check(a, b)


async def test_a_receiver_that_is_gone_cannot_be_quoted(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """A wallet address B does not have, a node that is not there, and B with its connector
    stopped: each quote is refused with BAD_USER_INPUT / InvalidReceiver and nothing moves."""
    async with (
        full_node("alpha", postgres_server_url, redis_server_url, client) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        _, bob_url = await b.create_wallet(b_usd, "/bob")

        for receiver in (
            f"{b.connector_url}/nobody",
            f"http://127.0.0.1:{free_port()}/bob",
            f"{bob_url}/incoming-payments/{uuid.uuid4()}",
        ):
            with pytest.raises(GraphQLError) as refused:
                await create_quote(a, alice, receiver, debit=money(100, "USD"))
            assert refused.value.code == "BAD_USER_INPUT", refused.value.errors
            assert refused.value.errors[0]["extensions"]["quoteError"] == "InvalidReceiver"

        await stop_service(b, "connector")
        with pytest.raises(GraphQLError) as refused:
            await create_quote(a, alice, bob_url, debit=money(100, "USD"))
        assert refused.value.code == "BAD_USER_INPUT", refused.value.errors
        assert refused.value.errors[0]["extensions"]["quoteError"] == "InvalidReceiver"
        await _ledgers_check(a)


async def test_an_expired_quote_cannot_be_paid(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """With QUOTE_LIFESPAN of a second, a quote paid two seconds later is refused."""
    async with full_node(
        "alpha", postgres_server_url, redis_server_url, client,
        extra_env={"QUOTE_LIFESPAN": "1000"},
    ) as a:  # fmt: skip
        a_usd = await a.create_asset("USD")
        alice, _ = await a.create_wallet(a_usd, "/alice")
        _, carol_url = await a.create_wallet(a_usd, "/carol")
        quote = await create_quote(a, alice, carol_url, debit=money(100, "USD"))
        await asyncio.sleep(1.5)
        with pytest.raises(GraphQLError) as refused:
            await create_outgoing_payment(a, alice, quote["id"])
        assert refused.value.code == "BAD_USER_INPUT", refused.value.errors
        assert "expired" in refused.value.errors[0]["message"]


async def test_a_payment_whose_rate_fell_below_its_minimum_fails_and_is_refunded(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """Quoted at 0.9 EUR per USD (minimum 0.891 with the 1 % slippage); before it is paid, B's
    rate falls to 0.85. Every packet is refused by the receiver for delivering less than its
    minimum: the payment ends FAILED with the reason, nothing delivered, its debit withdrawable.
    """
    table = {
        "USD": {"USD": Decimal(1), "EUR": Decimal("0.9")},
        "EUR": {"EUR": Decimal(1), "USD": 1 / Decimal("0.9")},
    }
    fast = {"EXCHANGE_RATES_LIFETIME": "0", "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS": "1"}
    async with (
        rates_service(table) as rates,
        full_node(
            "alpha", postgres_server_url, redis_server_url, client, rates_url=rates,
            extra_env=fast,
        ) as a,
        full_node(
            "beta", postgres_server_url, redis_server_url, client, rates_url=rates,
            extra_env=fast,
        ) as b,
    ):  # fmt: skip
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        b_eur = await b.create_asset("EUR", liquidity=1_000_000)
        a_peer, b_peer = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_eur, "/bob")
        incoming = await b.create_incoming_payment(bob, 450, "EUR")
        quote = await create_quote(
            a, alice, f"{bob_url}/incoming-payments/{incoming}", receive=money(450, "EUR")
        )
        debit = int(quote["debitAmount"]["value"])

        table["USD"]["EUR"] = Decimal("0.85")
        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)
        assert view["state"] == "FAILED", view
        assert "minimum" in view["error"], view
        assert view["sentAmount"]["value"] == "0"
        assert view["liquidity"] == str(debit)
        failed = (await webhook_events(a, payment))[-1]
        assert failed["type"] == "outgoing_payment.failed"
        assert failed["data"]["withdrawal"]["amount"] == str(debit)
        assert (await incoming_payment(b, incoming))["receivedAmount"]["value"] == "0"
        assert await liquidity(a, "peer", a_peer) == 1_000_000
        assert await liquidity(b, "peer", b_peer) == 1_000_000
        await _ledgers_check(a, b)


async def test_a_payment_whose_receiver_went_away_fails_and_is_refunded(
    postgres_server_url: str, redis_server_url: str, client: httpx.AsyncClient
) -> None:
    """B's incoming payment is cancelled right after A quoted it (within the second B's
    connector caches what the quote's probe looked up: the cancel tells it to forget): A's
    payment ends FAILED with an error (after its one retry), nothing was sent, and its whole
    debit is withdrawn back to A's settlement account."""
    async with (
        full_node(
            "alpha", postgres_server_url, redis_server_url, client,
            extra_env={"MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS": "1"},
        ) as a,
        full_node("beta", postgres_server_url, redis_server_url, client) as b,
    ):  # fmt: skip
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        a_peer, b_peer = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice, _ = await a.create_wallet(a_usd, "/alice")
        bob, bob_url = await b.create_wallet(b_usd, "/bob")
        incoming = await b.create_incoming_payment(bob, 500, "USD")
        quote = await create_quote(
            a, alice, f"{bob_url}/incoming-payments/{incoming}", receive=money(500, "USD")
        )
        assert quote["debitAmount"] == money(506, "USD")  # ceil(500 / 0.99)
        cancelled = await b.gql(
            "mutation($i: CancelIncomingPaymentInput!) { cancelIncomingPayment(input: $i)"
            " { payment { state } } }",
            {"i": {"id": incoming}},
        )
        assert cancelled["cancelIncomingPayment"]["payment"]["state"] == "EXPIRED"

        payment = await pay(a, alice, quote["id"])
        view = await wait_outgoing_payment(a, payment)
        assert view["state"] == "FAILED", view
        assert view["error"], view
        assert view["sentAmount"]["value"] == "0"
        assert view["liquidity"] == "506"
        failed = (await webhook_events(a, payment))[-1]
        assert failed["type"] == "outgoing_payment.failed"
        assert failed["data"]["withdrawal"]["amount"] == "506"

        await a.gql(
            "mutation($i: CreateOutgoingPaymentWithdrawalInput!) {"
            " createOutgoingPaymentWithdrawal(input: $i) { success } }",
            {"i": {"outgoingPaymentId": payment, "idempotencyKey": str(uuid.uuid4()),
                   "timeoutSeconds": 0}},
        )  # fmt: skip
        assert await liquidity(a, "outgoingPayment", payment) == 0
        settlement = str(account_id_for(AccountKind.SETTLEMENT, uuid.UUID(a_usd)))
        moved = await a.gql(
            "query($id: String!) { accountingTransfers(id: $id) { credits { amount"
            " transferType } debits { amount transferType } } }",
            {"id": settlement},
        )
        # The funding left the settlement account and the withdrawal brought it back.
        assert {"amount": "506", "transferType": "WITHDRAWAL"} in moved["accountingTransfers"][
            "credits"
        ]
        assert await liquidity(a, "peer", a_peer) == 1_000_000
        assert await liquidity(b, "peer", b_peer) == 1_000_000
        assert (await incoming_payment(b, incoming))["receivedAmount"]["value"] == "0"
        await _ledgers_check(a, b)
