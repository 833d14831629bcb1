"""The sending fee a quote charges: an asset's latest SENDING fee, ``fixed`` plus
``basis_points`` of what is sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy import bindparam, select

from kiungo.models import Fee, FeeType
from kiungo.models.sql import Statement, table

__all__ = ["SendingFee", "sending_fee"]

_fees = table(Fee)
_FEE = Statement(
    select(_fees.c.id, _fees.c.fixed_fee, _fees.c.basis_point_fee)
    .where(_fees.c.asset_id == bindparam("asset_id"), _fees.c.type == FeeType.SENDING)
    .order_by(_fees.c.created_at.desc(), _fees.c.id.desc())
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class SendingFee:
    """An asset's sending fee; ``id`` None when it has none."""

    id: uuid.UUID | None
    fixed: int
    basis_points: int

    def on(self, sent: int) -> int:
        """The fee for sending ``sent``: fixed plus the basis points, rounded up."""
        return self.fixed + -(-sent * self.basis_points // 10_000)

    def sendable(self, debit: int) -> int:
        """The most that ``debit`` can send with its fee paid (0 when it cannot pay the fee)."""
        spare = debit - self.fixed
        if spare <= 0:
            return 0
        return spare * 10_000 // (10_000 + self.basis_points)


async def sending_fee(pool: asyncpg.Pool, asset_id: uuid.UUID) -> SendingFee:
    """The asset's latest SENDING fee (none: zero)."""
    row = await _FEE.fetchrow(pool, asset_id=asset_id)
    if row is None:
        return SendingFee(None, 0, 0)
    return SendingFee(row["id"], int(row["fixed_fee"]), int(row["basis_point_fee"]))
