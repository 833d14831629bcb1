"""Assets (a currency at a scale, each its own ledger) and their fees: the rules and the storage
behind the admin API's asset mutations (:mod:`kiungo.backend.api.assets` is their GraphQL face).

Only the backend changes assets, so this lives in the backend, not in the shared package.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from kiungo.backend.errors import NotFound, Refusal
from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.ledger import reads as ledger_reads

__all__ = [
    "ASSET_COLUMNS",
    "FEES",
    "AssetExists",
    "AssetInUse",
    "AssetNotFound",
    "InvalidAsset",
    "asset_by_code_and_scale",
    "check_fee",
    "check_new_asset",
    "check_thresholds",
    "create_asset",
    "current_fee",
    "delete_asset",
    "load_asset",
    "load_fee",
    "set_fee",
    "settlement_account",
    "update_asset",
]

_CODE = re.compile(r"[A-Za-z0-9]{1,32}")
ASSET_COLUMNS = (
    "id, code, scale, withdrawal_threshold, liquidity_threshold_low, liquidity_threshold_high, "
    "ledger, created_at, deleted_at"
)
FEES = "SELECT * FROM fees"
_MAX_BASIS_POINTS = 10_000


class InvalidAsset(Refusal):
    """The input cannot make or change an asset (the caller's to change)."""


class AssetNotFound(NotFound):
    what = "asset"


class AssetExists(Refusal):
    def __init__(self, code: str, scale: int) -> None:
        super().__init__(f"an asset {code} with scale {scale} already exists")


class AssetInUse(Refusal):
    def __init__(self) -> None:
        super().__init__("the asset is in use by a peer, a wallet address or its ledger")


def check_thresholds(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and high <= low:
        raise InvalidAsset("liquidityThresholdHigh must be above liquidityThreshold")


def check_new_asset(code: str, low: int | None, high: int | None) -> None:
    if not _CODE.fullmatch(code):
        raise InvalidAsset("code must be 1 to 32 letters or digits, such as USD", field="code")
    check_thresholds(low, high)


def check_fee(basis_points: int) -> None:
    if not 0 <= basis_points <= _MAX_BASIS_POINTS:
        raise InvalidAsset("basisPoints must be from 0 to 10000", field="basisPoints")


async def _row(pool: asyncpg.Pool, query: str, *args: Any) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(query, *args)
    return row


async def load_asset(pool: asyncpg.Pool, asset_id: uuid.UUID) -> asyncpg.Record | None:
    """The asset's row, deleted or not; None when unknown."""
    return await _row(pool, f"SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1", asset_id)


async def asset_by_code_and_scale(
    pool: asyncpg.Pool, code: str, scale: int
) -> asyncpg.Record | None:
    return await _row(
        pool,
        f"SELECT {ASSET_COLUMNS} FROM assets WHERE code = $1 AND scale = $2 AND deleted_at IS NULL",
        code,
        scale,
    )


async def create_asset(
    pool: asyncpg.Pool,
    ledger: Ledger,
    code: str,
    scale: int,
    withdrawal_threshold: int | None,
    liquidity_threshold: int | None,
    liquidity_threshold_high: int | None,
) -> asyncpg.Record:
    """A new asset with its liquidity account; :class:`AssetExists` for a taken code and scale."""
    try:
        row = await pool.fetchrow(
            "INSERT INTO assets (id, code, scale, withdrawal_threshold, "
            "liquidity_threshold_low, liquidity_threshold_high) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ASSET_COLUMNS}",
            uuid.uuid4(),
            code,
            scale,
            withdrawal_threshold,
            liquidity_threshold,
            liquidity_threshold_high,
        )
    except asyncpg.UniqueViolationError:
        raise AssetExists(code, scale) from None
    assert row is not None
    await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, row["id"], row["id"])
    return row


async def update_asset(
    pool: asyncpg.Pool, asset_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record:
    """Set the given threshold columns (the others kept) and forget the liquidity alert, so the
    new thresholds are checked afresh."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            f"SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            asset_id,
        )
        if current is None:
            raise AssetNotFound
        merged = {**dict(current), **changes}
        check_thresholds(merged["liquidity_threshold_low"], merged["liquidity_threshold_high"])
        row = await conn.fetchrow(
            "UPDATE assets SET withdrawal_threshold = $2, liquidity_threshold_low = $3, "
            "liquidity_threshold_high = $4, liquidity_alert = NULL, updated_at = now() "
            f"WHERE id = $1 RETURNING {ASSET_COLUMNS}",
            asset_id,
            merged["withdrawal_threshold"],
            merged["liquidity_threshold_low"],
            merged["liquidity_threshold_high"],
        )
    assert row is not None
    return row


async def delete_asset(pool: asyncpg.Pool, ledger: Ledger, asset_id: uuid.UUID) -> asyncpg.Record:
    """Mark the asset deleted unless a peer or wallet address uses it or its ledger holds
    anything (:class:`AssetInUse`)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id FROM assets WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            asset_id,
        )
        if row is None:
            raise AssetNotFound
        await ledger.sync_balances(conn, await ledger_reads.asset_accounts(conn, asset_id))
        used = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM peers WHERE asset_id = $1) "
            "OR EXISTS (SELECT 1 FROM wallet_addresses WHERE asset_id = $1)",
            asset_id,
        )
        if used or await ledger_reads.asset_accounts_hold_anything(conn, asset_id):
            raise AssetInUse
        deleted = await conn.fetchrow(
            "UPDATE assets SET deleted_at = now(), updated_at = now() WHERE id = $1 "
            f"RETURNING {ASSET_COLUMNS}",
            asset_id,
        )
    assert deleted is not None
    return deleted


async def current_fee(
    pool: asyncpg.Pool, asset_id: uuid.UUID, fee_type: str
) -> asyncpg.Record | None:
    """The asset's latest fee of this type (SENDING or RECEIVING), if any."""
    return await _row(
        pool,
        f"{FEES} WHERE asset_id = $1 AND type = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        asset_id,
        fee_type,
    )


async def set_fee(
    pool: asyncpg.Pool, asset_id: uuid.UUID, fee_type: str, fixed: int, basis_points: int
) -> asyncpg.Record:
    """A new fee, which is the asset's current one from now on (fees are never changed)."""
    row = await pool.fetchrow(
        "INSERT INTO fees (id, asset_id, type, fixed_fee, basis_point_fee) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING *",
        uuid.uuid4(),
        asset_id,
        fee_type,
        fixed,
        basis_points,
    )
    assert row is not None
    return row


async def load_fee(pool: asyncpg.Pool, fee_id: uuid.UUID) -> asyncpg.Record | None:
    return await _row(pool, f"{FEES} WHERE id = $1", fee_id)


def settlement_account(asset_id: uuid.UUID) -> uuid.UUID:
    return account_id_for(AccountKind.SETTLEMENT, asset_id)
