"""Every write of an outgoing payment's state, each with its webhook event.

One function per transition (and the two writes of a SENDING payment that are not one: a
retry, counted in ``state_attempts``, and a postponement). Each is one guarded ``UPDATE``:
``state IN (sources)`` from :data:`~kiungo.payments.outgoing.states.LIFECYCLE`, so a row
another writer already moved on is left alone, and the function answers whether the row moved.
The event (:func:`kiungo.events.insert_event`) is written only then, in the same transaction:
the caller's when it has one open, else one of the function's own.

Each statement is a :class:`~kiungo.models.sql.Statement` built from the models' table and
states, compiled once for asyncpg (the worker's outcome is on the payment path); the tests
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
from sqlalchemy import ColumnElement, Interval, bindparam, func, insert, null, select, update

from kiungo.events import (
    OUTGOING_PAYMENT_EVENT_ROW,
    EventType,
    insert_event,
    outgoing_payment_data,
)
from kiungo.models import OutgoingPayment
from kiungo.models.sql import Statement, table
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

_payments = table(OutgoingPayment)
_c = _payments.c


def _from(new: States) -> ColumnElement[bool]:
    """The guard of the transition to ``new``: ``state IN`` the states it may come from."""
    return _c.state.in_(sorted(LIFECYCLE.sources(new)))


def _guarded(new: States) -> Any:
    """The ``UPDATE`` of one payment (``id``) to ``new``, guarded by :func:`_from`."""
    return (
        update(_payments)
        .where(_c.id == bindparam("id"), _from(new))
        .values(state=new, updated_at=func.now())
    )


def _sending() -> Any:
    """The ``UPDATE`` of one SENDING payment (``id``) that stays SENDING."""
    return (
        update(_payments)
        .where(_c.id == bindparam("id"), _c.state == States.SENDING)
        .values(updated_at=func.now())
    )


def _or_kept(column: Any, name: str) -> Any:
    """The bind ``name``, or the row's value when it is None."""
    return func.coalesce(bindparam(name, type_=column.type), column)


_CREATE = Statement(
    insert(_payments).values(
        id=bindparam("id"),
        wallet_address_id=bindparam("wallet_address_id"),
        quote_id=bindparam("quote_id"),
        state=States.FUNDING,
        metadata=bindparam("metadata"),
        client=bindparam("client"),
        grant_id=bindparam("grant_id"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)

_CANCEL = Statement(_guarded(States.CANCELLED).values(metadata=bindparam("metadata")))

_FUND = Statement(_guarded(States.SENDING).values(process_at=null()))

_COMPLETE = Statement(
    _guarded(States.COMPLETED).values(
        process_at=null(),
        error=null(),
        sent_amount=bindparam("sent"),
        delivered_amount=bindparam("delivered"),
    )
)

_FAIL = Statement(
    _guarded(States.FAILED).values(
        process_at=null(),
        error=bindparam("error"),
        state_attempts=_c.state_attempts + 1,
        sent_amount=_or_kept(_c.sent_amount, "sent"),
        delivered_amount=_or_kept(_c.delivered_amount, "delivered"),
    )
)

_RETRY = Statement(
    _sending().values(
        state_attempts=_c.state_attempts + 1,
        process_at=func.now() + bindparam("backoff", type_=Interval),
        sent_amount=_or_kept(_c.sent_amount, "sent"),
        delivered_amount=_or_kept(_c.delivered_amount, "delivered"),
    )
)

_POSTPONE = Statement(
    _sending().values(
        process_at=func.now() + bindparam("wait", type_=Interval),
        sent_amount=bindparam("sent"),
        delivered_amount=bindparam("delivered"),
    )
)

_LOCKED = Statement(
    select(_c.state, _c.process_at, _c.state_attempts)
    .where(_c.id == bindparam("id"))
    .with_for_update()
)


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
    row = await OUTGOING_PAYMENT_EVENT_ROW.fetchrow(conn, id=payment_id)
    assert row is not None
    await insert_event(conn, event, payment_id, outgoing_payment_data(row), withdrawal=withdrawal)


async def create(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    wallet_address_id: uuid.UUID,
    quote_id: uuid.UUID,
    metadata: str | None,
    now: datetime,
    client: str | None = None,
    grant_id: str | None = None,
) -> None:
    """A new payment of a quote, FUNDING, with its ``outgoing_payment.created`` event; made by
    Open Payments ``client`` under grant ``grant_id`` (both None through the admin API).

    Raises :class:`asyncpg.UniqueViolationError` when the quote already has a payment."""
    async with _atomic(conn):
        await _CREATE.execute(
            conn,
            id=payment_id,
            wallet_address_id=wallet_address_id,
            quote_id=quote_id,
            metadata=metadata,
            client=client,
            grant_id=grant_id,
            now=now,
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
        status = await _CANCEL.execute(conn, id=payment_id, metadata=metadata)
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
    status = await _FUND.execute(conn, id=payment_id)
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
    return await _end(
        conn,
        payment_id,
        States.COMPLETED,
        _COMPLETE,
        {"sent": sent, "delivered": delivered},
        withdrawal,
    )


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
    values = {"error": error, "sent": sent, "delivered": delivered}
    return await _end(conn, payment_id, States.FAILED, _FAIL, values, withdrawal)


_ENDING_EVENTS = {
    States.COMPLETED: EventType.OUTGOING_PAYMENT_COMPLETED,
    States.FAILED: EventType.OUTGOING_PAYMENT_FAILED,
}


async def _end(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    new: States,
    statement: Statement,
    values: Mapping[str, object],
    withdrawal: Withdrawal | None,
) -> bool:
    """The worker's ending of a payment: ``statement`` (guarded by the states ``new`` may
    come from) takes the id and ``values``."""
    async with _atomic(conn):
        status = await statement.execute(conn, id=payment_id, **values)
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
    status = await _RETRY.execute(
        conn, id=payment_id, backoff=backoff, sent=sent, delivered=delivered
    )
    return _moved(status)


async def postpone(
    conn: asyncpg.Connection, payment_id: uuid.UUID, wait: timedelta, sent: int, delivered: int
) -> bool:
    """Not an attempt: a SENDING payment looked at again after ``wait``, with its amounts as
    known so far (no attempt counted, no event)."""
    status = await _POSTPONE.execute(conn, id=payment_id, wait=wait, sent=sent, delivered=delivered)
    return _moved(status)


async def locked(conn: asyncpg.Connection, payment_id: uuid.UUID) -> asyncpg.Record | None:
    """The payment's state, ``process_at`` and ``state_attempts``, its row locked until the
    caller's transaction ends (so that the outcome written next is decided on them)."""
    return await _LOCKED.fetchrow(conn, id=payment_id)
