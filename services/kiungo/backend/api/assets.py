"""Assets in the admin API: the GraphQL types and inputs; the rules and storage are
:mod:`kiungo.backend.assets`."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import bindparam

from kiungo.backend import assets as domain
from kiungo.backend.api.common import PageInfo, UInt8, UInt64, iso, parse_uuid
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, paged
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.backend.errors import ErrorCode, NotFound, Refusal, not_found, refusals_as
from kiungo.ledger import AccountKind
from kiungo.models import Asset as AssetModel
from kiungo.models import Fee as FeeModel
from kiungo.models.sql import table

__all__ = ["Asset", "AssetMutation", "AssetQuery", "Fee", "FeeMutation", "load_asset"]

# What each refusal of the asset domain is in the API.
_REFUSALS: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.InvalidAsset, ErrorCode.BAD_USER_INPUT),
    (NotFound, ErrorCode.NOT_FOUND),
    (domain.AssetExists, ErrorCode.DUPLICATE),
    (domain.AssetInUse, ErrorCode.FORBIDDEN),
)


_assets = table(AssetModel)
_fees = table(FeeModel)
_ASSETS = Listing(domain.ASSETS.where(_assets.c.deleted_at.is_(None)))
_FEES = Listing(domain.FEES.where(_fees.c.asset_id == bindparam("asset_id")))


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
    @paged
    async def fees(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
    ) -> FeesConnection:
        rows, page_info, cursors = await fetch_listing(
            info.context.pool,
            _FEES,
            page,
            {"asset_id": self._uuid},
        )
        return connection(FeesConnection, FeeEdge, Fee.from_row, rows, page_info, cursors)


async def _current_fee(ctx: Context, asset_id: uuid.UUID, fee_type: str) -> Fee | None:
    row = await domain.current_fee(ctx.pool, asset_id, fee_type)
    return None if row is None else Fee.from_row(row)


async def load_asset(ctx: Context, asset_id: uuid.UUID, *, deleted: bool = False) -> asyncpg.Record:
    """The asset's row, cached for the request; NOT_FOUND when unknown (or deleted)."""

    async def load() -> asyncpg.Record | None:
        return await domain.load_asset(ctx.pool, asset_id)

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
        row = await domain.asset_by_code_and_scale(info.context.pool, code, scale)
        return None if row is None else Asset.from_row(row)

    @strawberry.field(description="A page of assets, newest first unless sortOrder says ASC.")
    @paged
    async def assets(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        tenant_id: str | None = None,
    ) -> AssetsConnection:
        check_tenant(info.context, tenant_id)
        rows, page_info, cursors = await fetch_listing(info.context.pool, _ASSETS, page)
        return connection(AssetsConnection, AssetEdge, Asset.from_row, rows, page_info, cursors)


@strawberry.input
class CreateAssetInput:
    code: str
    scale: UInt8
    withdrawal_threshold: UInt64 | None = None
    liquidity_threshold: UInt64 | None = None
    liquidity_threshold_high: UInt64 | None = None
    idempotency_key: str | None = None
    tenant_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The operator's tenant (OPERATOR_TENANT_ID); any other is refused.",
    )


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
        check_tenant(ctx, input.tenant_id)

        async def run() -> tuple[dict[str, Any], AssetMutationResponse]:
            row = await domain.create_asset(
                ctx.pool,
                ctx.ledger,
                input.code,
                input.scale,
                input.withdrawal_threshold,
                input.liquidity_threshold,
                input.liquidity_threshold_high,
            )
            return {"id": str(row["id"])}, AssetMutationResponse(asset=Asset.from_row(row))

        async def replay(record: dict[str, Any]) -> AssetMutationResponse:
            return AssetMutationResponse(asset=await _asset_by_id(ctx, record))

        with refusals_as(_REFUSALS):
            domain.check_new_asset(
                input.code, input.liquidity_threshold, input.liquidity_threshold_high
            )
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
            row = await domain.update_asset(ctx.pool, asset_id, changes)
            return {"id": str(row["id"])}, AssetMutationResponse(asset=Asset.from_row(row))

        async def replay(record: dict[str, Any]) -> AssetMutationResponse:
            return AssetMutationResponse(asset=await _asset_by_id(ctx, record))

        with refusals_as(_REFUSALS):
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
            deleted = await domain.delete_asset(ctx.pool, ctx.ledger, asset_id)
            record = {"id": str(asset_id)}
            return record, DeleteAssetMutationResponse(asset=Asset.from_row(deleted))

        async def replay(record: dict[str, Any]) -> DeleteAssetMutationResponse:
            return DeleteAssetMutationResponse(asset=await _asset_by_id(ctx, record))

        with refusals_as(_REFUSALS):
            return await ctx.idempotent("deleteAsset", input.idempotency_key, input, run, replay)


@strawberry.type
class FeeMutation:
    @strawberry.mutation(description="Set the asset's sending or receiving fee.")
    async def set_fee(
        self, info: strawberry.Info[Context, None], input: SetFeeInput
    ) -> SetFeeResponse:
        ctx = info.context
        asset_id = parse_uuid(str(input.asset_id), "assetId")
        with refusals_as(_REFUSALS):
            domain.check_fee(input.fee.basis_points)

        async def run() -> tuple[dict[str, Any], SetFeeResponse]:
            await load_asset(ctx, asset_id)
            row = await domain.set_fee(
                ctx.pool, asset_id, input.type.value, input.fee.fixed, input.fee.basis_points
            )
            return {"id": str(row["id"])}, SetFeeResponse(fee=Fee.from_row(row))

        async def replay(record: dict[str, Any]) -> SetFeeResponse:
            row = await domain.load_fee(ctx.pool, uuid.UUID(record["id"]))
            return SetFeeResponse(fee=None if row is None else Fee.from_row(row))

        return await ctx.idempotent("setFee", input.idempotency_key, input, run, replay)
