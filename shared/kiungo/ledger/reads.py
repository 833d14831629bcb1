"""The ledger's tables as the backend reads them, in the caller's transaction (``conn``).

Every statement naming ``ledger_accounts`` or ``ledger_transfers`` outside the ledger itself
lives here, so the backend never spells the ledger's tables. They read the balance columns of
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

import asyncpg

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


_RECEIVED = """
SELECT credits_posted, credits_pending FROM ledger_accounts
WHERE kind = 'INCOMING_PAYMENT' AND owner_id = $1
"""


async def incoming_payment_received(
    conn: asyncpg.Connection, payment_id: uuid.UUID
) -> Received | None:
    """What the incoming payment's account holds; None while no money has reached it (its
    account is made with the first packet)."""
    row = await conn.fetchrow(_RECEIVED, payment_id)
    return None if row is None else _received(row)


# The ledger writer's own lock on the account (kiungo.ledger.service): a batch crediting it
# commits before this reads, or runs after this transaction and, its clock being past the
# payment's expiry, is refused (the packet's leg has the expiry as its ``credit_until``).
# In id order, as the writer locks them, so that the two never deadlock.
_LOCK_INCOMING_ACCOUNTS = """
SELECT owner_id, credits_posted, credits_pending FROM ledger_accounts
WHERE kind = 'INCOMING_PAYMENT' AND owner_id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
"""


async def lock_incoming_payment_accounts(
    conn: asyncpg.Connection, payment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Received]:
    """Lock the accounts of these incoming payments (``FOR UPDATE``, in account id order, as
    the ledger's writer locks them) until ``conn``'s transaction ends, and return what each
    has received, by payment id. Payments without an account yet are absent. Once this
    returns, no packet credits them before the transaction ends."""
    rows = await conn.fetch(_LOCK_INCOMING_ACCOUNTS, list(payment_ids))
    return {row["owner_id"]: _received(row) for row in rows}


_ACCOUNT_HOLDS_ANYTHING = """
SELECT credits_posted <> debits_posted OR debits_pending <> 0 OR credits_pending <> 0
FROM ledger_accounts WHERE id = $1 FOR UPDATE
"""


async def account_holds_anything(conn: asyncpg.Connection, account_id: uuid.UUID) -> bool:
    """Lock the account (``FOR UPDATE``) and tell whether it has a balance or pending
    transfers; False for an account that does not exist."""
    return bool(await conn.fetchval(_ACCOUNT_HOLDS_ANYTHING, account_id))


_ASSET_ACCOUNTS = "SELECT id FROM ledger_accounts WHERE asset_id = $1"


async def asset_accounts(conn: asyncpg.Connection, asset_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids of every account in the asset."""
    return [row["id"] for row in await conn.fetch(_ASSET_ACCOUNTS, asset_id)]


_ASSET_ACCOUNTS_HOLD_ANYTHING = """
SELECT EXISTS (SELECT 1 FROM ledger_accounts WHERE asset_id = $1
               AND (debits_posted + debits_pending + credits_posted + credits_pending) <> 0)
"""


async def asset_accounts_hold_anything(conn: asyncpg.Connection, asset_id: uuid.UUID) -> bool:
    """Whether any account of the asset has ever moved money or holds some pending."""
    return bool(await conn.fetchval(_ASSET_ACCOUNTS_HOLD_ANYTHING, asset_id))


# Settlement accounts are keyed by their asset, so an asset's id finds its own liquidity
# account but not its settlement account.
_ACCOUNTS_OF_OWNER = """
SELECT id FROM ledger_accounts WHERE id = $1 OR (owner_id = $1 AND kind <> 'SETTLEMENT')
"""


async def accounts_of_owner(
    conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID
) -> list[uuid.UUID]:
    """The account ``owner_id``, or the accounts (but settlement) of the asset, peer, wallet
    address or payment ``owner_id``."""
    return [row["id"] for row in await conn.fetch(_ACCOUNTS_OF_OWNER, owner_id)]


_UNREPORTED_WEB_MONETIZATION = """
SELECT w.id, w.url, w.asset_id, w.total_events_amount, w.created_at, l.credits_posted,
       a.code AS asset_code, a.scale AS asset_scale
FROM wallet_addresses w
JOIN ledger_accounts l ON l.kind = 'WALLET_ADDRESS' AND l.owner_id = w.id
JOIN assets a ON a.id = w.asset_id
WHERE l.credits_posted - w.total_events_amount
      >= GREATEST(COALESCE($2, a.withdrawal_threshold, 1), 1)
ORDER BY w.id
LIMIT $1
FOR UPDATE OF w SKIP LOCKED
"""


async def wallet_addresses_with_unreported_receipts(
    conn: asyncpg.Connection, limit: int, threshold: int | None
) -> list[asyncpg.Record]:
    """Up to ``limit`` wallet addresses (locked, skipping those another transaction holds)
    whose account has received at least ``threshold`` (default their asset's withdrawal
    threshold, at least 1) more than ``total_events_amount``: ``id, url, asset_id,
    total_events_amount, created_at, credits_posted, asset_code, asset_scale``."""
    rows: list[asyncpg.Record] = await conn.fetch(_UNREPORTED_WEB_MONETIZATION, limit, threshold)
    return rows


# Accounts no money has moved through yet (a new asset or peer) raise nothing: they have crossed
# no threshold; the first deposit, payment or withdrawal makes them count.
_ASSET_LIQUIDITY = """
SELECT a.id, a.code, a.scale, a.liquidity_threshold_low AS low, a.liquidity_threshold_high AS high,
       a.liquidity_alert, l.credits_posted - l.debits_posted - l.debits_pending AS available
FROM assets a
JOIN ledger_accounts l ON l.kind = 'ASSET_LIQUIDITY' AND l.owner_id = a.id
WHERE a.deleted_at IS NULL
  AND (a.liquidity_threshold_low IS NOT NULL OR a.liquidity_threshold_high IS NOT NULL)
  AND l.credits_posted + l.credits_pending + l.debits_posted + l.debits_pending > 0
FOR UPDATE OF a SKIP LOCKED
"""

_PEER_LIQUIDITY = """
SELECT p.id, a.id AS asset_id, a.code, a.scale, p.liquidity_threshold AS low,
       p.liquidity_threshold_high AS high, p.liquidity_alert,
       l.credits_posted - l.debits_posted - l.debits_pending AS available
FROM peers p
JOIN assets a ON a.id = p.asset_id
JOIN ledger_accounts l ON l.kind = 'PEER_LIQUIDITY' AND l.owner_id = p.id
WHERE (p.liquidity_threshold IS NOT NULL OR p.liquidity_threshold_high IS NOT NULL)
  AND l.credits_posted + l.credits_pending + l.debits_posted + l.debits_pending > 0
FOR UPDATE OF p SKIP LOCKED
"""


async def assets_liquidity_against_thresholds(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every live asset with a liquidity threshold whose liquidity account has moved money
    (locked, skipping those another transaction holds): ``id, code, scale, low, high,
    liquidity_alert, available``."""
    rows: list[asyncpg.Record] = await conn.fetch(_ASSET_LIQUIDITY)
    return rows


async def peers_liquidity_against_thresholds(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every peer with a liquidity threshold whose liquidity account has moved money (locked,
    skipping those another transaction holds): ``id, asset_id, code, scale, low, high,
    liquidity_alert, available``."""
    rows: list[asyncpg.Record] = await conn.fetch(_PEER_LIQUIDITY)
    return rows


# Every asset's and peer's liquidity account, whatever its thresholds: one row per asset and per
# peer, through uq_ledger_accounts_kind_owner. Deleted assets are left out (their series go).
_LIQUIDITY_GAUGES = """
SELECT 'asset' AS kind, a.id, a.code,
       l.credits_posted - l.debits_posted - l.debits_pending AS available
FROM assets a
JOIN ledger_accounts l ON l.kind = 'ASSET_LIQUIDITY' AND l.owner_id = a.id
WHERE a.deleted_at IS NULL
UNION ALL
SELECT 'peer' AS kind, p.id, a.code,
       l.credits_posted - l.debits_posted - l.debits_pending AS available
FROM peers p
JOIN assets a ON a.id = p.asset_id
JOIN ledger_accounts l ON l.kind = 'PEER_LIQUIDITY' AND l.owner_id = p.id
"""


async def liquidity_gauges(conn: asyncpg.Connection) -> list[tuple[str, uuid.UUID, str, int]]:
    """The available liquidity of every live asset and every peer: ``(kind, id, asset code,
    available)`` with kind ``asset`` or ``peer``."""
    return [
        (row["kind"], row["id"], row["code"], int(row["available"]))
        for row in await conn.fetch(_LIQUIDITY_GAUGES)
    ]


# Both aggregates read only the partial index ix_ledger_transfers_pending_expiry (expires_at
# WHERE state = 'PENDING'): an index-only scan over the pending holds alone, however many
# transfers are final. GREATEST skips the NULL of an empty min(): 0 when nothing is pending.
_PENDING_HOLDS = """
SELECT count(*) AS holds,
       GREATEST(EXTRACT(EPOCH FROM now() - min(expires_at)), 0)::float8 AS overdue_seconds
FROM ledger_transfers
WHERE state = 'PENDING'
"""


async def pending_holds(conn: asyncpg.Connection) -> PendingHolds:
    """The pending holds, as the gauges report them."""
    row = await conn.fetchrow(_PENDING_HOLDS)
    assert row is not None
    return PendingHolds(int(row["holds"]), float(row["overdue_seconds"]))
