"""Owed posts (kiungo.connector.owed) on real Postgres and Redis: a fulfilled packet's post that
the ledger could not take is kept in Redis and booked exactly once when it can be, as the
hold's post while the hold is pending and as LATE_POST transfers once it has expired; a
received packet's receiver is brought up to date once its money is booked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis
from tests.connector.harness import (
    create_incoming_payment,
    incoming_payment_state,
    running_connector,
)
from tests.ledger.schema import create_asset, schema_pool

from kiungo.connector.owed import LATE_POST_CODE, OwedPosts, late_transfer_id
from kiungo.connector.receivers import incoming_payment_tag
from kiungo.ledger import (
    AccountKind,
    Ledger,
    LedgerUnavailable,
    Leg,
    TransferState,
    account_id_for,
    run_checks,
)

HOLD = timedelta(seconds=10)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pool(database_url) as pool:
        yield pool


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(pool: asyncpg.Pool, clock: Clock) -> AsyncIterator[Ledger]:
    async with Ledger(pool, clock=clock) as ledger:
        yield ledger


@pytest.fixture
def owed(ledger: Ledger, redis: Redis, redis_prefix: str) -> OwedPosts:
    return OwedPosts(ledger, redis, redis_prefix)


async def accounts(ledger: Ledger, pool: asyncpg.Pool, funds: int) -> tuple[uuid.UUID, uuid.UUID]:
    asset = await create_asset(pool, "USD", 2)
    alice = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    bob = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    await ledger.deposit(uuid.uuid4(), alice, funds)
    return alice, bob


async def hold(ledger: Ledger, alice: uuid.UUID, bob: uuid.UUID, amount: int) -> list[Leg]:
    legs = [Leg(uuid.uuid4(), alice, bob, amount)]
    await ledger.create_transfers(legs, hold_for=HOLD)
    return legs


async def assert_books(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert [r for r in await run_checks(conn) if not r.ok] == []


async def test_a_post_that_succeeds_owes_nothing(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 7)
    assert await owed.post(legs, datetime.now(UTC) + HOLD)
    assert await owed.post(legs, datetime.now(UTC) + HOLD)  # again: already posted is posted
    assert await redis.llen(owed.key) == 0
    assert (await ledger.balance(bob)).posted == 7


async def test_a_post_whose_hold_expired_is_booked_late_at_once(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 7)
    clock.now += HOLD + timedelta(seconds=1)  # the Fulfill went out; the writer was behind
    assert await owed.post(legs, datetime.now(UTC) + HOLD)
    assert await owed.post(legs, datetime.now(UTC) + HOLD)  # a retry books nothing more
    late = await ledger.transfer(late_transfer_id(legs[0].id))
    assert late is not None and (late.state, late.code) == (TransferState.POSTED, LATE_POST_CODE)
    assert ((await ledger.balance(alice)).posted, (await ledger.balance(bob)).posted) == (93, 7)
    assert await redis.llen(owed.key) == 0
    await assert_books(pool)


async def test_a_post_whose_late_booking_is_refused_is_owed_until_it_can_be_booked(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    alice, bob = await accounts(ledger, pool, 10)
    legs = await hold(ledger, alice, bob, 10)
    clock.now += HOLD + timedelta(seconds=1)
    await ledger.expire_pending()
    await ledger.create_transfer(uuid.uuid4(), alice, bob, 5)  # the released money, spent
    assert not await owed.post(legs, datetime.now(UTC) + HOLD)
    assert await redis.llen(owed.key) == 1
    await ledger.deposit(uuid.uuid4(), alice, 5)
    assert await owed.drain() == 1
    assert ((await ledger.balance(alice)).posted, (await ledger.balance(bob)).posted) == (0, 15)
    await assert_books(pool)


async def test_an_owed_post_of_a_pending_hold_posts_it(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 7)
    await owed.owe(legs, LedgerUnavailable("the database is out"))
    assert await redis.llen(owed.key) == 1
    assert await owed.drain() == 1
    assert owed.owed == 0
    transfer = await ledger.transfer(legs[0].id)
    assert transfer is not None and transfer.state is TransferState.POSTED
    assert ((await ledger.balance(alice)).posted, (await ledger.balance(bob)).posted) == (93, 7)
    await assert_books(pool)


async def test_an_owed_post_of_an_expired_hold_is_booked_late_once(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 7)
    await owed.owe(legs, LedgerUnavailable("the database is out"))
    await owed.owe(legs, LedgerUnavailable("the database is out"))  # twice, as by a retry
    clock.now += HOLD + timedelta(seconds=1)
    await ledger.expire_pending()
    assert await owed.drain() == 2
    late = await ledger.transfer(late_transfer_id(legs[0].id))
    assert late is not None
    assert (late.state, late.amount, late.code) == (TransferState.POSTED, 7, LATE_POST_CODE)
    assert (late.debit_account_id, late.credit_account_id) == (alice, bob)
    # Booked once: alice paid 7, bob got 7, the hold itself expired.
    assert ((await ledger.balance(alice)).posted, (await ledger.balance(bob)).posted) == (93, 7)
    assert (await ledger.balance(alice)).debits_pending == 0
    assert await redis.llen(owed.key) == 0
    await assert_books(pool)


async def test_an_owed_post_the_ledger_refuses_stays_until_it_can_be_booked(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    alice, bob = await accounts(ledger, pool, 10)
    legs = await hold(ledger, alice, bob, 10)
    await owed.owe(legs, LedgerUnavailable("the database is out"))
    clock.now += HOLD + timedelta(seconds=1)
    await ledger.expire_pending()
    # Meanwhile alice's liquidity went to another packet.
    await ledger.create_transfer(uuid.uuid4(), alice, bob, 5)
    assert await owed.drain() == 0
    assert owed.owed == 1
    assert await ledger.transfer(late_transfer_id(legs[0].id)) is None
    await ledger.deposit(uuid.uuid4(), alice, 5)  # the operator funds it
    assert await owed.drain() == 1
    assert owed.owed == 0
    assert ((await ledger.balance(alice)).posted, (await ledger.balance(bob)).posted) == (0, 15)
    await assert_books(pool)


async def test_a_received_packet_booked_late_is_booked_past_the_payments_amount(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    """Its hold expired, and other packets filled the incoming payment meanwhile: the packet
    was fulfilled all the same, so its money is booked rather than refused for ever."""
    alice, payment = await accounts(ledger, pool, 100)
    legs = [Leg(uuid.uuid4(), alice, payment, 6, 10)]
    await ledger.create_transfers(legs, hold_for=HOLD)
    await owed.owe(legs, LedgerUnavailable("the database is out"))
    clock.now += HOLD + timedelta(seconds=1)
    await ledger.expire_pending()
    await ledger.create_transfers([Leg(uuid.uuid4(), alice, payment, 10, 10)])
    assert await owed.drain() == 1
    assert owed.owed == 0
    assert (await ledger.balance(payment)).posted == 16
    await assert_books(pool)


async def test_an_unreadable_entry_is_dropped(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 3)
    await redis.rpush(owed.key, "not json")
    await owed.owe(legs, LedgerUnavailable("the database is out"))
    assert await owed.drain() == 1
    assert await redis.llen(owed.key) == 0
    assert (await ledger.balance(bob)).posted == 3


async def test_an_entry_owed_before_entries_named_receivers_still_drains(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis
) -> None:
    alice, bob = await accounts(ledger, pool, 100)
    legs = await hold(ledger, alice, bob, 4)
    leg = legs[0]
    old = (
        f'[{{"id":"{leg.id}","debit":"{alice}","credit":"{bob}","amount":"4","credit_limit":null}}]'
    )
    await redis.rpush(owed.key, old)
    assert await owed.drain() == 1
    assert (await ledger.balance(bob)).posted == 4


async def test_the_receiver_an_entry_names_is_settled_once_it_is_booked(
    ledger: Ledger, pool: asyncpg.Pool, owed: OwedPosts, redis: Redis, clock: Clock
) -> None:
    settled: list[str] = []

    async def settle(tag: str) -> None:
        settled.append(tag)

    owed.on_booked = settle
    alice, bob = await accounts(ledger, pool, 100)
    refused = await hold(ledger, alice, bob, 90)
    received = await hold(ledger, alice, bob, 5)
    forwarded = await hold(ledger, alice, bob, 3)
    await owed.owe(refused, LedgerUnavailable("out"), receiver="i" + "1" * 32)
    await owed.owe(received, LedgerUnavailable("out"), receiver="i" + "2" * 32)
    await owed.owe(forwarded, LedgerUnavailable("out"))
    clock.now += HOLD + timedelta(seconds=1)
    await ledger.expire_pending()
    # The released money went to another packet meanwhile: the 90 cannot be booked yet.
    await ledger.create_transfer(uuid.uuid4(), alice, bob, 85)
    assert await owed.drain() == 2
    assert owed.owed == 1
    # Only the booked received packet's receiver: not the refused one, not the forwarded one.
    assert settled == ["i" + "2" * 32]


async def test_an_incoming_payment_paid_in_full_by_a_late_booked_packet_completes(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    """A received packet whose post was owed (the database out until its hold expired) pays
    the rest of an incoming payment: once a connector's drain books it, the payment is
    COMPLETED with its event, as if the post had been made in time."""
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        node = connector.node
        assert node is not None
        seeded = connector.seeded
        async with connector.pool.acquire() as conn:
            payment = await create_incoming_payment(conn, seeded.wallets["carol"], seeded.usd, 10)
        receiver = await node.receivers.incoming_payment(payment)
        assert receiver is not None
        alice = account_id_for(AccountKind.PEER_LIQUIDITY, seeded.peers["alice"])
        await node.ledger.ensure_account(receiver.account_kind, receiver.id, receiver.asset_id)
        legs = [Leg(uuid.uuid4(), alice, receiver.account_id, 10, 10)]
        await node.ledger.create_transfers(legs, hold_for=timedelta(milliseconds=1))
        await node.owed.owe(legs, LedgerUnavailable("out"), receiver=receiver.tag)
        assert receiver.tag == incoming_payment_tag(payment)
        # The node drains every second.
        assert await incoming_payment_state(connector.pool, payment) == "COMPLETED"
        assert await connector.balance(AccountKind.INCOMING_PAYMENT, payment) == 10
        async with connector.pool.acquire() as conn:
            events = await conn.fetch(
                "SELECT type FROM webhook_events WHERE resource_id = $1", payment
            )
        assert [e["type"] for e in events] == ["incoming_payment.completed"]
