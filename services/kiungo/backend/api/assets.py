"""Assets (a currency at a scale, each its own ledger) and their fees."""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any

import asyncpg
import strawberry

from kiungo.backend.api.common import PageInfo, SortOrder, UInt8, UInt64, iso, parse_uuid
from kiungo.backend.api.liquidity import (
    LiquidityMutationResponse,
    deposit,
    replay_success,
    success_response,
    transfer_id,
    withdraw,
)
from kiungo.backend.api.pagination import PageRequest, fetch_page
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, not_found
from kiungo.ledger import AccountKind, account_id_for

__all__ = ["Asset", "AssetMutation", "AssetQuery", "Fee", "load_asset"]

_CODE = re.compile(r"[A-Za-z0-9]{1,32}")
_ASSET_COLUMNS = (
    "id, code, scale, withdrawal_threshold, liquidity_threshold_low, liquidity_threshold_high, "
    "ledger, created_at, deleted_at"
)


def _u64(value: Any) -> int | None:
    return None if value is None else int(value)


@strawberry.enum
class FeeType(enum.Enum):
    SENDING = "SENDING"
    RECEIVING = "RECEIVING"


@strawberry.type
class Fee:
    id: strawberry.ID
    asset_id: strawberry.ID
    type: FeeType
    fixed: UInt64
    basis_points: int
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Fee:
        return cls(
            id=strawberry.ID(str(row["id"])),
            asset_id=strawberry.ID(str(row["asset_id"])),
            type=FeeType(row["type"]),
            fixed=int(row["fixed_fee"]),
            basis_points=row["basis_point_fee"],
            created_at=iso(row["created_at"]),
        )


@strawberry.type
class FeeEdge:
    node: Fee
    cursor: str


@strawberry.type
class FeesConnection:
    page_info: PageInfo
    edges: list[FeeEdge]


@strawberry.type
class Asset:
    id: strawberry.ID
    code: str
    scale: UInt8
    withdrawal_threshold: UInt64 | None
    liquidity_threshold: UInt64 | None = strawberry.field(
        description="A webhook event (asset.liquidity_low) fires when liquidity falls below this."
    )
    liquidity_threshold_high: UInt64 | None = strawberry.field(
        description="A webhook event (asset.liquidity_high) fires when liquidity rises above this."
    )
    ledger: int = strawberry.field(description="The number of the asset's ledger.")
    created_at: str
    _uuid: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Asset:
        return cls(
            id=strawberry.ID(str(row["id"])),
            code=row["code"],
            scale=row["scale"],
            withdrawal_threshold=_u64(row["withdrawal_threshold"]),
            liquidity_threshold=_u64(row["liquidity_threshold_low"]),
            liquidity_threshold_high=_u64(row["liquidity_threshold_high"]),
            ledger=row["ledger"],
            created_at=iso(row["created_at"]),
            _uuid=row["id"],
        )

    @strawberry.field(description="Liquidity available to the asset's payments and peers.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        return await info.context.backend.available(AccountKind.ASSET_LIQUIDITY, self._uuid)

    @strawberry.field(description="The current sending fee.")
    async def sending_fee(self, info: strawberry.Info[Context, None]) -> Fee | None:
        return await _current_fee(info.context, self._uuid, "SENDING")

    @strawberry.field(description="The current receiving fee.")
    async def receiving_fee(self, info: strawberry.Info[Context, None]) -> Fee | None:
        return await _current_fee(info.context, self._uuid, "RECEIVING")

    @strawberry.field(description="Every fee set on the asset, newest first by default.")
    async def fees(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> FeesConnection:
        rows, page_info, cursors = await fetch_page(
            info.context.pool,
            "SELECT * FROM fees",
            ["asset_id = $1"],
            [self._uuid],
            PageRequest(first, last, after, before, sort_order),
        )
        return FeesConnection(
            page_info=page_info,
            edges=[
                FeeEdge(node=Fee.from_row(r), cursor=c) for r, c in zip(rows, cursors, strict=True)
            ],
        )


async def _current_fee(ctx: Context, asset_id: uuid.UUID, fee_type: str) -> Fee | None:
    row = await ctx.pool.fetchrow(
        "SELECT * FROM fees WHERE asset_id = $1 AND type = $2 "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
        asset_id,
        fee_type,
    )
    return None if row is None else Fee.from_row(row)


async def load_asset(ctx: Context, asset_id: uuid.UUID, *, deleted: bool = False) -> asyncpg.Record:
    """The asset's row, cached for the request; NOT_FOUND when unknown (or deleted)."""

    async def load() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await ctx.pool.fetchrow(
            f"SELECT {_ASSET_COLUMNS} FROM assets WHERE id = $1", asset_id
        )
        return row

    row = await ctx.cached(("asset", asset_id), load)
    if row is None or (row["deleted_at"] is not None and not deleted):
        raise not_found("asset")
    return row


@strawberry.type
class AssetEdge:
    node: Asset
    cursor: str


@strawberry.type
class AssetsConnection:
    page_info: PageInfo
    edges: list[AssetEdge]


@strawberry.type
class AssetQuery:
    @strawberry.field(description="Fetch an asset by its id.")
    async def asset(self, info: strawberry.Info[Context, None], id: str) -> Asset | None:
        return Asset.from_row(await load_asset(info.context, parse_uuid(id, "id")))

    @strawberry.field(description="The asset with this code and scale, if there is one.")
    async def asset_by_code_and_scale(
        self, info: strawberry.Info[Context, None], code: str, scale: UInt8
    ) -> Asset | None:
        row = await info.context.pool.fetchrow(
            f"SELECT {_ASSET_COLUMNS} FROM assets "
            "WHERE code = $1 AND scale = $2 AND deleted_at IS NULL",
            code,
            scale,
        )
        return None if row is None else Asset.from_row(row)

    @strawberry.field(description="A page of assets, newest first unless sortOrder says ASC.")
    async def assets(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> AssetsConnection:
        rows, page_info, cursors = await fetch_page(
            info.context.pool,
            f"SELECT {_ASSET_COLUMNS} FROM assets",
            ["deleted_at IS NULL"],
            [],
            PageRequest(first, last, after, before, sort_order),
        )
        return AssetsConnection(
            page_info=page_info,
            edges=[
                AssetEdge(node=Asset.from_row(r), cursor=c)
                for r, c in zip(rows, cursors, strict=True)
            ],
        )


@strawberry.input
class CreateAssetInput:
    code: str
    scale: UInt8
    withdrawal_threshold: UInt64 | None = None
    liquidity_threshold: UInt64 | None = None
    liquidity_threshold_high: UInt64 | None = None
    idempotency_key: str | None = None


@strawberry.input
class UpdateAssetInput:
    id: str
    withdrawal_threshold: UInt64 | None = strawberry.UNSET
    liquidity_threshold: UInt64 | None = strawberry.UNSET
    liquidity_threshold_high: UInt64 | None = strawberry.UNSET
    idempotency_key: str | None = None


@strawberry.input
class DeleteAssetInput:
    id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.input
class DepositAssetLiquidityInput:
    asset_id: str
    amount: UInt64
    id: str
    idempotency_key: str


@strawberry.input
class CreateAssetLiquidityWithdrawalInput:
    asset_id: str
    amount: UInt64
    id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.input
class FeeDetails:
    fixed: UInt64
    basis_points: int


@strawberry.input
class SetFeeInput:
    asset_id: strawberry.ID
    type: FeeType
    fee: FeeDetails
    idempotency_key: str | None = None


@strawberry.type
class AssetMutationResponse:
    asset: Asset | None


@strawberry.type
class DeleteAssetMutationResponse:
    asset: Asset | None


@strawberry.type
class SetFeeResponse:
    fee: Fee | None


def _thresholds(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and high <= low:
        raise bad_input("liquidityThresholdHigh must be above liquidityThreshold")


async def _asset_by_id(ctx: Context, record: dict[str, Any]) -> Asset:
    ctx.cache.pop(("asset", uuid.UUID(record["id"])), None)
    return Asset.from_row(await load_asset(ctx, uuid.UUID(record["id"]), deleted=True))


@strawberry.type
class AssetMutation:
    @strawberry.mutation(description="Create an asset, with its liquidity and settlement accounts.")
    async def create_asset(
        self, info: strawberry.Info[Context, None], input: CreateAssetInput
    ) -> AssetMutationResponse:
        ctx = info.context
        if not _CODE.fullmatch(input.code):
            raise bad_input("code must be 1 to 32 letters or digits, such as USD", field="code")
        _thresholds(input.liquidity_threshold, input.liquidity_threshold_high)

        async def run() -> tuple[dict[str, Any], AssetMutationResponse]:
            try:
                row = await ctx.pool.fetchrow(
                    "INSERT INTO assets (id, code, scale, withdrawal_threshold, "
                    "liquidity_threshold_low, liquidity_threshold_high) "
                    f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_ASSET_COLUMNS}",
                    uuid.uuid4(),
                    input.code,
                    input.scale,
                    input.withdrawal_threshold,
                    input.liquidity_threshold,
                    input.liquidity_threshold_high,
                )
            except asyncpg.UniqueViolationError:
                raise ApiError(
                    ErrorCode.DUPLICATE,
                    f"an asset {input.code} with scale {input.scale} already exists",
                ) from None
            assert row is not None
            await ctx.ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, row["id"], row["id"])
            return {"id": str(row["id"])}, AssetMutationResponse(asset=Asset.from_row(row))

        async def replay(record: dict[str, Any]) -> AssetMutationResponse:
            return AssetMutationResponse(asset=await _asset_by_id(ctx, record))

        return await ctx.idempotent("createAsset", input.idempotency_key, input, run, replay)

    @strawberry.mutation(
        description="Change an asset's thresholds: null clears one, omitted keeps it."
    )
    async def update_asset(
        self, info: strawberry.Info[Context, None], input: UpdateAssetInput
    ) -> AssetMutationResponse:
        ctx = info.context
        asset_id = parse_uuid(input.id, "id")
        changes = {
            column: value
            for column, value in (
                ("withdrawal_threshold", input.withdrawal_threshold),
                ("liquidity_threshold_low", input.liquidity_threshold),
                ("liquidity_threshold_high", input.liquidity_threshold_high),
            )
            if value is not strawberry.UNSET
        }

        async def run() -> tuple[dict[str, Any], AssetMutationResponse]:
            async with ctx.pool.acquire() as conn, conn.transaction():
                current = await conn.fetchrow(
                    f"SELECT {_ASSET_COLUMNS} FROM assets WHERE id = $1 AND deleted_at IS NULL "
                    "FOR UPDATE",
                    asset_id,
                )
                if current is None:
                    raise not_found("asset")
                merged = {**dict(current), **changes}
                _thresholds(merged["liquidity_threshold_low"], merged["liquidity_threshold_high"])
                row = await conn.fetchrow(
                    "UPDATE assets SET withdrawal_threshold = $2, liquidity_threshold_low = $3, "
                    "liquidity_threshold_high = $4, liquidity_alert = NULL, updated_at = now() "
                    f"WHERE id = $1 RETURNING {_ASSET_COLUMNS}",
                    asset_id,
                    merged["withdrawal_threshold"],
                    merged["liquidity_threshold_low"],
                    merged["liquidity_threshold_high"],
                )
            assert row is not None
            return {"id": str(row["id"])}, AssetMutationResponse(asset=Asset.from_row(row))

        async def replay(record: dict[str, Any]) -> AssetMutationResponse:
            return AssetMutationResponse(asset=await _asset_by_id(ctx, record))

        return await ctx.idempotent("updateAsset", input.idempotency_key, input, run, replay)

    @strawberry.mutation(
        description="Delete an asset no peer or wallet address uses and whose ledger is empty."
    )
    async def delete_asset(
        self, info: strawberry.Info[Context, None], input: DeleteAssetInput
    ) -> DeleteAssetMutationResponse:
        ctx = info.context
        asset_id = parse_uuid(str(input.id), "id")

        async def run() -> tuple[dict[str, Any], DeleteAssetMutationResponse]:
            async with ctx.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "SELECT id FROM assets WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
                    asset_id,
                )
                if row is None:
                    raise not_found("asset")
                accounts = await conn.fetch(
                    "SELECT id FROM ledger_accounts WHERE asset_id = $1", asset_id
                )
                await ctx.ledger.sync_balances(conn, [r["id"] for r in accounts])
                in_use = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM peers WHERE asset_id = $1) "
                    "OR EXISTS (SELECT 1 FROM wallet_addresses WHERE asset_id = $1) "
                    "OR EXISTS (SELECT 1 FROM ledger_accounts WHERE asset_id = $1 "
                    "AND (debits_posted + debits_pending + credits_posted + credits_pending) <> 0)",
                    asset_id,
                )
                if in_use:
                    raise ApiError(
                        ErrorCode.FORBIDDEN,
                        "the asset is in use by a peer, a wallet address or its ledger",
                    )
                deleted = await conn.fetchrow(
                    "UPDATE assets SET deleted_at = now(), updated_at = now() WHERE id = $1 "
                    f"RETURNING {_ASSET_COLUMNS}",
                    asset_id,
                )
            assert deleted is not None
            record = {"id": str(asset_id)}
            return record, DeleteAssetMutationResponse(asset=Asset.from_row(deleted))

        async def replay(record: dict[str, Any]) -> DeleteAssetMutationResponse:
            return DeleteAssetMutationResponse(asset=await _asset_by_id(ctx, record))

        return await ctx.idempotent("deleteAsset", input.idempotency_key, input, run, replay)

    @strawberry.mutation(description="Deposit liquidity into an asset (settlement → liquidity).")
    async def deposit_asset_liquidity(
        self, info: strawberry.Info[Context, None], input: DepositAssetLiquidityInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        asset_id = parse_uuid(input.asset_id, "assetId")
        transfer = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            await load_asset(ctx, asset_id)
            await deposit(
                ctx, AccountKind.ASSET_LIQUIDITY, asset_id, asset_id, transfer, input.amount
            )
            return success_response()

        return await ctx.idempotent(
            "depositAssetLiquidity", input.idempotency_key, input, run, replay_success
        )

    @strawberry.mutation(
        description="Withdraw asset liquidity; with timeoutSeconds > 0 it waits to be posted."
    )
    async def create_asset_liquidity_withdrawal(
        self, info: strawberry.Info[Context, None], input: CreateAssetLiquidityWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        asset_id = parse_uuid(input.asset_id, "assetId")
        transfer = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            await load_asset(ctx, asset_id)
            await withdraw(
                ctx,
                AccountKind.ASSET_LIQUIDITY,
                asset_id,
                asset_id,
                transfer,
                input.amount,
                input.timeout_seconds,
            )
            return success_response()

        return await ctx.idempotent(
            "createAssetLiquidityWithdrawal", input.idempotency_key, input, run, replay_success
        )

    @strawberry.mutation(description="Set the asset's sending or receiving fee.")
    async def set_fee(
        self, info: strawberry.Info[Context, None], input: SetFeeInput
    ) -> SetFeeResponse:
        ctx = info.context
        asset_id = parse_uuid(str(input.asset_id), "assetId")
        if not 0 <= input.fee.basis_points <= 10_000:
            raise bad_input("basisPoints must be from 0 to 10000", field="basisPoints")

        async def run() -> tuple[dict[str, Any], SetFeeResponse]:
            await load_asset(ctx, asset_id)
            row = await ctx.pool.fetchrow(
                "INSERT INTO fees (id, asset_id, type, fixed_fee, basis_point_fee) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING *",
                uuid.uuid4(),
                asset_id,
                input.type.value,
                input.fee.fixed,
                input.fee.basis_points,
            )
            assert row is not None
            return {"id": str(row["id"])}, SetFeeResponse(fee=Fee.from_row(row))

        async def replay(record: dict[str, Any]) -> SetFeeResponse:
            row = await ctx.pool.fetchrow(
                "SELECT * FROM fees WHERE id = $1", uuid.UUID(record["id"])
            )
            return SetFeeResponse(fee=None if row is None else Fee.from_row(row))

        return await ctx.idempotent("setFee", input.idempotency_key, input, run, replay)


def settlement_account(asset_id: uuid.UUID) -> uuid.UUID:
    return account_id_for(AccountKind.SETTLEMENT, asset_id)
