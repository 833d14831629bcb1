"""Owed posts (kiungo.connector.owed) on real Postgres and Redis: a fulfilled packet's post that
the ledger could not take is kept in Redis and booked exactly once when it can be, as the
hold's post while the hold is pending and as LATE_POST transfers once it has expired."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis
from tests.ledger.schema import create_asset, schema_pool

from kiungo.connector.owed import LATE_POST_CODE, OwedPosts, late_transfer_id
from kiungo.ledger import (
    AccountKind,
    Ledger,
    LedgerUnavailable,
    Leg,
    TransferState,
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
