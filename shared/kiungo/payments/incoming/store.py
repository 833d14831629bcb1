"""Every change of an incoming payment's state, each with its webhook event.

One function per transition of :data:`~kiungo.payments.incoming.states.LIFECYCLE`: an
``UPDATE`` guarded by ``state IN (<the states it may come from>)``, so a payment another writer
has moved on is left alone, and the event in the same transaction. Each returns whether the
payment moved. They run in the caller's transaction (the caller may hold locks, such as the
expiry worker's on the ledger account, that must cover the change); outside one they refuse.

Each statement is a :class:`~kiungo.models.sql.Statement` built from the models' table and
states, compiled once (the connector completes payments on its packet path).
tests/payments/test_incoming_lifecycle.py prepares every one against the models' schema.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Connection
from sqlalchemy import ColumnElement, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB

from kiungo.events import EventType, incoming_payment_data, insert_event
from kiungo.ledger import AccountKind, account_id_for
from kiungo.models import IncomingPayment, WebhookEvent
from kiungo.models.sql import Statement, table
from kiungo.payments.incoming.states import LIFECYCLE, States

__all__ = ["STATEMENTS", "Asset", "cancel", "complete", "create", "expire", "mark_processing"]

Asset = tuple[str, int]
"""An asset's code and scale, as the events write amounts in it."""

_payments = table(IncomingPayment)
_events = table(WebhookEvent)

# What an event needs of the payment, besides its asset's code and scale.
_RETURNING = (
    _payments.c.id,
    _payments.c.wallet_address_id,
    _payments.c.asset_id,
    _payments.c.incoming_amount,
    _payments.c.expires_at,
    _payments.c.metadata,
    _payments.c.client,
    _payments.c.created_at,
)


def _in(states: frozenset[States] | set[States]) -> ColumnElement[bool]:
    """``state IN (...)``, the states as literals in the enum's order: the planner matches
    literals to the partial index on open payments (``ix_incoming_payments_open_expiry``),
    which a parameter would not."""
    return _payments.c.state.in_([s for s in States if s in states])


def _move(new: States, **values: Any) -> Any:
    """The guarded ``UPDATE`` of one payment (``id``) to ``new``: only from the states the
    lifecycle allows."""
    return (
        update(_payments)
        .where(_payments.c.id == bindparam("id"), _in(LIFECYCLE.sources(new)))
        .values(state=new, updated_at=func.now(), **values)
    )


_created = (
    insert(_payments)
    .values(
        id=bindparam("id"),
        wallet_address_id=bindparam("wallet_address_id"),
        asset_id=bindparam("asset_id"),
        incoming_amount=bindparam("incoming_amount"),
        expires_at=bindparam("expires_at"),
        metadata=bindparam("metadata"),
        client=bindparam("client"),
        sender_wallet_address=bindparam("sender_wallet_address"),
        created_at=bindparam("created_at"),
        updated_at=bindparam("created_at"),
    )
    .returning(_payments.c.id)
    .cte("payment")
)
_CREATE = Statement(
    insert(_events).from_select(
        ["id", "type", "resource_id", "data", "process_at", "created_at", "updated_at"],
        select(
            bindparam("event_id", type_=_events.c.id.type),
            bindparam("event_type", type_=_events.c.type.type),
            _created.c.id,
            bindparam("data", type_=JSONB),
            bindparam("created_at", type_=_events.c.created_at.type),
            bindparam("created_at", type_=_events.c.created_at.type),
            bindparam("created_at", type_=_events.c.created_at.type),
        ).select_from(_created),
    )
)
_MARK_PROCESSING = Statement(_move(States.PROCESSING))
_COMPLETE = Statement(
    _move(States.COMPLETED, received_amount=bindparam("received")).returning(*_RETURNING)
)
_EXPIRE = Statement(
    _move(States.EXPIRED, received_amount=bindparam("received")).returning(*_RETURNING)
)
# Cancelling is expiring now, and only a payment that has received nothing: PENDING.
LIFECYCLE.check(States.PENDING, States.EXPIRED)
_CANCEL = Statement(
    update(_payments)
    .where(_payments.c.id == bindparam("id"), _in({States.PENDING}))
    .values(
        state=States.EXPIRED,
        expires_at=func.now(),
        updated_at=func.now(),
        cancelled_at=func.now(),
        cancellation_reason=bindparam("reason"),
    )
)

STATEMENTS = (_CREATE, _MARK_PROCESSING, _COMPLETE, _EXPIRE, _CANCEL)
"""Every statement of this module, for the test that checks them against the models."""


async def create(
    conn: asyncpg.Pool | asyncpg.Connection,
    wallet: Mapping[str, Any],
    *,
    incoming_amount: int | None,
    expires_at: datetime,
    metadata: dict[str, Any] | None,
    created_at: datetime,
    client: str | None = None,
    sender_wallet_address: str | None = None,
) -> dict[str, Any]:
    """Create a PENDING incoming payment of ``wallet`` (a row of
    :data:`~kiungo.payments.receivers.WALLET_ADDRESS_RECEIVER_BY_ID`) with its
    ``incoming_payment.created`` event, in one statement (one round trip, so no transaction is
    needed); returns it as a row. ``client`` is the Open Payments client creating it (in the
    row and the event's data), None through the admin API."""
    code, scale = wallet["asset_code"], wallet["asset_scale"]
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "wallet_address_id": wallet["id"],
        "asset_id": wallet["asset_id"],
        "incoming_amount": incoming_amount,
        "received_amount": 0,
        "state": States.PENDING.value,
        "expires_at": expires_at,
        "metadata": metadata,
        "client": client,
        "sender_wallet_address": sender_wallet_address,
        "cancelled_at": None,
        "cancellation_reason": None,
        "created_at": created_at,
        "asset_code": code,
        "asset_scale": scale,
    }
    data = incoming_payment_data(
        row, asset_code=code, asset_scale=scale, received=0, state=States.PENDING.value
    )
    await _CREATE.execute(
        conn,
        id=row["id"],
        wallet_address_id=row["wallet_address_id"],
        asset_id=row["asset_id"],
        incoming_amount=incoming_amount,
        expires_at=expires_at,
        metadata=None if metadata is None else json.dumps(metadata, allow_nan=False),
        client=client,
        sender_wallet_address=sender_wallet_address,
        created_at=created_at,
        event_id=uuid.uuid4(),
        event_type=EventType.INCOMING_PAYMENT_CREATED.value,
        data=json.dumps(data),
    )
    return row


async def mark_processing(conn: asyncpg.Connection, payment_id: uuid.UUID) -> bool:
    """A PENDING payment that received its first money is PROCESSING (no event, as Rafiki)."""
    result = await _MARK_PROCESSING.execute(conn, id=payment_id)
    return result == "UPDATE 1"


async def complete(conn: Connection, payment_id: uuid.UUID, received: int, asset: Asset) -> bool:
    """An open payment is COMPLETED, having received ``received``; its
    ``incoming_payment.completed`` event offers that for withdrawal (nothing when 0)."""
    return await _end(conn, States.COMPLETED, payment_id, received, asset)


async def expire(conn: Connection, payment_id: uuid.UUID, received: int, asset: Asset) -> bool:
    """An open payment past its expiry is EXPIRED, having received ``received``; with
    anything received, its ``incoming_payment.expired`` event offers it for withdrawal (with
    nothing, there is nothing to say)."""
    return await _end(conn, States.EXPIRED, payment_id, received, asset)


async def cancel(
    conn: asyncpg.Connection, payment_id: uuid.UUID, reason: str | None = None
) -> bool:
    """A PENDING payment is cancelled: EXPIRED now, with when (``cancelled_at``) and
    ``reason`` recorded (no event: it received nothing)."""
    result = await _CANCEL.execute(conn, id=payment_id, reason=reason)
    return result == "UPDATE 1"


_ENDINGS = {
    States.COMPLETED: (_COMPLETE, EventType.INCOMING_PAYMENT_COMPLETED, True),
    States.EXPIRED: (_EXPIRE, EventType.INCOMING_PAYMENT_EXPIRED, False),
}
"""Per final state: its statement, its event, and whether the event is raised with nothing
received (a completion is news; an expiry with nothing to withdraw is not)."""


async def _end(
    conn: asyncpg.Connection,
    state: States,
    payment_id: uuid.UUID,
    received: int,
    asset: Asset,
) -> bool:
    if not conn.is_in_transaction():
        raise RuntimeError("an incoming payment changes state inside its caller's transaction")
    statement, event_type, even_empty = _ENDINGS[state]
    row = await statement.fetchrow(conn, id=payment_id, received=received)
    if row is None:
        return False
    if received == 0 and not even_empty:
        return True
    data = incoming_payment_data(
        row, asset_code=asset[0], asset_scale=asset[1], received=received, state=state.value
    )
    withdrawal = (
        None
        if received == 0
        else (account_id_for(AccountKind.INCOMING_PAYMENT, row["id"]), row["asset_id"], received)
    )
    await insert_event(conn, event_type, row["id"], data, withdrawal=withdrawal)
    return True
