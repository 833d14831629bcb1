"""Webhook events: the outbox rows both services write in the transaction of the change they
report (DESIGN §7), and the ``data`` shapes of each type, as Rafiki's webhook bodies have them.

The backend's worker delivers them; the connector only writes them (an incoming payment it
completes, for example).
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, insert, select

from kiungo.models import (
    Asset,
    IncomingPaymentState,
    OutgoingPayment,
    Quote,
    WebhookEvent,
)
from kiungo.models.sql import Statement, stored_json, table

__all__ = [
    "OUTGOING_PAYMENT_EVENT_ROW",
    "OUTGOING_PAYMENT_EVENT_ROW_LOCKED",
    "EventType",
    "amount_json",
    "incoming_payment_data",
    "insert_event",
    "iso_time",
    "outgoing_payment_data",
]


class EventType(enum.StrEnum):
    INCOMING_PAYMENT_CREATED = "incoming_payment.created"
    INCOMING_PAYMENT_COMPLETED = "incoming_payment.completed"
    INCOMING_PAYMENT_EXPIRED = "incoming_payment.expired"
    OUTGOING_PAYMENT_CREATED = "outgoing_payment.created"
    OUTGOING_PAYMENT_COMPLETED = "outgoing_payment.completed"
    OUTGOING_PAYMENT_FAILED = "outgoing_payment.failed"
    OUTGOING_PAYMENT_CANCELLED = "outgoing_payment.cancelled"
    WALLET_ADDRESS_WEB_MONETIZATION = "wallet_address.web_monetization"
    WALLET_ADDRESS_NOT_FOUND = "wallet_address.not_found"
    ASSET_LIQUIDITY_LOW = "asset.liquidity_low"
    ASSET_LIQUIDITY_HIGH = "asset.liquidity_high"
    PEER_LIQUIDITY_LOW = "peer.liquidity_low"
    PEER_LIQUIDITY_HIGH = "peer.liquidity_high"


def iso_time(moment: datetime | None) -> str | None:
    """A timestamp as JavaScript's ``toISOString`` writes it."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def amount_json(value: int, code: str, scale: int) -> dict[str, Any]:
    return {"value": str(value), "assetCode": code, "assetScale": scale}


def incoming_payment_data(
    payment: asyncpg.Record | dict[str, Any],
    *,
    asset_code: str,
    asset_scale: int,
    received: int,
    state: str,
) -> dict[str, Any]:
    """An incoming payment as its webhook events carry it."""
    data: dict[str, Any] = {
        "id": str(payment["id"]),
        "walletAddressId": str(payment["wallet_address_id"]),
        "state": state,
        "completed": state == IncomingPaymentState.COMPLETED,
        "receivedAmount": amount_json(received, asset_code, asset_scale),
        "createdAt": iso_time(payment["created_at"]),
        "expiresAt": iso_time(payment["expires_at"]),
    }
    if payment["incoming_amount"] is not None:
        data["incomingAmount"] = amount_json(
            int(payment["incoming_amount"]), asset_code, asset_scale
        )
    if payment["metadata"] is not None:
        metadata = payment["metadata"]
        data["metadata"] = stored_json(metadata)
    if payment["client"] is not None:
        data["client"] = payment["client"]
    cancelled_at = payment.get("cancelled_at")
    if cancelled_at is not None:
        data["cancelledAt"] = iso_time(cancelled_at)  # as Rafiki's data has it
    return data


_events = table(WebhookEvent)
_p = table(OutgoingPayment).alias("p")
_q = table(Quote).alias("q")
_a = table(Asset).alias("a")

# The columns outgoing_payment_data reads, for one payment (``id``): the payment with its
# quote's receiver and amounts, the codes and scales of both assets, and the sender's asset id
# (for an event's withdrawal).
_EVENT_ROW = (
    select(
        _p.c.id,
        _p.c.wallet_address_id,
        _p.c.state,
        _p.c.error,
        _p.c.state_attempts,
        _p.c.sent_amount,
        _p.c.metadata,
        _p.c.created_at,
        _q.c.asset_id,
        _q.c.receiver,
        _q.c.debit_amount,
        _q.c.receive_amount,
        _q.c.receive_asset_code,
        _q.c.receive_asset_scale,
        _a.c.code.label("asset_code"),
        _a.c.scale.label("asset_scale"),
    )
    .select_from(_p.join(_q, _q.c.id == _p.c.quote_id).join(_a, _a.c.id == _q.c.asset_id))
    .where(_p.c.id == bindparam("id"))
)
OUTGOING_PAYMENT_EVENT_ROW = Statement(_EVENT_ROW)
"""One outgoing payment (``id=``) as :func:`outgoing_payment_data` reads it."""
OUTGOING_PAYMENT_EVENT_ROW_LOCKED = Statement(_EVENT_ROW.with_for_update(of=_p))
"""The same, the payment's row locked (``FOR UPDATE OF p``) until the transaction ends."""

_INSERT_EVENT = Statement(
    insert(_events).values(
        id=bindparam("id"),
        type=bindparam("type"),
        resource_id=bindparam("resource_id"),
        data=bindparam("data"),
        process_at=func.now(),
        withdrawal_account_id=bindparam("account_id"),
        withdrawal_asset_id=bindparam("asset_id"),
        withdrawal_amount=bindparam("amount"),
    )
)


def outgoing_payment_data(
    payment: asyncpg.Record | dict[str, Any],
    *,
    state: str | None = None,
    sent: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """An outgoing payment as its webhook events carry it.

    ``payment`` has the columns of :data:`OUTGOING_PAYMENT_EVENT_ROW`; ``state``, ``sent`` and
    ``error`` override the stored state, sent amount and error (the values being written in the
    same transaction as the event)."""
    code, scale = payment["asset_code"], payment["asset_scale"]
    sent_amount = int(payment["sent_amount"]) if sent is None else sent
    data: dict[str, Any] = {
        "id": str(payment["id"]),
        "walletAddressId": str(payment["wallet_address_id"]),
        "state": payment["state"] if state is None else state,
        "receiver": payment["receiver"],
        "debitAmount": amount_json(int(payment["debit_amount"]), code, scale),
        "receiveAmount": amount_json(
            int(payment["receive_amount"]),
            payment["receive_asset_code"],
            payment["receive_asset_scale"],
        ),
        "sentAmount": amount_json(sent_amount, code, scale),
        "createdAt": iso_time(payment["created_at"]),
        "stateAttempts": int(payment["state_attempts"]),
    }
    if payment["metadata"] is not None:
        metadata = payment["metadata"]
        data["metadata"] = stored_json(metadata)
    failure = payment["error"] if error is None else error
    if failure is not None:
        data["error"] = failure
    return data


async def insert_event(
    conn: asyncpg.Connection,
    event_type: EventType,
    resource_id: uuid.UUID | None,
    data: dict[str, Any],
    *,
    withdrawal: tuple[uuid.UUID, uuid.UUID, int] | None = None,
) -> uuid.UUID:
    """Write one event to the outbox, due for delivery now. ``withdrawal`` is the account,
    asset and amount the receiver of the event may withdraw; it is also put in ``data``."""
    event_id = uuid.uuid4()
    if withdrawal is not None:
        account_id, asset_id, amount = withdrawal
        data = {
            **data,
            "withdrawal": {
                "accountId": str(account_id),
                "assetId": str(asset_id),
                "amount": str(amount),
            },
        }
    await _INSERT_EVENT.execute(
        conn,
        id=event_id,
        type=event_type.value,
        resource_id=resource_id,
        data=json.dumps(data),
        account_id=None if withdrawal is None else withdrawal[0],
        asset_id=None if withdrawal is None else withdrawal[1],
        amount=None if withdrawal is None else withdrawal[2],
    )
    return event_id
