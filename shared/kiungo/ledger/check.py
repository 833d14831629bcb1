"""Ledger invariants checked on a live database (``kiungo ledger check``).

Each check is one SQL query returning the rows that break it; an empty result means it holds.
The queries are built from the models (:class:`kiungo.models.sql.Statement`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import Column, Select, and_, distinct, func, or_, select
from sqlalchemy.sql.elements import Label

from kiungo.ledger.accounts import AccountKind
from kiungo.ledger.rules import TransferState
from kiungo.models import LedgerAccount, LedgerTransfer
from kiungo.models.sql import Statement, table

__all__ = ["CHECKS", "CheckResult", "run_checks"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    description: str
    violations: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


_accounts = table(LedgerAccount)
_transfers = table(LedgerTransfer)

_BALANCES = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def _ledger_balances() -> Select[Any]:
    a = _accounts.c
    return (
        select(a.asset_id, *(func.sum(a[name]).label(name) for name in _BALANCES))
        .group_by(a.asset_id)
        .having(
            or_(
                func.sum(a.debits_posted) != func.sum(a.credits_posted),
                func.sum(a.debits_pending) != func.sum(a.credits_pending),
            )
        )
    )


def _account_balances_match_transfers() -> Select[Any]:
    a = _accounts.alias("a")
    t = _transfers.alias("t")

    def total(side: Column[Any], state: TransferState, name: str) -> Label[Any]:
        moved = func.sum(t.c.amount).filter(side == a.c.id, t.c.state == state)
        return func.coalesce(moved, 0).label(name)

    debit, credit = t.c.debit_account_id, t.c.credit_account_id
    sums = (
        select(
            a.c.id,
            total(debit, TransferState.POSTED, "dp"),
            total(credit, TransferState.POSTED, "cp"),
            total(debit, TransferState.PENDING, "dq"),
            total(credit, TransferState.PENDING, "cq"),
        )
        .select_from(a.outerjoin(t, or_(debit == a.c.id, credit == a.c.id)))
        .group_by(a.c.id)
        .cte("sums")
    )
    # The account's balance and its transfers' sum, for each of the four balances.
    pairs = list(zip(_BALANCES, (sums.c.dp, sums.c.cp, sums.c.dq, sums.c.cq), strict=True))
    return (
        select(
            a.c.id.label("account_id"),
            *(
                column
                for name, summed in pairs
                for column in (a.c[name], summed.label(f"transfers_{name}"))
            ),
        )
        .select_from(a.join(sums, sums.c.id == a.c.id))
        .where(or_(*(a.c[name] != summed for name, summed in pairs)))
    )


def _account_flags() -> Select[Any]:
    a = _accounts.c
    settlement = a.kind == AccountKind.SETTLEMENT
    return select(a.id.label("account_id"), a.kind, *(a[name] for name in _BALANCES)).where(
        or_(
            and_(~settlement, a.debits_posted + a.debits_pending > a.credits_posted),
            and_(settlement, a.credits_posted + a.credits_pending > a.debits_posted),
        )
    )


def _transfer_legs_agree() -> Select[Any]:
    t = _transfers.c
    return (
        select(t.group_id, func.array_agg(distinct(t.state)).label("states"))
        .where(t.group_id.is_not(None))
        .group_by(t.group_id)
        .having(func.count(distinct(t.state)) > 1)
    )


def _transfer_assets() -> Select[Any]:
    t = _transfers.alias("t")
    d = _accounts.alias("d")
    c = _accounts.alias("c")
    return (
        select(t.c.id.label("transfer_id"))
        .select_from(
            t.outerjoin(d, d.c.id == t.c.debit_account_id).outerjoin(
                c, c.c.id == t.c.credit_account_id
            )
        )
        .where(
            or_(
                d.c.id.is_(None),
                c.c.id.is_(None),
                d.c.asset_id != t.c.asset_id,
                c.c.asset_id != t.c.asset_id,
            )
        )
    )


CHECKS: tuple[tuple[str, str, Statement], ...] = (
    (
        "ledger_balances",
        "per asset, posted debits equal posted credits and pending debits equal pending credits",
        Statement(_ledger_balances()),
    ),
    (
        "account_balances_match_transfers",
        "every account's balances equal the sums of its transfers",
        Statement(_account_balances_match_transfers()),
    ),
    (
        "account_flags",
        "no liquidity account debited beyond its credits, no settlement account credited "
        "beyond its debits",
        Statement(_account_flags()),
    ),
    (
        "transfer_legs_agree",
        "the legs of a multi-leg transfer are all in one state",
        Statement(_transfer_legs_agree()),
    ),
    (
        "transfer_assets",
        "both accounts of every transfer exist and hold the transfer's asset",
        Statement(_transfer_assets()),
    ),
)


async def run_checks(conn: asyncpg.Connection) -> list[CheckResult]:
    """Run every check in one repeatable-read snapshot so they see one consistent state."""
    results = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, description, query in CHECKS:
            rows = await query.fetch(conn)
            results.append(
                CheckResult(name, description, [{k: _plain(v) for k, v in r.items()} for r in rows])
            )
    return results


def _plain(value: object) -> object:
    if isinstance(value, int | str | bool) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)
