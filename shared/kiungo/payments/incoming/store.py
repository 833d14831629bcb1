"""Every change of an incoming payment's state, each with its webhook event.

One function per transition of :data:`~kiungo.payments.incoming.states.LIFECYCLE`: an
``UPDATE`` guarded by ``state IN (<the states it may come from>)``, so a payment another writer
has moved on is left alone, and the event in the same transaction. Each returns whether the
payment moved. They run in the caller's transaction (the caller may hold locks, such as the
expiry worker's on the ledger account, that must cover the change); outside one they refuse.

Raw SQL: the connector completes payments on its packet path. tests/payments/
test_incoming_lifecycle.py prepares every statement against the schema the models define.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Connection

from kiungo.events import EventType, incoming_payment_data, insert_event
from kiungo.ledger import AccountKind, account_id_for
from kiungo.payments.incoming.states import LIFECYCLE, States, sql_list

__all__ = ["STATEMENTS", "Asset", "cancel", "complete", "create", "expire", "mark_processing"]

Asset = tuple[str, int]
"""An asset's code and scale, as the events write amounts in it."""

# What an event needs of the payment, besides its asset's code and scale.
_RETURNING = (
    "RETURNING id, wallet_address_id, asset_id, incoming_amount, expires_at, metadata, "
    "client, created_at"
)


def _guard(new: States) -> str:
    return f"WHERE id = $1 AND state IN {sql_list(LIFECYCLE.sources(new))}"


_CREATE = """
WITH payment AS (
    INSERT INTO incoming_payments (id, wallet_address_id, asset_id, incoming_amount, expires_at,
                                   metadata, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7)
    RETURNING id
)
INSERT INTO webhook_events (id, type, resource_id, data, process_at, created_at, updated_at)
SELECT $8, $9, payment.id, $10::jsonb, $7, $7, $7 FROM payment
"""
# Built once from the states' names, never from input: hence the S608 noqa.
_MARK_PROCESSING = (
    f"UPDATE incoming_payments SET state = '{States.PROCESSING.value}', updated_at = now() "  # noqa: S608
    f"{_guard(States.PROCESSING)}"
)
_COMPLETE = (
    f"UPDATE incoming_payments SET state = '{States.COMPLETED.value}', received_amount = $2, "  # noqa: S608
    f"updated_at = now() {_guard(States.COMPLETED)} {_RETURNING}"
)
_EXPIRE = (
    f"UPDATE incoming_payments SET state = '{States.EXPIRED.value}', received_amount = $2, "  # noqa: S608
    f"updated_at = now() {_guard(States.EXPIRED)} {_RETURNING}"
)
# Cancelling is expiring now, and only a payment that has received nothing: PENDING.
LIFECYCLE.check(States.PENDING, States.EXPIRED)
_CANCEL = (
    f"UPDATE incoming_payments SET state = '{States.EXPIRED.value}', expires_at = now(), "  # noqa: S608
    f"updated_at = now() WHERE id = $1 AND state IN {sql_list([States.PENDING])}"
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
) -> dict[str, Any]:
    """Create a PENDING incoming payment of ``wallet`` (a row of
    :data:`~kiungo.payments.receivers.WALLET_ADDRESS_RECEIVER`) with its
    ``incoming_payment.created`` event, in one statement (one round trip, so no transaction is
    needed); returns it as a row."""
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
        "client": None,
        "created_at": created_at,
        "asset_code": code,
        "asset_scale": scale,
    }
    data = incoming_payment_data(
        row, asset_code=code, asset_scale=scale, received=0, state=States.PENDING.value
    )
    await conn.execute(
        _CREATE,
        row["id"],
        row["wallet_address_id"],
        row["asset_id"],
        incoming_amount,
        expires_at,
        None if metadata is None else json.dumps(metadata, allow_nan=False),
        created_at,
        uuid.uuid4(),
        EventType.INCOMING_PAYMENT_CREATED.value,
        json.dumps(data),
    )
    return row


async def mark_processing(conn: asyncpg.Connection, payment_id: uuid.UUID) -> bool:
    """A PENDING payment that received its first money is PROCESSING (no event, as Rafiki)."""
    result: str = await conn.execute(_MARK_PROCESSING, payment_id)
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


async def cancel(conn: asyncpg.Connection, payment_id: uuid.UUID) -> bool:
    """A PENDING payment is cancelled: EXPIRED now (no event: it received nothing)."""
    result: str = await conn.execute(_CANCEL, payment_id)
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
    row = await conn.fetchrow(statement, payment_id, received)
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
