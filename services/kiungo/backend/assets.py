"""Assets (a currency at a scale, each its own ledger) and their fees: the rules and the storage
behind the admin API's asset mutations (:mod:`kiungo.backend.api.assets` is their GraphQL face).

Only the backend changes assets, so this lives in the backend, not in the shared package. Its
SQL is built from the models (:class:`kiungo.models.sql.Statement`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    exists,
    func,
    insert,
    null,
    or_,
    select,
    update,
)

from kiungo.backend.errors import NotFound, Refusal
from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import Asset, Fee, Peer, WalletAddress
from kiungo.models.sql import Statement, table

__all__ = [
    "ASSETS",
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
_assets = table(Asset)
_fees = table(Fee)
_peers = table(Peer)
_wallets = table(WalletAddress)
# The columns an asset is made with and changed through, each bound by its name.
_THRESHOLDS = ("withdrawal_threshold", "liquidity_threshold_low", "liquidity_threshold_high")
# What an asset's row holds for the API.
_ASSET_COLUMNS: tuple[ColumnElement[Any], ...] = tuple(
    _assets.c[name]
    for name in ("id", "code", "scale", *_THRESHOLDS, "ledger", "created_at", "deleted_at")
)
ASSETS: Select[Any] = select(*_ASSET_COLUMNS)
"""Assets' rows, for the caller's conditions (the API pages through those not deleted)."""
FEES: Select[Any] = select(_fees)
"""Fees' rows (every column), for the caller's conditions."""

_LOAD = Statement(ASSETS.where(_assets.c.id == bindparam("id")))
_BY_CODE_AND_SCALE = Statement(
    ASSETS.where(
        _assets.c.code == bindparam("code"),
        _assets.c.scale == bindparam("scale"),
        _assets.c.deleted_at.is_(None),
    )
)
_CREATE = Statement(
    insert(_assets)
    .values({column: bindparam(column) for column in ("code", "scale", *_THRESHOLDS)})
    .returning(*_ASSET_COLUMNS)
)
_LOCK = Statement(
    ASSETS.where(_assets.c.id == bindparam("id"), _assets.c.deleted_at.is_(None)).with_for_update()
)
_UPDATE = Statement(
    update(_assets)
    .where(_assets.c.id == bindparam("id"))
    .values(
        **{column: bindparam(column) for column in _THRESHOLDS},
        liquidity_alert=null(),
        updated_at=func.now(),
    )
    .returning(*_ASSET_COLUMNS)
)
_LOCK_ID = Statement(
    select(_assets.c.id)
    .where(_assets.c.id == bindparam("id"), _assets.c.deleted_at.is_(None))
    .with_for_update()
)
_USED = Statement(
    select(
        or_(
            exists().where(_peers.c.asset_id == bindparam("id")),
            exists().where(_wallets.c.asset_id == bindparam("id")),
        )
    )
)
_DELETE = Statement(
    update(_assets)
    .where(_assets.c.id == bindparam("id"))
    .values(deleted_at=func.now(), updated_at=func.now())
    .returning(*_ASSET_COLUMNS)
)
_CURRENT_FEE = Statement(
    FEES.where(_fees.c.asset_id == bindparam("asset_id"), _fees.c.type == bindparam("type"))
    .order_by(_fees.c.created_at.desc(), _fees.c.id.desc())
    .limit(1)
)
_SET_FEE = Statement(
    insert(_fees)
    .values(
        asset_id=bindparam("asset_id"),
        type=bindparam("type"),
        fixed_fee=bindparam("fixed"),
        basis_point_fee=bindparam("basis_points"),
    )
    .returning(*_fees.c)
)
_LOAD_FEE = Statement(FEES.where(_fees.c.id == bindparam("id")))
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


async def load_asset(pool: asyncpg.Pool, asset_id: uuid.UUID) -> asyncpg.Record | None:
    """The asset's row, deleted or not; None when unknown."""
    return await _LOAD.fetchrow(pool, id=asset_id)


async def asset_by_code_and_scale(
    pool: asyncpg.Pool, code: str, scale: int
) -> asyncpg.Record | None:
    return await _BY_CODE_AND_SCALE.fetchrow(pool, code=code, scale=scale)


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
        row = await _CREATE.fetchrow(
            pool,
            code=code,
            scale=scale,
            withdrawal_threshold=withdrawal_threshold,
            liquidity_threshold_low=liquidity_threshold,
            liquidity_threshold_high=liquidity_threshold_high,
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
        current = await _LOCK.fetchrow(conn, id=asset_id)
        if current is None:
            raise AssetNotFound
        merged = {**dict(current), **changes}
        check_thresholds(merged["liquidity_threshold_low"], merged["liquidity_threshold_high"])
        row = await _UPDATE.fetchrow(
            conn, id=asset_id, **{column: merged[column] for column in _THRESHOLDS}
        )
    assert row is not None
    return row


async def delete_asset(pool: asyncpg.Pool, ledger: Ledger, asset_id: uuid.UUID) -> asyncpg.Record:
    """Mark the asset deleted unless a peer or wallet address uses it or its ledger holds
    anything (:class:`AssetInUse`)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _LOCK_ID.fetchrow(conn, id=asset_id)
        if row is None:
            raise AssetNotFound
        await ledger.sync_balances(conn, await ledger_reads.asset_accounts(conn, asset_id))
        used = await _USED.fetchval(conn, id=asset_id)
        if used or await ledger_reads.asset_accounts_hold_anything(conn, asset_id):
            raise AssetInUse
        deleted = await _DELETE.fetchrow(conn, id=asset_id)
    assert deleted is not None
    return deleted


async def current_fee(
    pool: asyncpg.Pool, asset_id: uuid.UUID, fee_type: str
) -> asyncpg.Record | None:
    """The asset's latest fee of this type (SENDING or RECEIVING), if any."""
    return await _CURRENT_FEE.fetchrow(pool, asset_id=asset_id, type=fee_type)


async def set_fee(
    pool: asyncpg.Pool, asset_id: uuid.UUID, fee_type: str, fixed: int, basis_points: int
) -> asyncpg.Record:
    """A new fee, which is the asset's current one from now on (fees are never changed)."""
    row = await _SET_FEE.fetchrow(
        pool, asset_id=asset_id, type=fee_type, fixed=fixed, basis_points=basis_points
    )
    assert row is not None
    return row


async def load_fee(pool: asyncpg.Pool, fee_id: uuid.UUID) -> asyncpg.Record | None:
    return await _LOAD_FEE.fetchrow(pool, id=fee_id)


def settlement_account(asset_id: uuid.UUID) -> uuid.UUID:
    return account_id_for(AccountKind.SETTLEMENT, asset_id)
