"""Open Payments grant limits on outgoing payments: what a grant has spent in its current
interval, and the check every payment created under a grant passes before it is written.

The check runs in the transaction that creates the payment, after locking the grant's row
(``SELECT … FOR UPDATE``): two payments under one grant are checked one after the other, so
the second sees the first and two payments cannot both pass a limit only one fits.

What a payment spends: its quote's debit and receive amounts; a FAILED one only what it sent
(and the share of its receive amount that sent amount stands for); a CANCELLED one nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, String, bindparam, case, func, select

from kiungo.models import Asset, Grant, OutgoingPayment, Quote
from kiungo.models.sql import Statement, table
from kiungo.openpayments.intervals import current_interval, parse_interval
from kiungo.payments.outgoing.states import States
from kiungo.payments.quotes.quoting import Amount

__all__ = ["GrantLimits", "Spent", "lock_grant", "spent", "window"]

_p = table(OutgoingPayment)
_q = table(Quote)
_g = table(Grant)
_a = table(Asset)

_failed = _p.c.state == States.FAILED
_SPENT = Statement(
    select(
        func.coalesce(
            func.sum(case((_failed, _p.c.sent_amount), else_=_q.c.debit_amount)), 0
        ).label("debit"),
        func.coalesce(
            func.sum(
                case(
                    (
                        _failed,
                        func.div(_q.c.receive_amount * _p.c.sent_amount, _q.c.debit_amount),
                    ),
                    else_=_q.c.receive_amount,
                )
            ),
            0,
        ).label("receive"),
        func.count().label("payments"),
        func.max(_q.c.receive_asset_code).label("receive_asset_code"),
        func.max(_q.c.receive_asset_scale).label("receive_asset_scale"),
        func.max(_a.c.code).label("debit_asset_code"),
        func.max(_a.c.scale).label("debit_asset_scale"),
    )
    .select_from(_p.join(_q, _q.c.id == _p.c.quote_id).join(_a, _a.c.id == _q.c.asset_id))
    .where(
        _p.c.grant_id == bindparam("grant_id", type_=String),
        _p.c.state != States.CANCELLED,
        _p.c.created_at >= bindparam("since", type_=DateTime(timezone=True)),
        _p.c.created_at < bindparam("until", type_=DateTime(timezone=True)),
    )
)
_LOCK_GRANT = Statement(select(_g.c.id).where(_g.c.id == bindparam("id")).with_for_update())

# Bounds standing for "no interval": every payment of the grant.
_EVER = (
    datetime.fromisoformat("0001-01-01T00:00:00+00:00"),
    datetime.fromisoformat("9999-12-31T00:00:00+00:00"),
)


@dataclass(frozen=True)
class GrantLimits:
    """An outgoing-payment grant as the payment it authorizes is checked against it."""

    grant_id: uuid.UUID
    debit: Amount | None = None
    receive: Amount | None = None
    receiver: str | None = None
    interval: str | None = None

    @classmethod
    def of(cls, grant_id: uuid.UUID, limits: Mapping[str, Any] | None) -> GrantLimits:
        """From an access item's (checked) ``limits``."""
        limits = limits or {}

        def amount(raw: Any) -> Amount | None:
            if raw is None:
                return None
            return Amount(int(raw["value"]), raw["assetCode"], raw["assetScale"])

        return cls(
            grant_id,
            amount(limits.get("debitAmount")),
            amount(limits.get("receiveAmount")),
            limits.get("receiver"),
            limits.get("interval"),
        )


@dataclass(frozen=True)
class Spent:
    debit: int
    receive: int
    payments: int
    # The payments' assets (None without payments; one of them, should the grant's payments
    # have paid receivers in several).
    debit_asset: tuple[str, int] | None = None
    receive_asset: tuple[str, int] | None = None


def window(limits: GrantLimits, now: datetime) -> tuple[datetime, datetime] | None:
    """The current interval of the grant's limits (all time without one); None when ``now``
    is in no repetition of it (before the first, after the last)."""
    if limits.interval is None:
        return _EVER
    return current_interval(parse_interval(limits.interval), now)


async def lock_grant(conn: asyncpg.Connection, grant_id: uuid.UUID) -> bool:
    """Lock the grant's row until the transaction ends; False when there is no such grant."""
    return await _LOCK_GRANT.fetchval(conn, id=grant_id) is not None


async def spent(
    executor: asyncpg.Connection | asyncpg.Pool,
    grant_id: uuid.UUID,
    bounds: tuple[datetime, datetime],
) -> Spent:
    """What the grant's payments created within ``bounds`` spent."""
    row = await _SPENT.fetchrow(executor, grant_id=str(grant_id), since=bounds[0], until=bounds[1])
    assert row is not None
    if row["debit_asset_code"] is None:
        return Spent(int(row["debit"]), int(row["receive"]), int(row["payments"]))
    return Spent(
        int(row["debit"]),
        int(row["receive"]),
        int(row["payments"]),
        (row["debit_asset_code"], int(row["debit_asset_scale"])),
        (row["receive_asset_code"], int(row["receive_asset_scale"])),
    )
