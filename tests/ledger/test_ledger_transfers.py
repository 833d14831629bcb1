"""The ledger on real Postgres and on a real TigerBeetle (the ``ledger`` fixture's two backends,
tests/ledger/conftest.py): concurrency never overdraws, two-phase rules, once-only ids. Tests
that set the ledger's clock or read its tables are Postgres-only, each saying why."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, tzinfo

import asyncpg
import pytest
from tests.ledger.schema import create_asset

from kiungo.connector.owed import LATE_POST_CODE
from kiungo.ledger import (
    AccountKind,
    AlreadyPosted,
    AlreadyVoided,
    CreditLimitExceeded,
    DifferentAssets,
    InsufficientBalance,
    InsufficientLiquidity,
    InvalidAmount,
    Ledger,
    Leg,
    PartialGroup,
    SameAccounts,
    TransferExists,
    TransferExpired,
    TransferState,
    UnknownAccount,
    UnknownTransfer,
    batch_commit,
)


async def assert_invariants(ledger: Ledger) -> None:
    assert [r for r in await ledger.check() if not r.ok] == []


async def funded_pair(
    ledger: Ledger, pool: asyncpg.Pool, amount: int
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    asset = await create_asset(pool, "USD", 2)
    source = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    target = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    if amount:
        await ledger.deposit(uuid.uuid4(), source, amount)
    return asset, source, target


async def test_balances_of_more_accounts_than_one_request_holds(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    """Ten thousand ids in one read (a ledger check of a large node does this): TigerBeetle
    takes fewer per request (its reply must fit one message), so the read is split as the
    cluster needs; unknown ids are None, known ones read."""
    usd = await create_asset(pool, "USD", 2)
    known = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), usd)
    ids = [uuid.uuid4() for _ in range(10_000)]
    ids[7_777] = known
    balances = await ledger.balances(ids)
    assert [i for i, b in enumerate(balances) if b is not None] == [7_777]
    assert [r for r in await ledger.check() if not r.ok] == []


async def test_concurrent_transfers_never_overdraw(ledger: Ledger, pool: asyncpg.Pool) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    results = await asyncio.gather(
        *(ledger.create_transfer(uuid.uuid4(), source, target, 1) for _ in range(1000)),
        return_exceptions=True,
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(succeeded) == 100
    assert all(isinstance(e, InsufficientLiquidity) for e in failed)
    assert (await ledger.balance(source)).available == 0
    assert (await ledger.balance(target)).posted == 100
    assert ledger.batches < 1000  # they were grouped
    await assert_invariants(ledger)


async def test_a_thousand_concurrent_holds_against_a_hundred_exactly_a_hundred_succeed(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    results = await asyncio.gather(
        *(
            ledger.create_transfer(uuid.uuid4(), source, target, 1, hold_for=timedelta(minutes=5))
            for _ in range(1000)
        ),
        return_exceptions=True,
    )
    held = [r for r in results if not isinstance(r, BaseException)]
    assert len(held) == 100
    assert all(isinstance(r, InsufficientLiquidity) for r in results if r not in held)
    assert (await ledger.balance(source)).debits_pending == 100
    await ledger.post(*(t.id for t in held[:60]))
    await ledger.void(*(t.id for t in held[60:]))
    assert (await ledger.balance(target)).posted == 60
    assert (await ledger.balance(source)).available == 40
    assert ledger.batches < 1000
    await assert_invariants(ledger)


async def test_concurrent_pending_transfers_hold_funds(ledger: Ledger, pool: asyncpg.Pool) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    held = [
        await ledger.create_transfer(
            uuid.uuid4(), source, target, 10, hold_for=timedelta(minutes=5)
        )
        for _ in range(5)
    ]
    results = await asyncio.gather(
        *(
            ledger.create_transfer(uuid.uuid4(), source, target, 1, hold_for=timedelta(minutes=5))
            for _ in range(1000)
        ),
        return_exceptions=True,
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 50
    balance = await ledger.balance(source)
    assert balance.debits_pending == 100
    assert balance.available == 0
    await ledger.void(*(t.id for t in held))
    assert (await ledger.balance(source)).available == 50
    await assert_invariants(ledger)


async def test_post_after_expiry_fails_and_releases_the_hold(pool: asyncpg.Pool) -> None:
    # Postgres only (as the next two): they set the ledger's clock, and TigerBeetle's clock is
    # its own; test_a_hold_past_its_timeout_is_released_and_cannot_be_posted runs on both.
    now = [datetime.now(UTC)]
    async with Ledger(pool, clock=lambda: now[0]) as ledger:
        _, source, target = await funded_pair(ledger, pool, 100)
        transfer = await ledger.create_transfer(
            uuid.uuid4(), source, target, 60, hold_for=timedelta(seconds=30)
        )
        assert (await ledger.balance(source)).available == 40
        now[0] += timedelta(seconds=31)
        assert (await ledger.balance(source)).available == 100  # released before any sweep
        with pytest.raises(TransferExpired):
            await ledger.post(transfer.id)
        stored = await ledger.transfer(transfer.id)
        assert stored is not None and stored.state is TransferState.EXPIRED
        assert (await ledger.balance(target)).posted == 0
        assert (await ledger.balance(source)).available == 100
        await assert_invariants(ledger)


async def test_expired_holds_are_released_by_the_sweep(pool: asyncpg.Pool) -> None:
    now = [datetime.now(UTC)]
    async with Ledger(pool, clock=lambda: now[0]) as ledger:
        _, source, target = await funded_pair(ledger, pool, 100)
        await ledger.create_transfer(
            uuid.uuid4(), source, target, 70, hold_for=timedelta(seconds=1)
        )
        now[0] += timedelta(seconds=2)
        assert await ledger.expire_pending() == 1
        async with pool.acquire() as conn:
            pending = await conn.fetchval(
                "SELECT debits_pending FROM ledger_accounts WHERE id = $1", source
            )
        assert pending == 0
        await assert_invariants(ledger)


async def test_a_replica_whose_clock_runs_ahead_does_not_expire_a_hold_another_may_still_post(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holds time out on the database's clock: a replica whose own clock is five minutes ahead
    neither sweeps nor takes the money of a hold the replica that made it is about to post."""
    async with Ledger(pool) as maker:
        _, source, target = await funded_pair(maker, pool, 100)
        hold = await maker.create_transfer(
            uuid.uuid4(), source, target, 60, hold_for=timedelta(seconds=30)
        )

        class Ahead(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Ahead:
                real = datetime.now(tz) + timedelta(minutes=5)
                return cls.fromtimestamp(real.timestamp(), tz)

        monkeypatch.setattr(batch_commit, "datetime", Ahead)
        async with Ledger(pool) as ahead:
            assert await ahead.expire_pending() == 0
            assert (await ahead.balance(source)).available == 40
            with pytest.raises(InsufficientBalance):  # nor does a short account release it
                await ahead.create_transfer(uuid.uuid4(), source, target, 50)
        monkeypatch.undo()
        [posted] = await maker.post(hold.id)
        assert posted.state is TransferState.POSTED
        assert (await maker.balance(target)).posted == 60
    await assert_invariants(maker)


async def test_a_hold_past_its_timeout_is_released_and_cannot_be_posted(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    # 2 s: read as held even on a loaded machine.
    transfer = await ledger.create_transfer(
        uuid.uuid4(), source, target, 60, hold_for=timedelta(seconds=2)
    )
    assert (await ledger.balance(source)).available == 40
    # Released at its timeout (TigerBeetle's on its own clock, within about a second more).
    deadline = asyncio.get_running_loop().time() + 20
    while (await ledger.balance(source)).available != 100:
        assert asyncio.get_running_loop().time() < deadline, "the hold was never released"
        await asyncio.sleep(0.05)
    with pytest.raises(TransferExpired):
        await ledger.post(transfer.id)
    stored = await ledger.transfer(transfer.id)
    assert stored is not None and stored.state is TransferState.EXPIRED
    assert (await ledger.balance(target)).posted == 0
    await ledger.expire_pending()
    assert (await ledger.balance(source)).available == 100
    await assert_invariants(ledger)


async def test_posting_twice_voiding_twice_and_posting_a_voided_transfer_fail(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    hold = timedelta(minutes=1)
    posted = await ledger.create_transfer(uuid.uuid4(), source, target, 10, hold_for=hold)
    voided = await ledger.create_transfer(uuid.uuid4(), source, target, 10, hold_for=hold)
    await ledger.post(posted.id)
    await ledger.void(voided.id)
    before = await ledger.balance(target)
    with pytest.raises(AlreadyPosted):
        await ledger.post(posted.id)
    with pytest.raises(AlreadyPosted):
        await ledger.void(posted.id)
    with pytest.raises(AlreadyVoided):
        await ledger.void(voided.id)
    with pytest.raises(AlreadyVoided):
        await ledger.post(voided.id)
    with pytest.raises(UnknownTransfer):
        await ledger.post(uuid.uuid4())
    assert await ledger.balance(target) == before
    assert before.posted == 10
    await assert_invariants(ledger)


async def test_replaying_a_deposit_id_moves_money_once(ledger: Ledger, pool: asyncpg.Pool) -> None:
    _, source, _ = await funded_pair(ledger, pool, 0)
    deposit_id = uuid.uuid4()
    first = await ledger.deposit(deposit_id, source, 500)
    again = await asyncio.gather(*(ledger.deposit(deposit_id, source, 500) for _ in range(10)))
    assert all(t.id == first.id for t in again)
    assert (await ledger.balance(source)).posted == 500
    with pytest.raises(TransferExists):
        await ledger.deposit(deposit_id, source, 501)
    assert (await ledger.balance(source)).posted == 500
    await assert_invariants(ledger)


async def test_one_new_transfer_id_in_both_writers_batches_moves_money_once(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    # The same new id reaching the two writers' batches at once: the second insert meets the
    # first's primary key; it must read as a replay, not as the ledger being unavailable.
    _, source, _ = await funded_pair(ledger, pool, 0)

    async def deposit_after(transfer: uuid.UUID, delay: float) -> object:
        await asyncio.sleep(delay)
        return await ledger.deposit(transfer, source, 40)

    for _ in range(10):
        transfer = uuid.uuid4()
        results = await asyncio.gather(
            *(deposit_after(transfer, 0.0003 * i) for i in range(20)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, Exception)] == []
    assert (await ledger.balance(source)).posted == 400
    await assert_invariants(ledger)


async def test_multi_leg_transfers_succeed_or_fail_together(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    usd = await create_asset(pool, "USD", 2)
    eur = await create_asset(pool, "EUR", 2)
    peer_usd = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), usd)
    pool_usd = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, usd, usd)
    pool_eur = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, eur, eur)
    wallet_eur = await ledger.ensure_account(AccountKind.WALLET_ADDRESS, uuid.uuid4(), eur)
    await ledger.deposit(uuid.uuid4(), peer_usd, 1000)
    await ledger.deposit(uuid.uuid4(), pool_eur, 50)
    legs = [
        Leg(uuid.uuid4(), peer_usd, pool_usd, 100),
        Leg(uuid.uuid4(), pool_eur, wallet_eur, 90),
    ]
    with pytest.raises(InsufficientLiquidity):
        await ledger.create_transfers(legs)
    assert (await ledger.balance(peer_usd)).posted == 1000  # the first leg did not happen
    await ledger.deposit(uuid.uuid4(), pool_eur, 50)
    created = await ledger.create_transfers(legs, hold_for=timedelta(minutes=1))
    assert len({t.group_id for t in created}) == 1
    # One leg alone is neither posted nor voided: the legs happen or are released together.
    for leg in created:
        with pytest.raises(PartialGroup):
            await ledger.post(leg.id)
        with pytest.raises(PartialGroup):
            await ledger.void(leg.id)
        held = await ledger.transfer(leg.id)
        assert held is not None and held.state is TransferState.PENDING
    await ledger.post(*(t.id for t in created))
    assert (await ledger.balance(wallet_eur)).posted == 90
    assert (await ledger.balance(pool_usd)).posted == 100
    await assert_invariants(ledger)


async def test_a_transfer_refused_for_a_balance_can_be_retried_under_its_id(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    # TigerBeetle keeps such an id as failed for good; the ledger must still take the retry.
    _, source, target = await funded_pair(ledger, pool, 10)
    transfer_id = uuid.uuid4()
    for _ in range(3):
        with pytest.raises(InsufficientLiquidity):
            await ledger.create_transfer(
                transfer_id, source, target, 50, hold_for=timedelta(minutes=1)
            )
    assert await ledger.transfer(transfer_id) is None
    await ledger.deposit(uuid.uuid4(), source, 40)
    held = await ledger.create_transfer(
        transfer_id, source, target, 50, hold_for=timedelta(minutes=1)
    )
    again = await ledger.create_transfer(
        transfer_id, source, target, 50, hold_for=timedelta(seconds=50)
    )
    assert again.id == held.id == transfer_id
    found = await ledger.transfer(transfer_id)
    assert found is not None and found.state is TransferState.PENDING
    [posted] = await ledger.post(transfer_id)
    assert posted.state is TransferState.POSTED
    with pytest.raises(AlreadyPosted):
        await ledger.post(transfer_id)
    assert [t.id for t in await ledger.transfers_of(target)] == [transfer_id]
    assert (await ledger.balance(target)).posted == 50
    await assert_invariants(ledger)


async def test_every_transfer_code_the_services_use_is_kept(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    for code in ("TRANSFER", LATE_POST_CODE):
        [made] = await ledger.create_transfers([Leg(uuid.uuid4(), source, target, 1)], code=code)
        stored = await ledger.transfer(made.id)
        assert stored is not None and stored.code == made.code == code
    withdrawal = await ledger.withdraw(uuid.uuid4(), target, 1)
    assert withdrawal.code == "WITHDRAWAL"
    assert [t.code for t in await ledger.transfers_of(target)] == [
        "TRANSFER",
        LATE_POST_CODE,
        "WITHDRAWAL",
    ]
    assert (await ledger.transfers_of(source))[0].code == "DEPOSIT"


async def test_invalid_transfers_are_refused_with_their_own_errors(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    other_asset = await create_asset(pool, "EUR", 2)
    elsewhere = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), other_asset)
    with pytest.raises(InvalidAmount):
        await ledger.create_transfer(uuid.uuid4(), source, target, 0)
    with pytest.raises(InvalidAmount):
        await ledger.create_transfer(uuid.uuid4(), source, target, 2**64)
    with pytest.raises(SameAccounts):
        await ledger.create_transfer(uuid.uuid4(), source, source, 1)
    with pytest.raises(DifferentAssets):
        await ledger.create_transfer(uuid.uuid4(), source, elsewhere, 1)
    with pytest.raises(UnknownAccount):
        await ledger.create_transfer(uuid.uuid4(), source, uuid.uuid4(), 1)
    assert (await ledger.balance(source)).posted == 100
    await assert_invariants(ledger)


async def test_withdrawals_are_two_phase_and_limited_by_settlement(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, _ = await funded_pair(ledger, pool, 100)
    withdrawal = await ledger.withdraw(uuid.uuid4(), source, 30, hold_for=timedelta(minutes=1))
    assert (await ledger.balance(source)).available == 70
    await ledger.post(withdrawal.id)
    assert (await ledger.balance(source)).posted == 70
    with pytest.raises(InsufficientBalance):
        await ledger.withdraw(uuid.uuid4(), source, 71)
    await assert_invariants(ledger)


async def test_total_sent_and_received_and_transfers_of_an_account(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    _, source, target = await funded_pair(ledger, pool, 100)
    for amount in (5, 7):
        await ledger.create_transfer(uuid.uuid4(), source, target, amount)
    balance = await ledger.balance(source)
    assert balance.debits_posted == 12  # total sent
    assert (await ledger.balance(target)).credits_posted == 12  # total received
    assert [t.amount for t in await ledger.transfers_of(target)] == [5, 7]


async def test_a_credit_limit_caps_what_an_account_receives_under_concurrency(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    asset, source, _ = await funded_pair(ledger, pool, 1000)
    invoice = await ledger.ensure_account(AccountKind.INCOMING_PAYMENT, uuid.uuid4(), asset)
    results = await asyncio.gather(
        *(
            ledger.create_transfers([Leg(uuid.uuid4(), source, invoice, 3, credit_limit=100)])
            for _ in range(100)
        ),
        return_exceptions=True,
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 33
    assert all(isinstance(r, CreditLimitExceeded) for r in results if isinstance(r, BaseException))
    assert (await ledger.balance(invoice)).credits_posted == 99
    await assert_invariants(ledger)


async def test_held_credits_count_against_the_limit_until_voided(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    asset, source, _ = await funded_pair(ledger, pool, 1000)
    invoice = await ledger.ensure_account(AccountKind.INCOMING_PAYMENT, uuid.uuid4(), asset)
    hold = timedelta(minutes=1)

    def leg(amount: int) -> Leg:
        return Leg(uuid.uuid4(), source, invoice, amount, credit_limit=100)

    [held] = await ledger.create_transfers([leg(70)], hold_for=hold)
    with pytest.raises(CreditLimitExceeded):
        await ledger.create_transfers([leg(31)], hold_for=hold)
    await ledger.void(held.id)
    [again] = await ledger.create_transfers([leg(100)], hold_for=hold)
    await ledger.post(again.id)
    with pytest.raises(CreditLimitExceeded):
        await ledger.create_transfers([leg(1)])
    balance = await ledger.balance(invoice)
    assert (balance.credits_posted, balance.credits_pending) == (100, 0)
    assert (await ledger.balance(source)).posted == 900
    await assert_invariants(ledger)


async def test_accounts_created_concurrently_on_first_use_exist_once(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    asset = await create_asset(pool, "USD", 2)
    owner = uuid.uuid4()
    ids = await asyncio.gather(
        *(ledger.ensure_account(AccountKind.INCOMING_PAYMENT, owner, asset) for _ in range(50))
    )
    assert len(set(ids)) == 1
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM ledger_accounts WHERE owner_id = $1", owner)
            == 1
        )
