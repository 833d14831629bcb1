"""Wallet addresses (payment pointers): create, update, page, withdraw Web Monetization money,
and trigger its events."""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import strawberry

from kiungo.backend.api.assets import Asset, load_asset
from kiungo.backend.api.common import PageInfo, SortOrder, UInt64, iso, parse_uuid
from kiungo.backend.api.incoming_payments import IncomingPaymentConnection, page_incoming_payments
from kiungo.backend.api.liquidity import transfer_id, withdraw
from kiungo.backend.api.pagination import PageRequest, fetch_page
from kiungo.backend.api.wallet_address_keys import (
    WalletAddressKeyConnection,
    page_wallet_address_keys,
)
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, not_found
from kiungo.backend.workers import emit_web_monetization_events
from kiungo.ledger import AccountKind

__all__ = [
    "WalletAddress",
    "WalletAddressMutation",
    "WalletAddressQuery",
    "load_wallet_address",
    "normalize_address",
]

_MAX_PROPERTIES = 64
_COLUMNS = (
    "id, url, public_name, asset_id, status, additional_properties, created_at, deactivated_at"
)


@strawberry.enum
class WalletAddressStatus(enum.Enum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"


@strawberry.type
class AdditionalProperty:
    key: str
    value: str
    visible_in_open_payments: bool


@strawberry.input
class AdditionalPropertyInput:
    key: str
    value: str
    visible_in_open_payments: bool


def _properties(raw: Any) -> list[AdditionalProperty]:
    values = json.loads(raw) if isinstance(raw, str) else (raw or [])
    if not isinstance(values, list):
        return []
    return [
        AdditionalProperty(
            key=p["key"], value=p["value"], visible_in_open_payments=p["visibleInOpenPayments"]
        )
        for p in values
    ]


def _properties_json(properties: list[AdditionalPropertyInput] | None) -> str:
    items = properties or []
    if len(items) > _MAX_PROPERTIES:
        raise bad_input(f"at most {_MAX_PROPERTIES} additional properties")
    for p in items:
        if not p.key or len(p.key) > 255 or len(p.value) > 4096:
            raise bad_input("additional property keys are 1-255 characters, values up to 4096")
    return json.dumps(
        [
            {"key": p.key, "value": p.value, "visibleInOpenPayments": p.visible_in_open_payments}
            for p in items
        ]
    )


@strawberry.type
class WalletAddress:
    id: strawberry.ID
    address: str = strawberry.field(description="The wallet address URL.")
    url: str = strawberry.field(
        description="The wallet address URL (Rafiki's earlier name for address).",
        deprecation_reason="Use `address`.",
    )
    public_name: str | None
    status: WalletAddressStatus
    additional_properties: list[AdditionalProperty | None] | None
    created_at: str
    _uuid: strawberry.Private[uuid.UUID]
    _asset_id: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WalletAddress:
        return cls(
            id=strawberry.ID(str(row["id"])),
            address=row["url"],
            url=row["url"],
            public_name=row["public_name"],
            status=WalletAddressStatus(row["status"]),
            additional_properties=list(_properties(row["additional_properties"])),
            created_at=iso(row["created_at"]),
            _uuid=row["id"],
            _asset_id=row["asset_id"],
        )

    @strawberry.field(description="The asset of the wallet address.")
    async def asset(self, info: strawberry.Info[Context, None]) -> Asset:
        return Asset.from_row(await load_asset(info.context, self._asset_id, deleted=True))

    @strawberry.field(description="Web Monetization money received and not yet withdrawn.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        return await info.context.backend.available(AccountKind.WALLET_ADDRESS, self._uuid)

    @strawberry.field(description="The incoming payments of this wallet address.")
    async def incoming_payments(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> IncomingPaymentConnection | None:
        return await page_incoming_payments(
            info.context,
            PageRequest(first, last, after, before, sort_order),
            wallet_address_ids=[self._uuid],
        )

    @strawberry.field(description="The keys of this wallet address, revoked ones too.")
    async def wallet_address_keys(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> WalletAddressKeyConnection | None:
        return await page_wallet_address_keys(
            info.context, self._uuid, PageRequest(first, last, after, before, sort_order)
        )


async def load_wallet_address(ctx: Context, wallet_address_id: uuid.UUID) -> asyncpg.Record:
    async def load() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await ctx.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM wallet_addresses WHERE id = $1", wallet_address_id
        )
        return row

    row = await ctx.cached(("wallet_address", wallet_address_id), load)
    if row is None:
        raise not_found("wallet address")
    return row


def normalize_address(ctx: Context, address: str) -> str:
    """A wallet address URL as stored: ``$host/path`` payment pointers read as ``https://``,
    no trailing slash, and under OPEN_PAYMENTS_URL, where the connector serves SPSP for it."""
    text = address.strip()
    if text.startswith("$"):
        text = "https://" + text[1:]
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise bad_input(f"{address!r} is not a wallet address URL", field="address")
    path = parts.path.rstrip("/")
    if not path:
        raise bad_input("a wallet address URL needs a path, such as /alice", field="address")
    url = f"{parts.scheme}://{parts.netloc.lower()}{path}"
    base = ctx.backend.settings.open_payments_url.rstrip("/")
    if not url.startswith(base + "/"):
        raise bad_input(
            f"wallet addresses of this node are under {base}/ (OPEN_PAYMENTS_URL)",
            field="address",
        )
    return url


@strawberry.type
class WalletAddressEdge:
    node: WalletAddress
    cursor: str


@strawberry.type
class WalletAddressesConnection:
    page_info: PageInfo
    edges: list[WalletAddressEdge]


@strawberry.type
class WalletAddressQuery:
    @strawberry.field(description="Fetch a wallet address by its id.")
    async def wallet_address(
        self, info: strawberry.Info[Context, None], id: str
    ) -> WalletAddress | None:
        return WalletAddress.from_row(await load_wallet_address(info.context, parse_uuid(id, "id")))

    @strawberry.field(description="The wallet address with this URL, if there is one.")
    async def wallet_address_by_url(
        self, info: strawberry.Info[Context, None], url: str
    ) -> WalletAddress | None:
        try:
            normalized = normalize_address(info.context, url)
        except ApiError:
            return None
        row = await info.context.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM wallet_addresses WHERE url = $1", normalized
        )
        return None if row is None else WalletAddress.from_row(row)

    @strawberry.field(description="A page of wallet addresses, newest first by default.")
    async def wallet_addresses(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> WalletAddressesConnection:
        rows, page_info, cursors = await fetch_page(
            info.context.pool,
            f"SELECT {_COLUMNS} FROM wallet_addresses",
            [],
            [],
            PageRequest(first, last, after, before, sort_order),
        )
        return WalletAddressesConnection(
            page_info=page_info,
            edges=[
                WalletAddressEdge(node=WalletAddress.from_row(r), cursor=c)
                for r, c in zip(rows, cursors, strict=True)
            ],
        )


@strawberry.input
class CreateWalletAddressInput:
    asset_id: str
    address: str
    public_name: str | None = None
    additional_properties: list[AdditionalPropertyInput] | None = None
    idempotency_key: str | None = None


@strawberry.input
class UpdateWalletAddressInput:
    id: strawberry.ID
    public_name: str | None = strawberry.UNSET
    status: WalletAddressStatus | None = strawberry.UNSET
    additional_properties: list[AdditionalPropertyInput] | None = strawberry.UNSET
    idempotency_key: str | None = None


@strawberry.input
class CreateWalletAddressWithdrawalInput:
    wallet_address_id: str
    id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.input
class TriggerWalletAddressEventsInput:
    limit: int
    idempotency_key: str | None = None


@strawberry.type
class CreateWalletAddressMutationResponse:
    wallet_address: WalletAddress | None


@strawberry.type
class UpdateWalletAddressMutationResponse:
    wallet_address: WalletAddress | None


@strawberry.type
class WalletAddressWithdrawal:
    id: strawberry.ID
    amount: UInt64
    wallet_address: WalletAddress


@strawberry.type
class WalletAddressWithdrawalMutationResponse:
    withdrawal: WalletAddressWithdrawal | None


@strawberry.type
class TriggerWalletAddressEventsMutationResponse:
    count: int | None


def _public_name(name: str | None) -> str | None:
    if name is not None and len(name) > 255:
        raise bad_input("publicName is at most 255 characters", field="publicName")
    return name


async def _reload(ctx: Context, record: dict[str, Any]) -> WalletAddress:
    wallet_id = uuid.UUID(record["id"])
    ctx.cache.pop(("wallet_address", wallet_id), None)
    return WalletAddress.from_row(await load_wallet_address(ctx, wallet_id))


@strawberry.type
class WalletAddressMutation:
    @strawberry.mutation(description="Create a wallet address (a payment pointer) for a user.")
    async def create_wallet_address(
        self, info: strawberry.Info[Context, None], input: CreateWalletAddressInput
    ) -> CreateWalletAddressMutationResponse:
        ctx = info.context
        asset_id = parse_uuid(input.asset_id, "assetId")
        url = normalize_address(ctx, input.address)
        properties = _properties_json(input.additional_properties)
        public_name = _public_name(input.public_name)

        async def run() -> tuple[dict[str, Any], CreateWalletAddressMutationResponse]:
            await load_asset(ctx, asset_id)
            try:
                row = await ctx.pool.fetchrow(
                    "INSERT INTO wallet_addresses (id, url, public_name, asset_id, "
                    "additional_properties) VALUES ($1, $2, $3, $4, $5::jsonb) "
                    f"RETURNING {_COLUMNS}",
                    uuid.uuid4(),
                    url,
                    public_name,
                    asset_id,
                    properties,
                )
            except asyncpg.UniqueViolationError:
                raise ApiError(
                    ErrorCode.DUPLICATE, f"the wallet address {url} already exists"
                ) from None
            assert row is not None
            await ctx.ledger.ensure_account(AccountKind.WALLET_ADDRESS, row["id"], asset_id)
            return {"id": str(row["id"])}, CreateWalletAddressMutationResponse(
                wallet_address=WalletAddress.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> CreateWalletAddressMutationResponse:
            return CreateWalletAddressMutationResponse(wallet_address=await _reload(ctx, record))

        return await ctx.idempotent(
            "createWalletAddress", input.idempotency_key, input, run, replay
        )

    @strawberry.mutation(
        description="Change a wallet address's public name, status or properties; "
        "omitted fields are kept."
    )
    async def update_wallet_address(
        self, info: strawberry.Info[Context, None], input: UpdateWalletAddressInput
    ) -> UpdateWalletAddressMutationResponse:
        ctx = info.context
        wallet_id = parse_uuid(str(input.id), "id")
        sets: list[str] = []
        values: list[Any] = [wallet_id]
        if input.public_name is not strawberry.UNSET:
            values.append(_public_name(input.public_name))
            sets.append(f"public_name = ${len(values)}")
        if input.status is not strawberry.UNSET:
            if input.status is None:
                raise bad_input("status cannot be null", field="status")
            values.append(input.status.value)
            sets.append(f"status = ${len(values)}::text")
            sets.append(
                f"deactivated_at = CASE WHEN ${len(values)}::text = 'INACTIVE' "
                "THEN coalesce(deactivated_at, now()) ELSE NULL END"
            )
        if input.additional_properties is not strawberry.UNSET:
            values.append(_properties_json(input.additional_properties))
            sets.append(f"additional_properties = ${len(values)}::jsonb")

        async def run() -> tuple[dict[str, Any], UpdateWalletAddressMutationResponse]:
            assignments = ", ".join([*sets, "updated_at = now()"])
            row = await ctx.pool.fetchrow(
                f"UPDATE wallet_addresses SET {assignments} WHERE id = $1 RETURNING {_COLUMNS}",
                *values,
            )
            if row is None:
                raise not_found("wallet address")
            await ctx.backend.receiver_changed(row["id"])
            return {"id": str(row["id"])}, UpdateWalletAddressMutationResponse(
                wallet_address=WalletAddress.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> UpdateWalletAddressMutationResponse:
            return UpdateWalletAddressMutationResponse(wallet_address=await _reload(ctx, record))

        return await ctx.idempotent(
            "updateWalletAddress", input.idempotency_key, input, run, replay
        )

    @strawberry.mutation(
        description="Withdraw everything a wallet address received through Web Monetization."
    )
    async def create_wallet_address_withdrawal(
        self, info: strawberry.Info[Context, None], input: CreateWalletAddressWithdrawalInput
    ) -> WalletAddressWithdrawalMutationResponse | None:
        ctx = info.context
        wallet_id = parse_uuid(input.wallet_address_id, "walletAddressId")
        withdrawal_id = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], WalletAddressWithdrawalMutationResponse]:
            row = await load_wallet_address(ctx, wallet_id)
            amount = await ctx.backend.available(AccountKind.WALLET_ADDRESS, wallet_id)
            if amount <= 0:
                raise ApiError(
                    ErrorCode.BAD_USER_INPUT,
                    "the wallet address has nothing to withdraw",
                    liquidityError="AmountZero",
                )
            await withdraw(
                ctx,
                AccountKind.WALLET_ADDRESS,
                wallet_id,
                row["asset_id"],
                withdrawal_id,
                amount,
                input.timeout_seconds,
            )
            record = {"id": str(withdrawal_id), "amount": str(amount), "wallet": str(wallet_id)}
            return record, WalletAddressWithdrawalMutationResponse(
                withdrawal=WalletAddressWithdrawal(
                    id=strawberry.ID(str(withdrawal_id)),
                    amount=amount,
                    wallet_address=WalletAddress.from_row(row),
                )
            )

        async def replay(record: dict[str, Any]) -> WalletAddressWithdrawalMutationResponse:
            wallet = await _reload(ctx, {"id": record["wallet"]})
            return WalletAddressWithdrawalMutationResponse(
                withdrawal=WalletAddressWithdrawal(
                    id=strawberry.ID(record["id"]),
                    amount=int(record["amount"]),
                    wallet_address=wallet,
                )
            )

        return await ctx.idempotent(
            "createWalletAddressWithdrawal", input.idempotency_key, input, run, replay
        )

    @strawberry.mutation(
        description="Raise wallet_address.web_monetization events now for up to `limit` wallet "
        "addresses holding unreported Web Monetization money, whatever the threshold."
    )
    async def trigger_wallet_address_events(
        self, info: strawberry.Info[Context, None], input: TriggerWalletAddressEventsInput
    ) -> TriggerWalletAddressEventsMutationResponse:
        ctx = info.context
        if not 1 <= input.limit <= 1000:
            raise bad_input("limit must be from 1 to 1000", field="limit")

        async def run() -> tuple[dict[str, Any], TriggerWalletAddressEventsMutationResponse]:
            count = await emit_web_monetization_events(ctx.backend, input.limit, threshold=1)
            return {"count": count}, TriggerWalletAddressEventsMutationResponse(count=count)

        async def replay(record: dict[str, Any]) -> TriggerWalletAddressEventsMutationResponse:
            return TriggerWalletAddressEventsMutationResponse(count=int(record["count"]))

        return await ctx.idempotent(
            "triggerWalletAddressEvents", input.idempotency_key, input, run, replay
        )
