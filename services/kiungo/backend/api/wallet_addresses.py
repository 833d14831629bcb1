"""Wallet addresses (payment pointers): create, update, page, withdraw Web Monetization money,
and trigger its events."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import strawberry

from kiungo import wallet_addresses as domain
from kiungo.backend.api.assets import Asset, load_asset
from kiungo.backend.api.common import PageInfo, UInt64, iso, parse_uuid
from kiungo.backend.api.incoming_payments import (
    IncomingPaymentConnection,
    IncomingPaymentFilter,
    incoming_payment_filters,
    page_incoming_payments,
)
from kiungo.backend.api.liquidity import transfer_id, withdraw
from kiungo.backend.api.outgoing_payments import OutgoingPaymentConnection, page_outgoing_payments
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, paged
from kiungo.backend.api.quotes import QuoteConnection, page_quotes
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.api.wallet_address_keys import (
    WalletAddressKeyConnection,
    page_wallet_address_keys,
)
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, refusals_as
from kiungo.backend.workers import emit_web_monetization_events
from kiungo.ledger import AccountKind
from kiungo.models import WalletAddressStatus
from kiungo.refusal import Refusal

__all__ = [
    "WalletAddress",
    "WalletAddressMutation",
    "WalletAddressQuery",
    "load_wallet_address",
    "normalize_address",
]

# What each refusal of the wallet address domain is in the API.
_CODES: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.InvalidWalletAddress, ErrorCode.BAD_USER_INPUT),
    (domain.WalletAddressNotFound, ErrorCode.NOT_FOUND),
    (domain.WalletAddressExists, ErrorCode.DUPLICATE),
)


# The models' enum, registered as the schema's WalletAddressStatus.
strawberry.enum(WalletAddressStatus, name="WalletAddressStatus")


_WALLETS = Listing(domain.WALLET_ADDRESS_QUERY)


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


def _properties_json(properties: list[AdditionalPropertyInput] | None) -> str:
    with refusals_as(_CODES):
        return domain.properties_json(
            [domain.Property(p.key, p.value, p.visible_in_open_payments) for p in properties or []]
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
            additional_properties=[
                AdditionalProperty(key=p.key, value=p.value, visible_in_open_payments=p.visible)
                for p in domain.properties_of(row["additional_properties"])
            ],
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
    @paged
    async def incoming_payments(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: IncomingPaymentFilter | None = None,
    ) -> IncomingPaymentConnection | None:
        filters = incoming_payment_filters(filter)
        # This wallet address's, and only if a walletAddressId filter also names it.
        filters["wallets"] = [w for w in filters.get("wallets", [self._uuid]) if w == self._uuid]
        return await page_incoming_payments(info.context, page, filters)

    @strawberry.field(description="The quotes created at this wallet address.")
    @paged
    async def quotes(
        self, info: strawberry.Info[Context, None], page: PageRequest
    ) -> QuoteConnection | None:
        return await page_quotes(info.context, page, self._uuid)

    @strawberry.field(description="The outgoing payments sent from this wallet address.")
    @paged
    async def outgoing_payments(
        self, info: strawberry.Info[Context, None], page: PageRequest
    ) -> OutgoingPaymentConnection | None:
        return await page_outgoing_payments(info.context, page, {"wallets": [self._uuid]})

    @strawberry.field(description="The keys of this wallet address, revoked ones too.")
    @paged
    async def wallet_address_keys(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
    ) -> WalletAddressKeyConnection | None:
        return await page_wallet_address_keys(info.context, self._uuid, page)


async def load_wallet_address(ctx: Context, wallet_address_id: uuid.UUID) -> asyncpg.Record:
    row = await ctx.cached(
        ("wallet_address", wallet_address_id), lambda: domain.load(ctx.pool, wallet_address_id)
    )
    if row is None:
        with refusals_as(_CODES):
            raise domain.WalletAddressNotFound()
    return row


def normalize_address(ctx: Context, address: str) -> str:
    """:func:`kiungo.wallet_addresses.normalize_address` under this node's OPEN_PAYMENTS_URL."""
    with refusals_as(_CODES):
        return domain.normalize_address(address, ctx.backend.settings.open_payments_url)


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
            normalized = domain.normalize_address(
                url, info.context.backend.settings.open_payments_url
            )
        except domain.InvalidWalletAddress:
            return None
        row = await domain.by_url(info.context.pool, normalized)
        return None if row is None else WalletAddress.from_row(row)

    @strawberry.field(description="A page of wallet addresses, newest first by default.")
    @paged
    async def wallet_addresses(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        tenant_id: str | None = None,
    ) -> WalletAddressesConnection:
        check_tenant(info.context, tenant_id)
        rows, page_info, cursors = await fetch_listing(info.context.pool, _WALLETS, page)
        return connection(
            WalletAddressesConnection,
            WalletAddressEdge,
            WalletAddress.from_row,
            rows,
            page_info,
            cursors,
        )


@strawberry.input
class CreateWalletAddressInput:
    asset_id: str
    address: str
    public_name: str | None = None
    additional_properties: list[AdditionalPropertyInput] | None = None
    idempotency_key: str | None = None
    tenant_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The operator's tenant (OPERATOR_TENANT_ID); any other is refused.",
    )


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
    with refusals_as(_CODES):
        return domain.check_public_name(name)


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
        check_tenant(ctx, input.tenant_id)
        asset_id = parse_uuid(input.asset_id, "assetId")
        url = normalize_address(ctx, input.address)
        properties = _properties_json(input.additional_properties)
        public_name = _public_name(input.public_name)

        async def run() -> tuple[dict[str, Any], CreateWalletAddressMutationResponse]:
            await load_asset(ctx, asset_id)
            with refusals_as(_CODES):
                row = await domain.create(
                    ctx.pool, ctx.ledger, asset_id, url, public_name, properties
                )
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
        public_name: str | domain.Keep | None = domain.KEEP
        status: WalletAddressStatus | domain.Keep = domain.KEEP
        properties: str | domain.Keep = domain.KEEP
        if input.public_name is not strawberry.UNSET:
            public_name = _public_name(input.public_name)
        if input.status is not strawberry.UNSET:
            if input.status is None:
                raise bad_input("status cannot be null", field="status")
            status = WalletAddressStatus(input.status)
        if input.additional_properties is not strawberry.UNSET:
            properties = _properties_json(input.additional_properties)
        changes = domain.WalletAddressChanges(public_name, status, properties)

        async def run() -> tuple[dict[str, Any], UpdateWalletAddressMutationResponse]:
            with refusals_as(_CODES):
                row = await domain.update(ctx.pool, wallet_id, changes)
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
