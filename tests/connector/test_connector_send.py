"""Sending money: the internal quote probe and the outgoing payment worker.

Quotes and outgoing payments are written here as the backend writes them (a quote row, a
payment funded with the quote's debit amount and set SENDING with process_at = now()); the
connector's worker does the rest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.connector.harness import (
    WALLET_BASE,
    Connector,
    Seeded,
    connector_process,
    create_asset,
    create_incoming_payment,
    create_peer,
    create_wallet,
    free_port,
    incoming_payment_state,
    node_settings,
    process_env,
    running_connector,
    seed,
)
from tests.loopback import serve
from tests.stores import DatabaseFactory

from kiungo.config import Settings
from kiungo.connector.command import connector_server
from kiungo.connector.node import Node
from kiungo.ledger import AccountKind, Ledger, account_id_for, run_checks
from kiungo.migrations.run import upgrade
from kiungo.signatures import signature_header

# -- payments as the backend writes them ---------------------------------------------------------


async def sender_wallet(pool: asyncpg.Pool, asset: uuid.UUID, name: str = "sam") -> uuid.UUID:
    async with pool.acquire() as conn, Ledger(pool) as ledger:
        return await create_wallet(conn, ledger, asset, f"/{name}")


async def create_payment(
    pool: asyncpg.Pool,
    *,
    wallet: uuid.UUID,
    asset: uuid.UUID,
    receiver: str,
    debit: int,
    receive: int,
    receive_asset: tuple[str, int] = ("USD", 2),
    fee: int = 0,
    min_rate: Fraction = Fraction(1),
    max_packet: int | None = None,
) -> uuid.UUID:
    """A quote and its outgoing payment, funded with the debit amount and set SENDING."""
    quote, payment = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO quotes (id, wallet_address_id, asset_id, receiver, debit_amount,"
            " fee_amount, receive_amount, receive_asset_code, receive_asset_scale,"
            " max_packet_amount, min_exchange_rate_numerator, min_exchange_rate_denominator,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            quote, wallet, asset, receiver, debit, fee, receive, *receive_asset, max_packet,
            min_rate.numerator, min_rate.denominator, datetime.now(UTC) + timedelta(minutes=5),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO outgoing_payments (id, wallet_address_id, quote_id, state)"
            " VALUES ($1, $2, $3, 'FUNDING')",
            payment, wallet, quote,
        )  # fmt: skip
    async with Ledger(pool) as ledger:
        account = await ledger.ensure_account(AccountKind.OUTGOING_PAYMENT, payment, asset)
        await ledger.deposit(uuid.uuid4(), account, debit)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE outgoing_payments SET state = 'SENDING', process_at = now() WHERE id = $1",
            payment,
        )
    return payment


async def wait_for_state(
    pool: asyncpg.Pool, payment: uuid.UUID, *states: str, seconds: float = 30.0
) -> asyncpg.Record:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM outgoing_payments WHERE id = $1", payment)
        assert row is not None
        if row["state"] in states:
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"payment still {row['state']} (error {row['error']!r})")
        await asyncio.sleep(0.05)


async def events_of(pool: asyncpg.Pool, resource: uuid.UUID) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT id, type, data, withdrawal_amount FROM webhook_events"
                " WHERE resource_id = $1 ORDER BY seq",
                resource,
            )
        )


async def balance(pool: asyncpg.Pool, kind: AccountKind, owner: uuid.UUID) -> int:
    async with pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT credits_posted - debits_posted FROM ledger_accounts WHERE id = $1",
            account_id_for(kind, owner),
        )
    return int(value)


async def no_pending(pool: asyncpg.Pool, seconds: float = 20.0) -> None:
    """Wait until no transfer is pending: a node posts a received packet just after its
    Fulfill (on a loaded machine, a while after)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        async with pool.acquire() as conn:
            pending = await conn.fetchval(
                "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'"
            )
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{pending} transfers still pending after {seconds} s")
        await asyncio.sleep(0.02)


async def assert_books_balance(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        pending = await conn.fetchval(
            "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'"
        )
        results = await run_checks(conn)
    assert pending == 0
    assert all(r.ok for r in results), [r for r in results if not r.ok]


# -- a second node, peered with the first ----------------------------------------------------------


@dataclass
class OtherNode:
    """Node "test.bob": the harness connector's peer bob. Its wallet rita (USD) lives under
    its own URL; the first node's packets arrive from its peer "kiungo" (token out-token)."""

    url: str
    pool: asyncpg.Pool
    node: Node
    usd: uuid.UUID
    kiungo: uuid.UUID
    rita: uuid.UUID
    ezra: uuid.UUID


@contextlib.asynccontextmanager
async def other_node(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    *,
    max_packet: int | None = None,
    rates_url: str | None = None,
) -> AsyncIterator[OtherNode]:
    """Also a wallet ezra in EUR (bob's EUR liquidity: 10^9), paid across assets with the rates
    at ``rates_url``."""
    await upgrade(database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = replace(
        Settings(),
        ilp_address="test.bob",
        open_payments_url=url,
        redis_key_prefix=redis_prefix + "bob:",
        stream_secret=os.urandom(32),
        exchange_rates_url=rates_url,
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn, Ledger(pool) as ledger:
            usd = await create_asset(conn, "USD", 2)
            await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, usd, usd)
            kiungo = await create_peer(
                conn, ledger, asset=usd, address="test.kiungo", incoming_token="out-token",
                max_packet_amount=max_packet, liquidity=1_000_000,
            )  # fmt: skip
            rita = uuid.uuid4()
            await conn.execute(
                "INSERT INTO wallet_addresses (id, url, asset_id) VALUES ($1, $2, $3)",
                rita, f"{url}/rita", usd,
            )  # fmt: skip
            await ledger.ensure_account(AccountKind.WALLET_ADDRESS, rita, usd)
            eur = await create_asset(conn, "EUR", 2)
            eur_pool = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, eur, eur)
            await ledger.deposit(uuid.uuid4(), eur_pool, 10**9)
            ezra = uuid.uuid4()
            await conn.execute(
                "INSERT INTO wallet_addresses (id, url, asset_id) VALUES ($1, $2, $3)",
                ezra, f"{url}/ezra", eur,
            )  # fmt: skip
            await ledger.ensure_account(AccountKind.WALLET_ADDRESS, ezra, eur)
        async with connector_server(settings, database_url, redis_url, "127.0.0.1", port) as run:
            yield OtherNode(url, pool, run.node, usd, kiungo, rita, ezra)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def connector_peered_with_bob(
    make_database: DatabaseFactory, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[OtherNode, Connector]]:
    """Bob's node (packets of at most 50), and our seeded connector whose next hop it is."""
    async with (
        other_node(await make_database(), redis_url, redis_prefix, max_packet=50) as bob,
        running_connector(
            await make_database(), redis_url, redis_prefix, hop_endpoint=f"{bob.url}/ilp"
        ) as connector,
    ):
        yield bob, connector


@contextlib.asynccontextmanager
async def unreachable_spsp() -> AsyncIterator[str]:
    """An SPSP server whose destination no route reaches (packets get F02)."""

    async def spsp(request: Request) -> Response:
        return JSONResponse(
            {
                "destination_account": "test.nowhere.receiver",
                "shared_secret": base64.b64encode(os.urandom(32)).decode(),
            },
            media_type="application/spsp4+json",
        )

    async with serve(Starlette(routes=[Route("/pay", spsp)])) as url:
        yield f"{url}/pay"


@contextlib.asynccontextmanager
async def rates_server(rates: dict[str, str]) -> AsyncIterator[str]:
    async def handler(request: Request) -> Response:
        return Response(json.dumps({"base": request.query_params["base"], "rates": rates}))

    async with serve(Starlette(routes=[Route("/rates", handler)])) as url:
        yield f"{url}/rates"


# -- local receivers -------------------------------------------------------------------------------


async def test_a_local_payment_completes_an_incoming_payment_of_the_same_asset(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        async with pool.acquire() as conn:
            incoming = await create_incoming_payment(conn, seeded.wallets["carol"], seeded.usd, 500)
        payment = await create_payment(
            pool, wallet=sam, asset=seeded.usd,
            receiver=f"{WALLET_BASE}/carol/incoming-payments/{incoming}",
            debit=510, fee=10, receive=500, min_rate=Fraction(99, 100),
        )  # fmt: skip
        row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
        assert (row["state"], row["error"], row["state_attempts"]) == ("COMPLETED", None, 0)
        assert (row["sent_amount"], row["delivered_amount"]) == (500, 500)
        assert row["process_at"] is None
        assert await balance(pool, AccountKind.INCOMING_PAYMENT, incoming) == 500
        assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 10  # the fee
        async with pool.acquire() as conn:
            state = await conn.fetchval(
                "SELECT state FROM incoming_payments WHERE id = $1", incoming
            )
        assert state == "COMPLETED"
        [event] = await events_of(pool, payment)
        data = json.loads(event["data"])
        assert event["type"] == "outgoing_payment.completed"
        assert data["state"] == "COMPLETED"
        assert data["sentAmount"] == {"value": "500", "assetCode": "USD", "assetScale": 2}
        assert data["debitAmount"]["value"] == "510"
        assert data["receiveAmount"]["value"] == "500"
        assert data["withdrawal"]["amount"] == "10" and event["withdrawal_amount"] == 10
        assert [e["type"] for e in await events_of(pool, incoming)] == [
            "incoming_payment.completed"
        ]
        await assert_books_balance(pool)


async def test_a_local_payment_across_assets_goes_through_the_liquidity_accounts(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        payment = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=f"{WALLET_BASE}/dave",
            debit=1000, receive=900, receive_asset=("EUR", 2), min_rate=Fraction(891, 1000),
        )  # fmt: skip
        row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
        assert row["state"] == "COMPLETED", row["error"]
        assert (row["sent_amount"], row["delivered_amount"]) == (1000, 900)
        assert await balance(pool, AccountKind.WALLET_ADDRESS, seeded.wallets["dave"]) == 900
        assert await balance(pool, AccountKind.ASSET_LIQUIDITY, seeded.usd) == 1000
        assert await balance(pool, AccountKind.ASSET_LIQUIDITY, seeded.eur) == 10**9 - 900
        assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 0
        [event] = await events_of(pool, payment)
        assert event["type"] == "outgoing_payment.completed"
        assert event["withdrawal_amount"] is None
        await assert_books_balance(pool)


# -- remote receivers ------------------------------------------------------------------------------


async def test_a_remote_payment_is_streamed_through_a_peer_to_another_node(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    async with connector_peered_with_bob(make_database, redis_server_url, redis_prefix) as (
        bob,
        connector,
    ):
        seeded, pool = connector.seeded, connector.pool
        async with bob.pool.acquire() as conn:
            incoming = await create_incoming_payment(conn, bob.rita, bob.usd, 700)
        receiver = f"{bob.url}/rita/incoming-payments/{incoming}"

        quoted = await connector.client.post(
            f"{connector.url}/internal/quote",
            json={"receiver": receiver, "assetCode": "USD", "assetScale": 2},
        )
        assert quoted.status_code == 200, quoted.text
        answer = quoted.json()
        # Read from bob's node (GET <incoming payment URL>, Accept: application/json).
        assert answer.pop("expiresAt").endswith("Z")
        # The credentials bob's SPSP answered, for the payment's first attempt.
        assert answer.pop("streamDestination").startswith("test.bob.")
        assert len(base64.b64decode(answer.pop("streamSharedSecret"))) == 32
        assert answer == {
            "receiveAssetCode": "USD",
            "receiveAssetScale": 2,
            "lowEstimatedExchangeRate": "1/1",
            "highEstimatedExchangeRate": "51/50",
            "maxPacketAmount": "50",
            "incomingAmount": "700",
            "receivedAmount": "0",
        }

        sam = await sender_wallet(pool, seeded.usd)
        payment = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=receiver, debit=700, receive=700,
            max_packet=50,
        )  # fmt: skip
        row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
        assert row["state"] == "COMPLETED", row["error"]
        assert (row["sent_amount"], row["delivered_amount"]) == (700, 700)
        await no_pending(bob.pool)  # bob posts a received packet just after its Fulfill
        assert await balance(bob.pool, AccountKind.INCOMING_PAYMENT, incoming) == 700
        assert await balance(bob.pool, AccountKind.PEER_LIQUIDITY, bob.kiungo) == 1_000_000 - 700
        assert await balance(pool, AccountKind.PEER_LIQUIDITY, seeded.peers["bob"]) == 700
        assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 0
        assert await incoming_payment_state(bob.pool, incoming) == "COMPLETED"
        [event] = await events_of(pool, payment)
        assert event["type"] == "outgoing_payment.completed"
        assert json.loads(event["data"])["sentAmount"]["value"] == "700"
        await assert_books_balance(pool)
        await assert_books_balance(bob.pool)


async def test_a_resumed_payment_reads_the_remote_incoming_payment_and_stops_when_it_is_closed(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    """A payment taken up again (its row was claimed before) first reads bob's incoming
    payment from bob's node: one bob completed early, with 300 of its 700, fails the payment
    at once (not retryable), nothing sent; one that has all it expects completes the payment
    without a packet; one that expired fails it."""
    async with connector_peered_with_bob(make_database, redis_server_url, redis_prefix) as (
        bob,
        connector,
    ):
        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        outcomes = {}
        for case, state, received, expires in (
            ("completed early", "COMPLETED", 300, timedelta(minutes=5)),
            ("paid in full", "COMPLETED", 700, timedelta(minutes=5)),
            ("expired", "PENDING", 0, timedelta(seconds=-1)),
        ):
            async with bob.pool.acquire() as conn:
                incoming = await create_incoming_payment(conn, bob.rita, bob.usd, 700)
                await conn.execute(
                    "UPDATE incoming_payments SET state = $2, expires_at = now() + $3::interval"
                    " WHERE id = $1",
                    incoming, state, expires,
                )  # fmt: skip
            if received:
                async with Ledger(bob.pool) as ledger:
                    account = await ledger.ensure_account(
                        AccountKind.INCOMING_PAYMENT, incoming, bob.usd
                    )
                    await ledger.deposit(uuid.uuid4(), account, received)
            # create_payment leaves process_at set, as a crashed or retried attempt does.
            payment = await create_payment(
                pool, wallet=sam, asset=seeded.usd,
                receiver=f"{bob.url}/rita/incoming-payments/{incoming}", debit=700, receive=700,
                max_packet=50,
            )  # fmt: skip
            row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
            outcomes[case] = (row["state"], row["error"], row["sent_amount"], row["state_attempts"])
            assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 700
        short = "the incoming payment was {} before it was paid in full"
        assert outcomes == {
            "completed early": ("FAILED", short.format("completed"), 0, 1),
            "paid in full": ("COMPLETED", None, 0, 0),  # as Rafiki: what it expects is met
            "expired": ("FAILED", short.format("expired"), 0, 1),
        }
        await assert_books_balance(pool)


async def test_a_fixed_send_quote_across_assets_is_paid_as_the_backend_quotes_it(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    async with (
        rates_server({"EUR": "0.937"}) as rates,
        other_node(
            await make_database(), redis_server_url, redis_prefix, max_packet=100, rates_url=rates
        ) as bob,
        running_connector(
            await make_database(), redis_server_url, redis_prefix, hop_endpoint=f"{bob.url}/ilp"
        ) as connector,
    ):
        seeded, pool = connector.seeded, connector.pool
        receiver = f"{bob.url}/ezra"
        quoted = await connector.client.post(
            f"{connector.url}/internal/quote",
            json={"receiver": receiver, "assetCode": "USD", "assetScale": 2},
        )
        assert quoted.status_code == 200, quoted.text
        answer = quoted.json()
        assert answer["receiveAssetCode"] == "EUR"
        assert answer["maxPacketAmount"] == "100"
        numerator, denominator = map(int, answer["lowEstimatedExchangeRate"].split("/"))
        low = Fraction(numerator, denominator)
        assert low == Fraction(93, 100)  # what 100 cents deliver, each hop rounding down
        # As the backend quotes a fixed send of 1000 with a fee of 10 and 1% slippage.
        sent = 1000
        receive = sent * low.numerator // low.denominator
        sam = await sender_wallet(pool, seeded.usd)
        payment = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=receiver, debit=sent + 10, fee=10,
            receive=receive, receive_asset=("EUR", 2), min_rate=low * Fraction(99, 100),
            max_packet=100,
        )  # fmt: skip
        row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
        assert row["state"] == "COMPLETED", row["error"]
        assert (row["sent_amount"], row["delivered_amount"]) == (1000, 930)
        await no_pending(bob.pool)
        assert await balance(bob.pool, AccountKind.WALLET_ADDRESS, bob.ezra) == 930
        assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 10
        [event] = await events_of(pool, payment)
        assert event["withdrawal_amount"] == 10
        await assert_books_balance(pool)
        await assert_books_balance(bob.pool)


async def test_failing_receivers_end_failed_after_the_retries_with_the_money_withdrawable(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = replace(Settings(), max_outgoing_payment_retry_attempts=1)
    async with (
        unreachable_spsp() as nowhere,
        running_connector(
            database_url, redis_server_url, redis_prefix, settings=settings
        ) as connector,
    ):
        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        no_spsp = await create_payment(
            pool, wallet=sam, asset=seeded.usd,
            receiver=f"http://127.0.0.1:{free_port()}/nobody", debit=300, receive=300,
        )  # fmt: skip
        no_route = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=nowhere, debit=400, receive=400
        )
        for payment, amount, reason in ((no_spsp, 300, "invalid receiver"), (no_route, 400, "F02")):
            row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
            assert row["state"] == "FAILED"
            assert reason in row["error"]
            assert row["state_attempts"] == 2  # the first try and one retry
            assert (row["sent_amount"], row["delivered_amount"]) == (0, 0)
            [event] = await events_of(pool, payment)
            data = json.loads(event["data"])
            assert event["type"] == "outgoing_payment.failed"
            assert (data["state"], data["error"], data["stateAttempts"]) == (
                "FAILED",
                row["error"],
                2,
            )
            assert event["withdrawal_amount"] == amount
            account = account_id_for(AccountKind.OUTGOING_PAYMENT, payment)
            async with Ledger(pool) as ledger:
                await ledger.withdraw(event["id"], account, amount)
            assert await balance(pool, AccountKind.OUTGOING_PAYMENT, payment) == 0
        await assert_books_balance(pool)


# -- the internal quote route ----------------------------------------------------------------------


async def test_the_quote_route_probes_local_receivers_without_moving_money(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with (
        rates_server({"EUR": "0.9"}) as rates,
        running_connector(
            database_url,
            redis_server_url,
            redis_prefix,
            settings=replace(Settings(), exchange_rates_url=rates),
        ) as connector,
    ):
        url = f"{connector.url}/internal/quote"
        usd = {"assetCode": "USD", "assetScale": 2}
        async with connector.pool.acquire() as conn:
            transfers = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
        carol = await connector.client.post(url, json={"receiver": f"{WALLET_BASE}/carol", **usd})
        assert carol.status_code == 200, carol.text
        assert carol.json()["streamDestination"].startswith("test.kiungo.")
        assert {k: v for k, v in carol.json().items() if not k.startswith("stream")} == {
            "receiveAssetCode": "USD",
            "receiveAssetScale": 2,
            "lowEstimatedExchangeRate": "1/1",
            "highEstimatedExchangeRate": "1000000000001/1000000000000",
            "maxPacketAmount": "1000000000000",
            "incomingAmount": None,
            "receivedAmount": None,
            "expiresAt": None,
        }
        pointer = "$" + WALLET_BASE.removeprefix("https://") + "/dave"
        dave = await connector.client.post(url, json={"receiver": pointer, **usd})
        assert dave.status_code == 200, dave.text
        assert dave.json()["receiveAssetCode"] == "EUR"
        assert dave.json()["lowEstimatedExchangeRate"] == "9/10"
        assert dave.json()["highEstimatedExchangeRate"] == "900000000001/1000000000000"

        await asyncio.sleep(0.3)  # the probes' connections close after the answer
        async with connector.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger_transfers") == transfers

        for receiver in (f"{WALLET_BASE}/nobody", f"http://127.0.0.1:{free_port()}/x", "bogus"):
            missing = await connector.client.post(url, json={"receiver": receiver, **usd})
            assert missing.status_code == 404, receiver
            assert missing.json()["code"] == "InvalidReceiver"
        async with unreachable_spsp() as nowhere:
            failed = await connector.client.post(url, json={"receiver": nowhere, **usd})
        assert failed.status_code == 422
        assert failed.json()["code"] == "RateProbeFailed"
        assert "F02" in failed.json()["message"]

        bodies: list[object] = [{"receiver": 1, **usd}, {"receiver": "x", "assetCode": "USD"}, []]
        for body in bodies:
            bad = await connector.client.post(url, json=body)
            assert bad.status_code == 400
        assert (await connector.client.post(url, content=b"{")).status_code == 400


async def test_without_an_admin_secret_the_quote_route_serves_loopback_clients_only(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        url = f"{connector.url}/internal/quote"
        body = {"receiver": f"{WALLET_BASE}/carol", "assetCode": "USD", "assetScale": 2}
        assert (await connector.client.post(url, json=body)).status_code == 200
        proxied = await connector.client.post(
            url, json=body, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert proxied.status_code == 403
        as_peer = await connector.client.post(
            url, json=body, headers={"Authorization": "Bearer alice-token"}
        )
        assert as_peer.status_code == 403


async def test_with_an_admin_secret_the_quote_route_needs_a_signature(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = replace(Settings(), admin_api_secret="quote-secret")
    async with running_connector(
        database_url, redis_server_url, redis_prefix, settings=settings
    ) as connector:
        url = f"{connector.url}/internal/quote"
        body = {"receiver": f"{WALLET_BASE}/carol", "assetCode": "USD", "assetScale": 2}
        unsigned = await connector.client.post(url, json=body)
        assert unsigned.status_code == 401
        wrong = await connector.client.post(
            url, json=body, headers={"signature": signature_header("other-secret", body)}
        )
        assert wrong.status_code == 401
        stale = signature_header("quote-secret", body, timestamp_ms=1_000_000)
        old = await connector.client.post(url, json=body, headers={"signature": stale})
        assert old.status_code == 401
        other_body = {**body, "assetScale": 3}
        swapped = await connector.client.post(
            url, json=other_body, headers={"signature": signature_header("quote-secret", body)}
        )
        assert swapped.status_code == 401
        signed = await connector.client.post(
            url,
            content=json.dumps(body).encode(),
            headers={
                "signature": signature_header("quote-secret", body),
                "content-type": "application/json",
            },
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["receiveAssetCode"] == "USD"
        # Signed, a request from anywhere is served: the proxy header does not matter.
        proxied = await connector.client.post(
            url,
            json=body,
            headers={
                "signature": signature_header("quote-secret", body),
                "X-Forwarded-For": "203.0.113.9",
            },
        )
        assert proxied.status_code == 200


# -- crash and resume ------------------------------------------------------------------------------


class GatedHop:
    """A next hop in front of another node that forwards the first ``limit`` packets and holds
    the rest until released; released packets are dropped (never forwarded) while
    ``dropping``."""

    def __init__(self, target: str, limit: int) -> None:
        self.target = target
        self.limit: int | None = limit
        self.forwarded = 0
        self.forwarding = 0  # forwarded, their replies not yet back
        self.held = 0
        self.dropping = False
        self.release = asyncio.Event()
        self.client = httpx.AsyncClient(timeout=30)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if self.limit is not None and self.forwarded >= self.limit:
            self.held += 1
            try:
                await self.release.wait()
            finally:
                self.held -= 1
            if self.dropping:
                return Response(b"dropped", status_code=502)
        self.forwarded += 1
        self.forwarding += 1
        try:
            reply = await self.client.post(
                self.target,
                content=body,
                headers={
                    "Authorization": request.headers["authorization"],
                    "Content-Type": "application/octet-stream",
                },
            )
        finally:
            self.forwarding -= 1
        return Response(reply.content, reply.status_code, media_type="application/octet-stream")


@dataclass
class GatedPath:
    """Node A (this file's sender, seeded by the harness) whose peer bob is the other node,
    reached through a :class:`GatedHop`; A's database is ``database``/``pool``."""

    bob: OtherNode
    hop: GatedHop
    hop_url: str
    database: str
    pool: asyncpg.Pool
    seeded: Seeded

    async def wait_until_held(self) -> None:
        for _ in range(600):
            if self.hop.held:
                break
            await asyncio.sleep(0.05)
        assert self.hop.held, "the payment never reached the gate"

    async def wait_until_posted(self, seconds: float = 20.0) -> None:
        """Once packets wait at the gate: until every packet that passed it is posted on both
        nodes (bob paid rita for it, and A booked it to bob)."""
        deadline = asyncio.get_running_loop().time() + seconds
        bob_peer = self.seeded.peers["bob"]
        while True:
            if not self.hop.forwarding:
                async with self.bob.pool.acquire() as conn:
                    pending = await conn.fetchval(
                        "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'"
                    )
                rita = await balance(self.bob.pool, AccountKind.WALLET_ADDRESS, self.bob.rita)
                booked = await balance(self.pool, AccountKind.PEER_LIQUIDITY, bob_peer)
                if not pending and rita == booked:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the packets that passed the gate were not all posted")
            await asyncio.sleep(0.05)

    async def drop_held(self) -> None:
        """Release what the gate holds without forwarding it, then let everything through."""
        hop = self.hop
        hop.dropping, hop.limit = True, None
        hop.release.set()
        for _ in range(500):
            if not hop.held:
                break
            await asyncio.sleep(0.01)
        hop.dropping = False

    async def pay_rita(self, amount: int) -> uuid.UUID:
        sam = await sender_wallet(self.pool, self.seeded.usd)
        return await create_payment(
            self.pool, wallet=sam, asset=self.seeded.usd, receiver=f"{self.bob.url}/rita",
            debit=amount, receive=amount, max_packet=10,
        )  # fmt: skip

    async def check_paid_exactly(self, payment: uuid.UUID, amount: int) -> None:
        row = await wait_for_state(self.pool, payment, "COMPLETED", "FAILED", seconds=60)
        assert row["state"] == "COMPLETED", row["error"]
        await no_pending(self.bob.pool)  # bob posts a received packet just after its Fulfill
        assert await balance(self.bob.pool, AccountKind.WALLET_ADDRESS, self.bob.rita) == amount
        assert (row["sent_amount"], row["delivered_amount"]) == (amount, amount)
        assert await balance(self.pool, AccountKind.OUTGOING_PAYMENT, payment) == 0
        bob_peer = self.seeded.peers["bob"]
        assert await balance(self.pool, AccountKind.PEER_LIQUIDITY, bob_peer) == amount
        assert len(await events_of(self.pool, payment)) == 1
        await assert_books_balance(self.pool)
        await assert_books_balance(self.bob.pool)


@contextlib.asynccontextmanager
async def gated_path(
    make_database: DatabaseFactory, redis_url: str, redis_prefix: str, *, limit: int
) -> AsyncIterator[GatedPath]:
    """Bob (max packet 10) behind a gate that forwards ``limit`` packets, and a seeded, not yet
    started sender node whose peer bob is reached through the gate."""
    async with other_node(await make_database(), redis_url, redis_prefix, max_packet=10) as bob:
        hop = GatedHop(f"{bob.url}/ilp", limit=limit)
        app = Starlette(routes=[Route("/ilp", hop.handle, methods=["POST"])])
        async with serve(app) as hop_url:
            database = await make_database()
            await upgrade(database)
            pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
            try:
                seeded = await seed(pool, f"{hop_url}/ilp", alice_liquidity=0)
                yield GatedPath(bob, hop, hop_url, database, pool, seeded)
            finally:
                await hop.client.aclose()
                await pool.close()


async def test_a_payment_resumes_after_the_worker_is_killed_and_delivers_exactly(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    async with gated_path(make_database, redis_server_url, redis_prefix, limit=60) as path:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = node_settings(None, redis_prefix)
        env = {
            **process_env(settings, path.database, redis_server_url, port),
            "PACKET_TIMEOUT_MS": "3000",  # the killed worker's holds expire soon
        }
        async with connector_process(env, url) as process:
            payment = await path.pay_rita(2000)
            await path.wait_until_held()
            await path.wait_until_posted()
            process.send_signal(signal.SIGKILL)
            await process.wait()
        await path.drop_held()  # what was in flight at the kill never reaches bob
        await no_pending(path.bob.pool)
        delivered_before = await balance(path.bob.pool, AccountKind.WALLET_ADDRESS, path.bob.rita)
        # (The gate also let the probe's packets through, which deliver nothing.)
        assert 0 < delivered_before < 2000
        async with path.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, sent_amount, process_at FROM outgoing_payments WHERE id = $1",
                payment,
            )
            assert row["state"] == "SENDING"
            assert row["sent_amount"] <= delivered_before
            assert row["process_at"] > datetime.now(UTC)  # still leased to the dead worker
            pending = await conn.fetchval(
                "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'"
            )
            assert pending > 0  # the holds of the packets that were in flight
            # The lease runs out (as it would after LEASE), and say the last progress writes
            # were lost too: what was sent is then known from the ledger alone.
            await conn.execute(
                "UPDATE outgoing_payments SET process_at = now(), sent_amount = 0,"
                " delivered_amount = 0 WHERE id = $1",
                payment,
            )
        # The node taken up again gives its packets the default 30 s: one answered after its
        # expiry would be paid by bob and not booked here (3 s was short for a loaded machine).
        del env["PACKET_TIMEOUT_MS"]
        async with connector_process(env, url):
            await path.check_paid_exactly(payment, 2000)


async def test_a_stopped_connector_lets_its_packets_finish_and_hands_the_payment_back(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    async with gated_path(make_database, redis_server_url, redis_prefix, limit=40) as path:
        settings = node_settings(None, redis_prefix)
        first = connector_server(settings, path.database, redis_server_url, "127.0.0.1", 0)
        await first.__aenter__()
        try:
            payment = await path.pay_rita(1500)
            await path.wait_until_held()
        finally:
            stopping = asyncio.create_task(first.__aexit__(None, None, None))
            await asyncio.sleep(0.5)
            assert not stopping.done()  # waiting for the packets at the gate
            await path.drop_held()
            await stopping
        async with path.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, sent_amount, delivered_amount, process_at FROM outgoing_payments"
                " WHERE id = $1",
                payment,
            )
            pending = await conn.fetchval(
                "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'"
            )
        assert pending == 0  # nothing left held: every packet was posted or voided
        assert row["state"] == "SENDING"
        assert row["process_at"] <= datetime.now(UTC)  # handed back, not leased
        delivered = await balance(path.bob.pool, AccountKind.WALLET_ADDRESS, path.bob.rita)
        assert 0 < delivered < 1500
        assert row["sent_amount"] == row["delivered_amount"] == delivered
        async with connector_server(settings, path.database, redis_server_url, "127.0.0.1", 0):
            await path.check_paid_exactly(payment, 1500)


async def test_two_replicas_send_each_payment_once(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = node_settings(None, redis_prefix)
    async with running_connector(
        database_url, redis_server_url, redis_prefix, settings=settings
    ) as connector:
        seeded, pool = connector.seeded, connector.pool
        async with connector_server(settings, database_url, redis_server_url, "127.0.0.1", 0):
            sam = await sender_wallet(pool, seeded.usd)
            async with pool.acquire() as conn:
                incoming = [
                    await create_incoming_payment(conn, seeded.wallets["carol"], seeded.usd, 100)
                    for _ in range(8)
                ]
            receivers = [f"{WALLET_BASE}/carol/incoming-payments/{i}" for i in incoming]
            payments = await asyncio.gather(
                *(
                    create_payment(
                        pool, wallet=sam, asset=seeded.usd, receiver=r, debit=100, receive=100
                    )
                    for r in receivers
                )
            )
            for payment in payments:
                row = await wait_for_state(pool, payment, "COMPLETED", "FAILED")
                assert row["state"] == "COMPLETED", row["error"]
                assert len(await events_of(pool, payment)) == 1
            for i in incoming:
                assert await balance(pool, AccountKind.INCOMING_PAYMENT, i) == 100
            await assert_books_balance(pool)
