"""The outgoing payment lifecycle: the table walked over every pair of states, and every store
function run against real Postgres (the schema the migrations build) from every state."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from tests.connector.harness import create_asset, create_wallet
from tests.ledger.schema import schema_pool

from kiungo.events import OUTGOING_PAYMENT_EVENT_ROW, OUTGOING_PAYMENT_EVENT_ROW_LOCKED, EventType
from kiungo.ledger import Ledger
from kiungo.models import OutgoingPaymentState
from kiungo.payments.lifecycle import IllegalTransition
from kiungo.payments.outgoing import ENDED, LIFECYCLE, States, store

# Written out again here, from Rafiki's lifecycle, rather than read from the module under test.
EXPECTED = {
    (OutgoingPaymentState.FUNDING, OutgoingPaymentState.SENDING),
    (OutgoingPaymentState.FUNDING, OutgoingPaymentState.CANCELLED),
    (OutgoingPaymentState.SENDING, OutgoingPaymentState.COMPLETED),
    (OutgoingPaymentState.SENDING, OutgoingPaymentState.FAILED),
}


def test_the_states_are_the_models_enum() -> None:
    assert States is OutgoingPaymentState


@pytest.mark.parametrize("old", list(States))
@pytest.mark.parametrize("new", list(States))
def test_every_pair_of_states_is_allowed_exactly_when_rafikis_lifecycle_allows_it(
    old: States, new: States
) -> None:
    if (old, new) in EXPECTED:
        LIFECYCLE.check(old, new)
        assert new in LIFECYCLE.allowed(old)
        assert old in LIFECYCLE.sources(new)
    else:
        with pytest.raises(IllegalTransition):
            LIFECYCLE.check(old, new)
        assert new not in LIFECYCLE.allowed(old)
        assert old not in LIFECYCLE.sources(new)


def test_a_payment_ends_completed_failed_or_cancelled() -> None:
    assert {States.COMPLETED, States.FAILED, States.CANCELLED} == ENDED
    assert {s for s in States if LIFECYCLE.is_final(s)} == ENDED


# -- the store against Postgres ----------------------------------------------------------------


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # The tables as kiungo.models defines them: the store's SQL is checked against the models.
    async with schema_pool(database_url) as pool:
        yield pool


async def _new_payment(pool: asyncpg.Pool) -> uuid.UUID:
    """A quote and its payment, created FUNDING through the store."""
    async with pool.acquire() as conn, Ledger(pool) as ledger:
        asset = await conn.fetchval("SELECT id FROM assets WHERE code = 'USD' AND scale = 2")
        if asset is None:
            asset = await create_asset(conn, "USD", 2)
        wallet = await create_wallet(conn, ledger, asset, f"/w{uuid.uuid4().hex[:8]}")
        quote = uuid.uuid4()
        await conn.execute(
            "INSERT INTO quotes (id, wallet_address_id, asset_id, receiver, debit_amount,"
            " receive_amount, receive_asset_code, receive_asset_scale, expires_at)"
            " VALUES ($1, $2, $3, 'https://elsewhere.example/incoming-payments/x', 500, 490,"
            " 'USD', 2, $4)",
            quote, wallet, asset, datetime.now(UTC) + timedelta(minutes=5),
        )  # fmt: skip
        payment = uuid.uuid4()
        await store.create(conn, payment, wallet, quote, '{"note": "hi"}', datetime.now(UTC))
    return payment


async def _set_state(pool: asyncpg.Pool, payment: uuid.UUID, state: States) -> None:
    await pool.execute("UPDATE outgoing_payments SET state = $2 WHERE id = $1", payment, state)


async def _sending_payment(pool: asyncpg.Pool, **columns: object) -> uuid.UUID:
    """A new payment set SENDING, with ``columns`` as given."""
    payment = await _new_payment(pool)
    names = ["state", *columns]
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    await pool.execute(
        f"UPDATE outgoing_payments SET {sets} WHERE id = $1",
        payment, States.SENDING, *columns.values(),
    )  # fmt: skip
    return payment


async def _row(pool: asyncpg.Pool, payment: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outgoing_payments WHERE id = $1", payment)
    assert row is not None
    return row


async def _events(pool: asyncpg.Pool, payment: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT type, data, withdrawal_amount FROM webhook_events WHERE resource_id = $1"
            " ORDER BY created_at, id",
            payment,
        )
    )


Transition = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[bool]]


async def _cancel(conn: asyncpg.Connection, payment: uuid.UUID) -> bool:
    row = await OUTGOING_PAYMENT_EVENT_ROW.fetchrow(conn, id=payment)
    assert row is not None
    return await store.cancel(conn, row, '{"cancellationReason": "no"}', withdrawal=None)


async def _complete(conn: asyncpg.Connection, payment: uuid.UUID) -> bool:
    return await store.complete(conn, payment, 480, 470, withdrawal=None)


async def _fail(conn: asyncpg.Connection, payment: uuid.UUID) -> bool:
    return await store.fail(conn, payment, "broken", None, None, withdrawal=None)


TRANSITIONS: dict[States, tuple[Transition, EventType | None]] = {
    States.SENDING: (store.fund, None),
    States.CANCELLED: (_cancel, EventType.OUTGOING_PAYMENT_CANCELLED),
    States.COMPLETED: (_complete, EventType.OUTGOING_PAYMENT_COMPLETED),
    States.FAILED: (_fail, EventType.OUTGOING_PAYMENT_FAILED),
}


async def test_each_store_transition_moves_the_row_only_from_the_states_the_table_allows(
    pool: asyncpg.Pool,
) -> None:
    for old in States:
        for new, (transition, event) in TRANSITIONS.items():
            payment = await _new_payment(pool)
            await _set_state(pool, payment, old)
            before = await _events(pool, payment)
            async with pool.acquire() as conn:
                moved = await transition(conn, payment)
            allowed = (old, new) in EXPECTED
            assert moved is allowed, (old, new)
            assert (await _row(pool, payment))["state"] == (new if allowed else old)
            added = (await _events(pool, payment))[len(before) :]
            if allowed and event is not None:
                assert [e["type"] for e in added] == [event.value]
                assert json.loads(added[0]["data"])["state"] == new.value
            else:
                assert added == [], (old, new)


async def test_create_writes_a_funding_payment_and_its_created_event(pool: asyncpg.Pool) -> None:
    payment = await _new_payment(pool)
    row = await _row(pool, payment)
    assert row["state"] == States.FUNDING
    assert row["state_attempts"] == 0
    [event] = await _events(pool, payment)
    assert event["type"] == EventType.OUTGOING_PAYMENT_CREATED.value
    data = json.loads(event["data"])
    assert data["state"] == States.FUNDING.value
    assert data["metadata"] == {"note": "hi"}
    assert data["debitAmount"]["value"] == "500"


async def test_a_second_payment_of_one_quote_is_refused(pool: asyncpg.Pool) -> None:
    payment = await _new_payment(pool)
    row = await _row(pool, payment)
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(asyncpg.UniqueViolationError):
            await store.create(
                conn,
                uuid.uuid4(),
                row["wallet_address_id"],
                row["quote_id"],
                None,
                datetime.now(UTC),
            )


async def test_funding_clears_process_at_so_the_worker_takes_it_at_once(
    pool: asyncpg.Pool,
) -> None:
    payment = await _new_payment(pool)
    await pool.execute("UPDATE outgoing_payments SET process_at = now() WHERE id = $1", payment)
    async with pool.acquire() as conn:
        assert await store.fund(conn, payment)
    assert (await _row(pool, payment))["process_at"] is None


async def test_cancelling_keeps_the_metadata_and_offers_the_withdrawal(
    pool: asyncpg.Pool,
) -> None:
    payment = await _new_payment(pool)
    account = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        row = await OUTGOING_PAYMENT_EVENT_ROW_LOCKED.fetchrow(conn, id=payment)
        assert row is not None
        asset = row["asset_id"]
        metadata = '{"note": "hi", "cancellationReason": "changed my mind"}'
        assert await store.cancel(conn, row, metadata, withdrawal=(account, asset, 7))
    stored = await _row(pool, payment)
    assert json.loads(stored["metadata"]) == {"note": "hi", "cancellationReason": "changed my mind"}
    event = (await _events(pool, payment))[-1]
    data = json.loads(event["data"])
    assert data["state"] == States.CANCELLED.value
    assert data["metadata"]["cancellationReason"] == "changed my mind"
    assert data["withdrawal"] == {"accountId": str(account), "assetId": str(asset), "amount": "7"}
    assert event["withdrawal_amount"] == 7


async def test_completing_writes_the_final_amounts_and_clears_the_error(
    pool: asyncpg.Pool,
) -> None:
    payment = await _sending_payment(pool, error="earlier", process_at=datetime.now(UTC))
    async with pool.acquire() as conn:
        assert await store.complete(conn, payment, 480, 470, withdrawal=None)
    row = await _row(pool, payment)
    assert (row["sent_amount"], row["delivered_amount"]) == (480, 470)
    assert row["error"] is None
    assert row["process_at"] is None
    data = json.loads((await _events(pool, payment))[-1]["data"])
    assert data["sentAmount"]["value"] == "480"
    assert "withdrawal" not in data


async def test_failing_counts_the_attempt_and_keeps_unknown_amounts(pool: asyncpg.Pool) -> None:
    payment = await _sending_payment(pool, sent_amount=30, delivered_amount=29, state_attempts=2)
    async with pool.acquire() as conn:
        assert await store.fail(conn, payment, "no route", None, None, withdrawal=None)
    row = await _row(pool, payment)
    assert (row["state_attempts"], row["sent_amount"], row["delivered_amount"]) == (3, 30, 29)
    assert row["error"] == "no route"
    data = json.loads((await _events(pool, payment))[-1]["data"])
    assert (data["error"], data["stateAttempts"]) == ("no route", 3)


async def test_a_retry_and_a_postponement_touch_only_a_sending_payment(
    pool: asyncpg.Pool,
) -> None:
    for state in States:
        await _retry_and_postpone(pool, state)


async def _retry_and_postpone(pool: asyncpg.Pool, state: States) -> None:
    payment = await _new_payment(pool)
    await _set_state(pool, payment, state)
    before = await _row(pool, payment)
    events = len(await _events(pool, payment))
    async with pool.acquire() as conn:
        retried = await store.retry(conn, payment, timedelta(seconds=30), 10, None)
        after_retry = await _row(pool, payment)
        postponed = await store.postpone(conn, payment, timedelta(seconds=60), 12, 11)
    after = await _row(pool, payment)
    sending = state is States.SENDING
    assert retried is postponed is sending
    assert len(await _events(pool, payment)) == events  # neither raises an event
    assert after["state"] == state
    if sending:
        assert after_retry["state_attempts"] == before["state_attempts"] + 1
        assert (after_retry["sent_amount"], after_retry["delivered_amount"]) == (10, 0)
        assert after_retry["process_at"] > datetime.now(UTC) + timedelta(seconds=20)
        assert after["state_attempts"] == after_retry["state_attempts"]  # not an attempt
        assert (after["sent_amount"], after["delivered_amount"]) == (12, 11)
        assert after["process_at"] > datetime.now(UTC) + timedelta(seconds=50)
    else:
        assert after == before


async def test_a_transition_outside_a_transaction_writes_its_event_in_one_of_its_own(
    pool: asyncpg.Pool,
) -> None:
    payment = await _new_payment(pool)
    await _set_state(pool, payment, States.SENDING)
    # The events table refuses the insert: the state change must not survive without it.
    await pool.execute(
        "ALTER TABLE webhook_events ADD CONSTRAINT no_completed CHECK (type <> $$"
        + EventType.OUTGOING_PAYMENT_COMPLETED.value
        + "$$)"
    )
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await store.complete(conn, payment, 1, 1, withdrawal=None)
    assert (await _row(pool, payment))["state"] == States.SENDING


async def test_the_locked_row_tells_the_state_the_lease_and_the_attempts(
    pool: asyncpg.Pool,
) -> None:
    payment = await _new_payment(pool)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.locked(conn, payment)
        assert row is not None
        assert (row["state"], row["process_at"], row["state_attempts"]) == (
            States.FUNDING,
            None,
            0,
        )
        assert await store.locked(conn, uuid.uuid4()) is None
