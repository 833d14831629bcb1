"""Every write of an outgoing payment's state, each with its webhook event.

One function per transition (and the two writes of a SENDING payment that are not one: a
retry, counted in ``state_attempts``, and a postponement). Each is one guarded ``UPDATE``:
``state = ANY(sources)`` from :data:`~kiungo.payments.outgoing.states.LIFECYCLE`, so a row
another writer already moved on is left alone, and the function answers whether the row moved.
The event (:func:`kiungo.events.insert_event`) is written only then, in the same transaction:
the caller's when it has one open, else one of the function's own.

The SQL is written out for asyncpg (the worker's outcome is on the payment path); the tests
(tests/payments/test_outgoing_lifecycle.py) run every statement against the tables
:mod:`kiungo.models` creates.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from kiungo.events import (
    OUTGOING_PAYMENT_EVENT_ROW,
    EventType,
    insert_event,
    outgoing_payment_data,
)
from kiungo.payments.outgoing.states import LIFECYCLE, States

__all__ = [
    "Withdrawal",
    "cancel",
    "complete",
    "create",
    "fail",
    "fund",
    "locked",
    "postpone",
    "retry",
]

Withdrawal = tuple[uuid.UUID, uuid.UUID, int]
"""What an ending event offers for withdrawal: (account id, asset id, amount)."""


def _sources(new: States) -> list[str]:
    return sorted(s.value for s in LIFECYCLE.sources(new))


_CREATE = """
INSERT INTO outgoing_payments (id, wallet_address_id, quote_id, state, metadata, created_at,
                               updated_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6)
"""

_CANCEL = """
UPDATE outgoing_payments SET state = $2, metadata = $3::jsonb, updated_at = now()
WHERE id = $1 AND state = ANY($4::text[])
"""

_FUND = """
UPDATE outgoing_payments SET state = $2, process_at = NULL, updated_at = now()
WHERE id = $1 AND state = ANY($3::text[])
"""

_COMPLETE = """
UPDATE outgoing_payments SET state = $2, process_at = NULL, error = NULL, sent_amount = $3,
    delivered_amount = $4, updated_at = now()
WHERE id = $1 AND state = ANY($5::text[])
"""

_FAIL = """
UPDATE outgoing_payments SET state = $2, process_at = NULL, error = $3,
    state_attempts = state_attempts + 1, sent_amount = coalesce($4, sent_amount),
    delivered_amount = coalesce($5, delivered_amount), updated_at = now()
WHERE id = $1 AND state = ANY($6::text[])
"""

_RETRY = """
UPDATE outgoing_payments SET state_attempts = state_attempts + 1,
    process_at = now() + $3::interval, sent_amount = coalesce($4, sent_amount),
    delivered_amount = coalesce($5, delivered_amount), updated_at = now()
WHERE id = $1 AND state = $2
"""

_POSTPONE = """
UPDATE outgoing_payments SET process_at = now() + $3::interval, sent_amount = $4,
    delivered_amount = $5, updated_at = now()
WHERE id = $1 AND state = $2
"""

_LOCKED = """
SELECT state, process_at, state_attempts FROM outgoing_payments WHERE id = $1 FOR UPDATE
"""


@contextlib.asynccontextmanager
async def _atomic(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """The caller's transaction, or one of our own when it has none."""
    if conn.is_in_transaction():
        yield
    else:
        async with conn.transaction():
            yield


def _moved(status: str) -> bool:
    return status.endswith(" 1")


async def _event(
    conn: asyncpg.Connection,
    event: EventType,
    payment_id: uuid.UUID,
    withdrawal: Withdrawal | None,
) -> None:
    row = await conn.fetchrow(OUTGOING_PAYMENT_EVENT_ROW, payment_id)
    assert row is not None
    await insert_event(conn, event, payment_id, outgoing_payment_data(row), withdrawal=withdrawal)


async def create(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    wallet_address_id: uuid.UUID,
    quote_id: uuid.UUID,
    metadata: str | None,
    now: datetime,
) -> None:
    """A new payment of a quote, FUNDING, with its ``outgoing_payment.created`` event.

    Raises :class:`asyncpg.UniqueViolationError` when the quote already has a payment."""
    async with _atomic(conn):
        await conn.execute(
            _CREATE, payment_id, wallet_address_id, quote_id, States.FUNDING.value, metadata, now
        )
        # The debit amount in the event is what depositOutgoingPaymentLiquidity will fund.
        await _event(conn, EventType.OUTGOING_PAYMENT_CREATED, payment_id, None)


async def cancel(
    conn: asyncpg.Connection,
    payment: Mapping[str, Any],
    metadata: str | None,
    *,
    withdrawal: Withdrawal | None,
) -> bool:
    """FUNDING → CANCELLED with ``metadata`` (JSON text) and its ``outgoing_payment.cancelled``
    event. ``payment`` is the row of :data:`kiungo.events.OUTGOING_PAYMENT_EVENT_ROW` as read
    before (the event carries it with the new state and metadata)."""
    payment_id = payment["id"]
    async with _atomic(conn):
        status = await conn.execute(
            _CANCEL,
            payment_id,
            States.CANCELLED.value,
            metadata,
            _sources(States.CANCELLED),
        )
        if not _moved(status):
            return False
        data = outgoing_payment_data(
            {**dict(payment), "metadata": metadata}, state=States.CANCELLED.value
        )
        await insert_event(
            conn, EventType.OUTGOING_PAYMENT_CANCELLED, payment_id, data, withdrawal=withdrawal
        )
    return True


async def fund(conn: asyncpg.Connection, payment_id: uuid.UUID) -> bool:
    """FUNDING → SENDING once its account holds the debit amount: the connector's worker takes
    it from now (``process_at`` NULL: at once)."""
    status = await conn.execute(_FUND, payment_id, States.SENDING.value, _sources(States.SENDING))
    return _moved(status)


async def complete(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    sent: int,
    delivered: int,
    *,
    withdrawal: Withdrawal | None,
) -> bool:
    """SENDING → COMPLETED with its final amounts and its ``outgoing_payment.completed`` event."""
    return await _end(conn, payment_id, States.COMPLETED, _COMPLETE, (sent, delivered), withdrawal)


async def fail(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    error: str,
    sent: int | None,
    delivered: int | None,
    *,
    withdrawal: Withdrawal | None,
) -> bool:
    """SENDING → FAILED with ``error``, its last attempt counted, and its
    ``outgoing_payment.failed`` event; a None amount keeps the row's."""
    return await _end(conn, payment_id, States.FAILED, _FAIL, (error, sent, delivered), withdrawal)


_ENDING_EVENTS = {
    States.COMPLETED: EventType.OUTGOING_PAYMENT_COMPLETED,
    States.FAILED: EventType.OUTGOING_PAYMENT_FAILED,
}


async def _end(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    new: States,
    statement: str,
    values: tuple[object, ...],
    withdrawal: Withdrawal | None,
) -> bool:
    """The worker's ending of a payment: ``statement`` takes the id, the new state, ``values``
    and the guard's source states, in that order."""
    async with _atomic(conn):
        status = await conn.execute(statement, payment_id, new.value, *values, _sources(new))
        if not _moved(status):
            return False
        await _event(conn, _ENDING_EVENTS[new], payment_id, withdrawal)
    return True


async def retry(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    backoff: timedelta,
    sent: int | None,
    delivered: int | None,
) -> bool:
    """A failed attempt of a SENDING payment that will be tried again: one more attempt
    counted, taken again after ``backoff``; a None amount keeps the row's. No event."""
    status = await conn.execute(_RETRY, payment_id, States.SENDING.value, backoff, sent, delivered)
    return _moved(status)


async def postpone(
    conn: asyncpg.Connection, payment_id: uuid.UUID, wait: timedelta, sent: int, delivered: int
) -> bool:
    """Not an attempt: a SENDING payment looked at again after ``wait``, with its amounts as
    known so far (no attempt counted, no event)."""
    status = await conn.execute(_POSTPONE, payment_id, States.SENDING.value, wait, sent, delivered)
    return _moved(status)


async def locked(conn: asyncpg.Connection, payment_id: uuid.UUID) -> asyncpg.Record | None:
    """The payment's state, ``process_at`` and ``state_attempts``, its row locked until the
    caller's transaction ends (so that the outcome written next is decided on them)."""
    row: asyncpg.Record | None = await conn.fetchrow(_LOCKED, payment_id)
    return row
