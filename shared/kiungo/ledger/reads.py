"""The ledger's tables as the backend reads them, in the caller's transaction (``conn``).

Every statement naming ``ledger_accounts`` or ``ledger_transfers`` outside the ledger itself
lives here, so the backend never spells the ledger's tables; each is built from the models
(:class:`kiungo.models.sql.Statement`). They read the balance columns of
``ledger_accounts``: on TigerBeetle those are a copy, so the caller brings the accounts it reads
up to date first with :meth:`kiungo.ledger.Ledger.sync_balances` on the same ``conn``.

Where the backend decides on ledger balances together with its own rows (liquidity thresholds,
unreported Web Monetization money), the join stays one statement: split, the rows it locks
(``FOR UPDATE … SKIP LOCKED``, ``LIMIT``) would be chosen on a different snapshot than the
balances they are compared with. Those functions are named for what they answer and return the
rows as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import (
    ARRAY,
    Column,
    FromClause,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    extract,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlalchemy.sql.elements import ColumnElement

from kiungo.ledger.accounts import AccountKind
from kiungo.ledger.rules import TransferState
from kiungo.models import Asset, LedgerAccount, LedgerTransfer, Peer, WalletAddress
from kiungo.models.sql import Statement, table

__all__ = [
    "PendingHolds",
    "Received",
    "account_holds_anything",
    "accounts_of_owner",
    "asset_accounts",
    "asset_accounts_hold_anything",
    "assets_liquidity_against_thresholds",
    "incoming_payment_received",
    "liquidity_gauges",
    "lock_incoming_payment_accounts",
    "peers_liquidity_against_thresholds",
    "pending_holds",
    "wallet_addresses_with_unreported_receipts",
]


@dataclass(frozen=True, slots=True)
class Received:
    """What an incoming payment's account has received: posted, and held by packets in
    flight (not yet posted or voided)."""

    posted: int
    pending: int


@dataclass(frozen=True, slots=True)
class PendingHolds:
    """How many holds are pending, and how long the oldest is past its timeout (0 if none)."""

    count: int
    overdue_seconds: float


def _received(row: asyncpg.Record) -> Received:
    return Received(int(row["credits_posted"]), int(row["credits_pending"]))


_accounts = table(LedgerAccount)
_transfers = table(LedgerTransfer)
_assets = table(Asset)
_peers = table(Peer)
_wallets = table(WalletAddress)

_RECEIVED = Statement(
    select(_accounts.c.credits_posted, _accounts.c.credits_pending).where(
        _accounts.c.kind == AccountKind.INCOMING_PAYMENT,
        _accounts.c.owner_id == bindparam("payment_id"),
    )
)


async def incoming_payment_received(
    conn: asyncpg.Connection, payment_id: uuid.UUID
) -> Received | None:
    """What the incoming payment's account holds; None while no money has reached it (its
    account is made with the first packet)."""
    row = await _RECEIVED.fetchrow(conn, payment_id=payment_id)
    return None if row is None else _received(row)


# The ledger writer's own lock on the account (kiungo.ledger.batch_sql): a batch crediting it
# commits before this reads, or runs after this transaction and, its clock being past the
# payment's expiry, is refused (the packet's leg has the expiry as its ``credit_until``).
# In id order, as the writer locks them, so that the two never deadlock.
_LOCK_INCOMING_ACCOUNTS = Statement(
    select(_accounts.c.owner_id, _accounts.c.credits_posted, _accounts.c.credits_pending)
    .where(
        _accounts.c.kind == AccountKind.INCOMING_PAYMENT,
        _accounts.c.owner_id == any_(bindparam("payment_ids", type_=ARRAY(Uuid))),
    )
    .order_by(_accounts.c.id)
    .with_for_update()
)


async def lock_incoming_payment_accounts(
    conn: asyncpg.Connection, payment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Received]:
    """Lock the accounts of these incoming payments (``FOR UPDATE``, in account id order, as
    the ledger's writer locks them) until ``conn``'s transaction ends, and return what each
    has received, by payment id. Payments without an account yet are absent. Once this
    returns, no packet credits them before the transaction ends."""
    rows = await _LOCK_INCOMING_ACCOUNTS.fetch(conn, payment_ids=list(payment_ids))
    return {row["owner_id"]: _received(row) for row in rows}


_ACCOUNT_HOLDS_ANYTHING = Statement(
    select(
        or_(
            _accounts.c.credits_posted != _accounts.c.debits_posted,
            _accounts.c.debits_pending != 0,
            _accounts.c.credits_pending != 0,
        )
    )
    .where(_accounts.c.id == bindparam("account_id"))
    .with_for_update()
)


async def account_holds_anything(conn: asyncpg.Connection, account_id: uuid.UUID) -> bool:
    """Lock the account (``FOR UPDATE``) and tell whether it has a balance or pending
    transfers; False for an account that does not exist."""
    return bool(await _ACCOUNT_HOLDS_ANYTHING.fetchval(conn, account_id=account_id))


_ASSET_ACCOUNTS = Statement(
    select(_accounts.c.id).where(_accounts.c.asset_id == bindparam("asset_id"))
)


async def asset_accounts(conn: asyncpg.Connection, asset_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids of every account in the asset."""
    return [row["id"] for row in await _ASSET_ACCOUNTS.fetch(conn, asset_id=asset_id)]


_ASSET_ACCOUNTS_HOLD_ANYTHING = Statement(
    select(
        exists(
            select(1).where(
                _accounts.c.asset_id == bindparam("asset_id"),
                (
                    _accounts.c.debits_posted
                    + _accounts.c.debits_pending
                    + _accounts.c.credits_posted
                    + _accounts.c.credits_pending
                )
                != 0,
            )
        )
    )
)


async def asset_accounts_hold_anything(conn: asyncpg.Connection, asset_id: uuid.UUID) -> bool:
    """Whether any account of the asset has ever moved money or holds some pending."""
    return bool(await _ASSET_ACCOUNTS_HOLD_ANYTHING.fetchval(conn, asset_id=asset_id))


# Settlement accounts are keyed by their asset, so an asset's id finds its own liquidity
# account but not its settlement account.
_ACCOUNTS_OF_OWNER = Statement(
    select(_accounts.c.id).where(
        or_(
            _accounts.c.id == bindparam("owner_id"),
            and_(
                _accounts.c.owner_id == bindparam("owner_id"),
                _accounts.c.kind != AccountKind.SETTLEMENT,
            ),
        )
    )
)


async def accounts_of_owner(
    conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID
) -> list[uuid.UUID]:
    """The account ``owner_id``, or the accounts (but settlement) of the asset, peer, wallet
    address or payment ``owner_id``."""
    return [row["id"] for row in await _ACCOUNTS_OF_OWNER.fetch(conn, owner_id=owner_id)]


def _account_of(kind: AccountKind, owner_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The join condition of an owner's account of ``kind``."""
    return and_(_accounts.c.kind == kind, _accounts.c.owner_id == owner_id)


_UNREPORTED_WEB_MONETIZATION = Statement(
    select(
        _wallets.c.id,
        _wallets.c.url,
        _wallets.c.asset_id,
        _wallets.c.total_events_amount,
        _wallets.c.created_at,
        _accounts.c.credits_posted,
        _assets.c.code.label("asset_code"),
        _assets.c.scale.label("asset_scale"),
    )
    .select_from(
        _wallets.join(_accounts, _account_of(AccountKind.WALLET_ADDRESS, _wallets.c.id)).join(
            _assets, _assets.c.id == _wallets.c.asset_id
        )
    )
    .where(
        _accounts.c.credits_posted - _wallets.c.total_events_amount
        >= func.greatest(
            func.coalesce(bindparam("threshold"), _assets.c.withdrawal_threshold, 1), 1
        )
    )
    .order_by(_wallets.c.id)
    .limit(bindparam("limit"))
    .with_for_update(of=_wallets, skip_locked=True)
)


async def wallet_addresses_with_unreported_receipts(
    conn: asyncpg.Connection, limit: int, threshold: int | None
) -> list[asyncpg.Record]:
    """Up to ``limit`` wallet addresses (locked, skipping those another transaction holds)
    whose account has received at least ``threshold`` (default their asset's withdrawal
    threshold, at least 1) more than ``total_events_amount``: ``id, url, asset_id,
    total_events_amount, created_at, credits_posted, asset_code, asset_scale``."""
    rows: list[asyncpg.Record] = await _UNREPORTED_WEB_MONETIZATION.fetch(
        conn, limit=limit, threshold=threshold
    )
    return rows


# Accounts no money has moved through yet (a new asset or peer) raise nothing: they have crossed
# no threshold; the first deposit, payment or withdrawal makes them count.
_AVAILABLE = (
    _accounts.c.credits_posted - _accounts.c.debits_posted - _accounts.c.debits_pending
).label("available")
_MOVED_MONEY = (
    _accounts.c.credits_posted
    + _accounts.c.credits_pending
    + _accounts.c.debits_posted
    + _accounts.c.debits_pending
    > 0
)

# Each asset and each peer with its liquidity account (one, through uq_ledger_accounts_kind_owner).
_ASSETS_WITH_ACCOUNT = _assets.join(
    _accounts, _account_of(AccountKind.ASSET_LIQUIDITY, _assets.c.id)
)
_PEERS_WITH_ACCOUNT = _peers.join(_assets, _assets.c.id == _peers.c.asset_id).join(
    _accounts, _account_of(AccountKind.PEER_LIQUIDITY, _peers.c.id)
)


def _liquidity(
    owner: Table,
    columns: Sequence[ColumnElement[Any]],
    joined: FromClause,
    low: Column[Any],
    *where: ColumnElement[bool],
) -> Statement:
    """``owner``'s rows (locked, skipping those another transaction holds) with a low or high
    threshold whose account has moved money: ``id``, ``columns``, ``low, high,
    liquidity_alert, available``."""
    high = owner.c.liquidity_threshold_high
    return Statement(
        select(
            owner.c.id,
            *columns,
            low.label("low"),
            high.label("high"),
            owner.c.liquidity_alert,
            _AVAILABLE,
        )
        .select_from(joined)
        .where(*where, or_(low.is_not(None), high.is_not(None)), _MOVED_MONEY)
        .with_for_update(of=owner, skip_locked=True)
    )


_ASSET_LIQUIDITY = _liquidity(
    _assets,
    (_assets.c.code, _assets.c.scale),
    _ASSETS_WITH_ACCOUNT,
    _assets.c.liquidity_threshold_low,
    _assets.c.deleted_at.is_(None),
)
_PEER_LIQUIDITY = _liquidity(
    _peers,
    (_assets.c.id.label("asset_id"), _assets.c.code, _assets.c.scale),
    _PEERS_WITH_ACCOUNT,
    _peers.c.liquidity_threshold,
)


async def assets_liquidity_against_thresholds(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every live asset with a liquidity threshold whose liquidity account has moved money
    (locked, skipping those another transaction holds): ``id, code, scale, low, high,
    liquidity_alert, available``."""
    rows: list[asyncpg.Record] = await _ASSET_LIQUIDITY.fetch(conn)
    return rows


async def peers_liquidity_against_thresholds(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every peer with a liquidity threshold whose liquidity account has moved money (locked,
    skipping those another transaction holds): ``id, asset_id, code, scale, low, high,
    liquidity_alert, available``."""
    rows: list[asyncpg.Record] = await _PEER_LIQUIDITY.fetch(conn)
    return rows


# Every asset's and peer's liquidity account, whatever its thresholds: one row per asset and per
# peer, through uq_ledger_accounts_kind_owner. Deleted assets are left out (their series go).
_LIQUIDITY_GAUGES = Statement(
    union_all(
        select(literal("asset").label("kind"), _assets.c.id, _assets.c.code, _AVAILABLE)
        .select_from(_ASSETS_WITH_ACCOUNT)
        .where(_assets.c.deleted_at.is_(None)),
        select(literal("peer").label("kind"), _peers.c.id, _assets.c.code, _AVAILABLE).select_from(
            _PEERS_WITH_ACCOUNT
        ),
    )
)


async def liquidity_gauges(conn: asyncpg.Connection) -> list[tuple[str, uuid.UUID, str, int]]:
    """The available liquidity of every live asset and every peer: ``(kind, id, asset code,
    available)`` with kind ``asset`` or ``peer``."""
    return [
        (row["kind"], row["id"], row["code"], int(row["available"]))
        for row in await _LIQUIDITY_GAUGES.fetch(conn)
    ]


# Both aggregates read only the partial index ix_ledger_transfers_pending_expiry (expires_at
# WHERE state = 'PENDING'): an index-only scan over the pending holds alone, however many
# transfers are final. GREATEST skips the NULL of an empty min(): 0 when nothing is pending.
_PENDING_HOLDS = Statement(
    select(
        func.count().label("holds"),
        cast(
            func.greatest(extract("epoch", func.now() - func.min(_transfers.c.expires_at)), 0),
            DOUBLE_PRECISION,
        ).label("overdue_seconds"),
    ).where(_transfers.c.state == TransferState.PENDING)
)


async def pending_holds(conn: asyncpg.Connection) -> PendingHolds:
    """The pending holds, as the gauges report them."""
    row = await _PENDING_HOLDS.fetchrow(conn)
    assert row is not None
    return PendingHolds(int(row["holds"]), float(row["overdue_seconds"]))
