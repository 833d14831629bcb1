"""The incoming payment's lifecycle: the table walked over every pair of states, and each store
function against real Postgres on the schema the models define (not the migrations: the
store's raw SQL is checked against the models themselves)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from tests.ledger.schema import schema_connection

from kiungo.backend.workers import _DUE_INCOMING_PAYMENTS
from kiungo.events import EventType
from kiungo.ledger import AccountKind, account_id_for
from kiungo.payments.incoming import ENDED, LIFECYCLE, OPEN, States, store
from kiungo.payments.lifecycle import IllegalTransition
from kiungo.payments.receivers import (
    INCOMING_PAYMENT_RECEIVER_BY_ID,
    WALLET_ADDRESS_RECEIVER_BY_ID,
    WALLET_ADDRESS_RECEIVER_BY_URL,
)

USD = ("USD", 2)

# Rafiki's incoming payment lifecycle, written out here rather than read from the module.
EXPECTED = {
    (States.PENDING, States.PROCESSING),
    (States.PENDING, States.COMPLETED),
    (States.PENDING, States.EXPIRED),
    (States.PROCESSING, States.COMPLETED),
    (States.PROCESSING, States.EXPIRED),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(States, States)))
def test_every_pair_of_states_is_allowed_exactly_as_rafiki_allows_it(
    old: States, new: States
) -> None:
    allowed = (old, new) in EXPECTED
    assert (new in LIFECYCLE.allowed(old), old in LIFECYCLE.sources(new)) == (allowed, allowed)
    if allowed:
        LIFECYCLE.check(old, new)
        return
    with pytest.raises(IllegalTransition, match=f"{old} → {new}"):
        LIFECYCLE.check(old, new)


def test_open_payments_accept_money_and_ended_ones_may_be_withdrawn() -> None:
    assert {States.PENDING, States.PROCESSING} == OPEN
    assert {States.COMPLETED, States.EXPIRED} == ENDED


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database whose schema is the models' own (``create_all``)."""
    async with schema_connection(database_url) as connection:
        yield connection


async def test_every_statement_prepares_against_the_models_schema(
    conn: asyncpg.Connection,
) -> None:
    for statement in (
        *(s.sql for s in store.STATEMENTS),
        INCOMING_PAYMENT_RECEIVER_BY_ID.sql,
        WALLET_ADDRESS_RECEIVER_BY_ID.sql,
        WALLET_ADDRESS_RECEIVER_BY_URL.sql,
        _DUE_INCOMING_PAYMENTS.sql,
    ):
        await conn.prepare(statement)


async def _payment(conn: asyncpg.Connection, incoming_amount: int | None = 500) -> uuid.UUID:
    asset_id, wallet_id = uuid.uuid4(), uuid.uuid4()
    # One asset per payment: an asset is unique by code and scale, so each gets a code of its own.
    await conn.execute(
        "INSERT INTO assets (id, code, scale) VALUES ($1, $2, 2)", asset_id, asset_id.hex[:8]
    )
    await conn.execute(
        "INSERT INTO wallet_addresses (id, url, asset_id) VALUES ($1, $2, $3)",
        wallet_id,
        f"https://wallet.example/{wallet_id}",
        asset_id,
    )
    wallet = await WALLET_ADDRESS_RECEIVER_BY_ID.fetchrow(conn, id=wallet_id)
    assert wallet is not None
    now = datetime.now(UTC)
    row = await store.create(
        conn,
        wallet,
        incoming_amount=incoming_amount,
        expires_at=now + timedelta(hours=1),
        metadata={"order": 7},
        created_at=now,
    )
    payment_id: uuid.UUID = row["id"]
    return payment_id


async def _state(conn: asyncpg.Connection, payment_id: uuid.UUID) -> tuple[str, int]:
    row = await conn.fetchrow(
        "SELECT state, received_amount FROM incoming_payments WHERE id = $1", payment_id
    )
    assert row is not None
    return row["state"], int(row["received_amount"])


async def _events(conn: asyncpg.Connection, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT type, data, withdrawal_account_id, withdrawal_amount FROM webhook_events "
        "WHERE resource_id = $1 ORDER BY seq",
        payment_id,
    )
    return [
        {
            "type": r["type"],
            "data": json.loads(r["data"]),
            "account": r["withdrawal_account_id"],
            "amount": None if r["withdrawal_amount"] is None else int(r["withdrawal_amount"]),
        }
        for r in rows
    ]


async def test_create_writes_a_pending_payment_and_its_created_event(
    conn: asyncpg.Connection,
) -> None:
    payment = await _payment(conn)
    assert await _state(conn, payment) == (States.PENDING, 0)
    [created] = await _events(conn, payment)
    assert created["type"] == EventType.INCOMING_PAYMENT_CREATED.value
    assert created["data"]["state"] == "PENDING" and created["data"]["metadata"] == {"order": 7}
    assert created["data"]["incomingAmount"]["value"] == "500"


async def test_first_money_makes_a_pending_payment_processing_once(
    conn: asyncpg.Connection,
) -> None:
    payment = await _payment(conn)
    assert await store.mark_processing(conn, payment)
    assert await _state(conn, payment) == (States.PROCESSING, 0)
    assert not await store.mark_processing(conn, payment)
    assert len(await _events(conn, payment)) == 1  # Rafiki raises no event for it


async def test_complete_moves_an_open_payment_once_with_its_withdrawable_event(
    conn: asyncpg.Connection,
) -> None:
    payment = await _payment(conn)
    await store.mark_processing(conn, payment)
    async with conn.transaction():
        assert await store.complete(conn, payment, 500, USD)
    async with conn.transaction():
        assert not await store.complete(conn, payment, 700, USD)
        assert not await store.expire(conn, payment, 700, USD)
    assert await _state(conn, payment) == (States.COMPLETED, 500)
    _, completed = await _events(conn, payment)
    assert completed["type"] == EventType.INCOMING_PAYMENT_COMPLETED.value
    assert completed["data"]["completed"] is True and completed["data"]["state"] == "COMPLETED"
    assert completed["data"]["receivedAmount"]["value"] == "500"
    assert completed["account"] == account_id_for(AccountKind.INCOMING_PAYMENT, payment)
    assert completed["amount"] == 500


async def test_completing_with_nothing_received_offers_nothing_to_withdraw(
    conn: asyncpg.Connection,
) -> None:
    payment = await _payment(conn, incoming_amount=None)
    async with conn.transaction():
        assert await store.complete(conn, payment, 0, USD)
    _, completed = await _events(conn, payment)
    assert completed["account"] is None and completed["amount"] is None
    assert "withdrawal" not in completed["data"]


async def test_expire_raises_an_event_only_when_money_arrived(conn: asyncpg.Connection) -> None:
    empty, paid = await _payment(conn), await _payment(conn)
    await store.mark_processing(conn, paid)
    async with conn.transaction():
        assert await store.expire(conn, empty, 0, USD)
        assert await store.expire(conn, paid, 120, USD)
        assert not await store.expire(conn, paid, 120, USD)
        assert not await store.complete(conn, paid, 120, USD)
    assert await _state(conn, empty) == (States.EXPIRED, 0)
    assert await _state(conn, paid) == (States.EXPIRED, 120)
    assert [e["type"] for e in await _events(conn, empty)] == ["incoming_payment.created"]
    _, expired = await _events(conn, paid)
    assert expired["type"] == EventType.INCOMING_PAYMENT_EXPIRED.value
    assert expired["data"]["state"] == "EXPIRED" and expired["amount"] == 120


async def test_cancel_expires_only_a_pending_payment_now(conn: asyncpg.Connection) -> None:
    pending, processing = await _payment(conn), await _payment(conn)
    await store.mark_processing(conn, processing)
    assert await store.cancel(conn, pending)
    assert not await store.cancel(conn, processing)
    assert await _state(conn, pending) == (States.EXPIRED, 0)
    assert await _state(conn, processing) == (States.PROCESSING, 0)
    expires_at = await conn.fetchval(
        "SELECT expires_at FROM incoming_payments WHERE id = $1", pending
    )
    assert expires_at <= datetime.now(UTC)


async def test_a_change_with_an_event_refuses_to_run_outside_a_transaction(
    conn: asyncpg.Connection,
) -> None:
    payment = await _payment(conn)
    with pytest.raises(RuntimeError, match="transaction"):
        await store.complete(conn, payment, 500, USD)
    with pytest.raises(RuntimeError, match="transaction"):
        await store.expire(conn, payment, 0, USD)
    assert await _state(conn, payment) == (States.PENDING, 0)
