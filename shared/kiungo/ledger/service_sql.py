"""The Postgres ledger's statements other than its batch's (:class:`kiungo.ledger.Ledger`):
accounts, balances, history, the sweep's read and the balance copy of
:meth:`~kiungo.ledger.Ledger.sync_balances`, each built from the models
(:class:`kiungo.models.sql.Statement`). The batch's own are raw SQL
(:mod:`kiungo.ledger.batch_sql`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Numeric,
    String,
    Uuid,
    any_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import Label

from kiungo.ledger.rules import TransferState
from kiungo.models import LedgerAccount, LedgerTransfer
from kiungo.models.sql import Statement, table

__all__ = [
    "ACCOUNTS_OF_KINDS",
    "ACCOUNT_FACTS",
    "BALANCE",
    "COPY_BALANCES",
    "CREDITS_HISTORY",
    "DEBITS_HISTORY",
    "EXPIRED_HOLDS",
    "INSERT_ACCOUNT",
    "TRANSFER",
    "TRANSFERS_OF",
]

_accounts = table(LedgerAccount)
_transfers = table(LedgerTransfer)
# A transfer as kiungo.ledger.batch_sql.transfer_from_row reads it.
_TRANSFER_COLUMNS = (
    _transfers.c.id,
    _transfers.c.asset_id,
    _transfers.c.debit_account_id,
    _transfers.c.credit_account_id,
    _transfers.c.amount,
    _transfers.c.state,
    _transfers.c.expires_at,
    _transfers.c.group_id,
    _transfers.c.code,
)
# ``coalesce($n, statement_timestamp())``: the database's clock but in tests (Ledger._test_now).
_NOW = func.coalesce(
    bindparam("test_now", type_=DateTime(timezone=True)), func.statement_timestamp()
)

# An account's row in the map (its balances start at 0), made once.
INSERT_ACCOUNT = Statement(
    insert(_accounts)
    .values({name: bindparam(name) for name in ("id", "asset_id", "kind", "owner_id")})
    .on_conflict_do_nothing()
)

ACCOUNT_FACTS = Statement(
    select(_accounts.c.asset_id, _accounts.c.kind).where(_accounts.c.id == bindparam("id"))
)


def _balance() -> Statement:
    """An account's balances less its holds past their timeout (not yet released)."""
    now = select(_NOW.label("t")).subquery("now")
    account = _accounts.alias("a")

    def expired(side: str) -> Label[Any]:
        held = (
            select(func.sum(_transfers.c.amount))
            .where(
                _transfers.c.state == TransferState.PENDING,
                _transfers.c.expires_at <= now.c.t,
                _transfers.c[f"{side}_account_id"] == account.c.id,
            )
            .scalar_subquery()
        )
        pending = account.c[f"{side}s_pending"] - func.coalesce(held, 0)
        return pending.label(f"{side}s_pending")

    return Statement(
        select(
            account.c.kind,
            account.c.debits_posted,
            account.c.credits_posted,
            expired("debit"),
            expired("credit"),
        )
        .select_from(account, now)
        .where(account.c.id == bindparam("id"))
    )


BALANCE = _balance()

TRANSFERS_OF = Statement(
    select(*_TRANSFER_COLUMNS)
    .where(
        or_(
            _transfers.c.debit_account_id == bindparam("account_id"),
            _transfers.c.credit_account_id == bindparam("account_id"),
        )
    )
    .order_by(_transfers.c.created_at, _transfers.c.id)
    .limit(bindparam("limit"))
)


def _history(side: str) -> Statement:
    """The newest transfers on ``side`` (debit or credit) of any of the accounts."""
    return Statement(
        select(*_TRANSFER_COLUMNS, _transfers.c.created_at)
        .where(
            _transfers.c[f"{side}_account_id"] == any_(bindparam("account_ids", type_=ARRAY(Uuid)))
        )
        .order_by(_transfers.c.created_at.desc(), _transfers.c.id.desc())
        .limit(bindparam("limit"))
    )


DEBITS_HISTORY = _history("debit")
CREDITS_HISTORY = _history("credit")

TRANSFER = Statement(select(*_TRANSFER_COLUMNS).where(_transfers.c.id == bindparam("id")))

# Each transfer (the legs of one together) whose hold is past its timeout.
EXPIRED_HOLDS = Statement(
    select(func.array_agg(_transfers.c.id).label("ids"))
    .where(_transfers.c.state == TransferState.PENDING, _transfers.c.expires_at <= _NOW)
    .group_by(func.coalesce(_transfers.c.group_id, _transfers.c.id))
    .limit(bindparam("limit"))
)

ACCOUNTS_OF_KINDS = Statement(
    select(_accounts.c.id).where(_accounts.c.kind == any_(bindparam("kinds", type_=ARRAY(String))))
)

# The balance columns of a ledger that keeps its balances elsewhere (TigerBeetle), written
# where they changed.
_copied = (
    func.unnest(
        bindparam("ids", type_=ARRAY(Uuid)),
        bindparam("debits_posted", type_=ARRAY(Numeric)),
        bindparam("credits_posted", type_=ARRAY(Numeric)),
        bindparam("debits_pending", type_=ARRAY(Numeric)),
        bindparam("credits_pending", type_=ARRAY(Numeric)),
    )
    .table_valued("id", "dp", "cp", "dq", "cq")
    .render_derived(name="u")
)
COPY_BALANCES = Statement(
    update(_accounts)
    .values(
        debits_posted=_copied.c.dp,
        credits_posted=_copied.c.cp,
        debits_pending=_copied.c.dq,
        credits_pending=_copied.c.cq,
    )
    .where(
        _accounts.c.id == _copied.c.id,
        tuple_(
            _accounts.c.debits_posted,
            _accounts.c.credits_posted,
            _accounts.c.debits_pending,
            _accounts.c.credits_pending,
        ).is_distinct_from(tuple_(_copied.c.dp, _copied.c.cp, _copied.c.dq, _copied.c.cq)),
    )
)
