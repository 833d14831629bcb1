"""Incoming payments: what a wallet address expects to receive, paid over STREAM through the
connector (by SPSP on the payment's URL), completed, expired, cancelled and withdrawn."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import String, Uuid, bindparam, case, func, select, update

from kiungo.backend.api.common import (
    Amount,
    AmountInput,
    FilterString,
    JSONObject,
    PageInfo,
    UInt64,
    filter_binds,
    iso,
    metadata_json,
    metadata_value,
    parse_uuid,
    state_values,
    uuid_values,
)
from kiungo.backend.api.incoming_payment_creation import (
    create_incoming_payment,
    new_incoming_payment,
)
from kiungo.backend.api.liquidity import (
    LiquidityMutationResponse,
    replay_success,
    success_response,
    withdraw_payment,
)
from kiungo.backend.api.pagination import Listing, PageRequest, fetch_listing, in_filter, paged
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, not_found
from kiungo.events import EventType
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import Asset
from kiungo.models import IncomingPayment as IncomingPaymentModel
from kiungo.models.sql import Statement, table
from kiungo.openpayments.incoming_payments import payment_url
from kiungo.payments.incoming import ENDED, States, store
from kiungo.payments.receivers import WALLET_ADDRESS_RECEIVER_BY_ID

__all__ = [
    "IncomingPayment",
    "IncomingPaymentConnection",
    "IncomingPaymentMutation",
    "IncomingPaymentQuery",
    "incoming_payment_filters",
    "page_incoming_payments",
]

_payments = table(IncomingPaymentModel)
_assets = table(Asset)
# An incoming payment with its asset's code and scale.
_SELECT = select(
    _payments.c.id,
    _payments.c.wallet_address_id,
    _payments.c.asset_id,
    _payments.c.incoming_amount,
    _payments.c.received_amount,
    _payments.c.state,
    _payments.c.expires_at,
    _payments.c.metadata,
    _payments.c.client,
    _payments.c.created_at,
    _payments.c.sender_wallet_address,
    _payments.c.cancelled_at,
    _payments.c.cancellation_reason,
    _assets.c.code.label("asset_code"),
    _assets.c.scale.label("asset_scale"),
).select_from(_payments.join(_assets, _assets.c.id == _payments.c.asset_id))
# Rafiki's initiatedBy: an Open Payments client created it (its client is recorded), else
# the admin API (Rafiki's ADMIN); Kiungo takes no card payments (Rafiki's CARD).
_INITIATED_BY = case((_payments.c.client.is_not(None), "OPEN_PAYMENTS"), else_="ADMIN")
INITIATION_REASONS = ("ADMIN", "CARD", "OPEN_PAYMENTS")
_PAYMENTS = Listing(
    _SELECT,
    {
        **in_filter("wallets", _payments.c.wallet_address_id, Uuid()),
        **in_filter("states", _payments.c.state, String()),
        **in_filter("initiated", _INITIATED_BY, String()),
    },
)
_LOAD = Statement(_SELECT.where(_payments.c.id == bindparam("id")))
_SET_METADATA = Statement(
    update(_payments)
    .where(_payments.c.id == bindparam("id"))
    .values(metadata=bindparam("metadata"), updated_at=func.now())
    .returning(_payments.c.id)
)
_LOCK_STATE = Statement(
    select(_payments.c.state).where(_payments.c.id == bindparam("id")).with_for_update()
)


# The models' states are the GraphQL enum: fields typed States show as IncomingPaymentState.
strawberry.enum(States, name="IncomingPaymentState")


@strawberry.type
class IncomingPayment:
    id: strawberry.ID
    wallet_address_id: strawberry.ID
    client: str | None
    state: States
    expires_at: str
    incoming_amount: Amount | None
    metadata: JSONObject | None
    created_at: str
    sender_wallet_address: str | None = strawberry.field(
        description="The payer's wallet address, as its creator gave it."
    )
    cancellation_reason: str | None = strawberry.field(
        description="Why cancelIncomingPayment cancelled it."
    )
    cancelled_at: str | None = strawberry.field(description="When it was cancelled.")
    _uuid: strawberry.Private[uuid.UUID]
    _stored_received: strawberry.Private[int]
    _asset: strawberry.Private[tuple[str, int]]

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> IncomingPayment:
        code, scale = row["asset_code"], row["asset_scale"]
        incoming = row["incoming_amount"]
        return cls(
            id=strawberry.ID(str(row["id"])),
            wallet_address_id=strawberry.ID(str(row["wallet_address_id"])),
            client=row["client"],
            state=States(row["state"]),
            expires_at=iso(row["expires_at"]),
            incoming_amount=(
                None
                if incoming is None
                else Amount(value=int(incoming), asset_code=code, asset_scale=scale)
            ),
            metadata=metadata_value(row["metadata"]),
            created_at=iso(row["created_at"]),
            sender_wallet_address=row["sender_wallet_address"],
            cancellation_reason=row["cancellation_reason"],
            cancelled_at=None if row["cancelled_at"] is None else iso(row["cancelled_at"]),
            _uuid=row["id"],
            _stored_received=int(row["received_amount"]),
            _asset=(code, scale),
        )

    @strawberry.field(
        description="Its Open Payments URL: <OPEN_PAYMENTS_URL>/incoming-payments/<id>, as the "
        "resource server names it."
    )
    def url(self, info: strawberry.Info[Context, None]) -> str:
        return payment_url(info.context.backend.settings.open_payments_url.rstrip("/"), self._uuid)

    @strawberry.field(description="What has been paid in so far (posted packets).")
    async def received_amount(self, info: strawberry.Info[Context, None]) -> Amount:
        try:
            balance = await info.context.ledger.balance(
                account_id_for(AccountKind.INCOMING_PAYMENT, self._uuid)
            )
            received = balance.credits_posted
        except UnknownAccount:
            received = self._stored_received
        return Amount(value=received, asset_code=self._asset[0], asset_scale=self._asset[1])

    @strawberry.field(description="Money received and not yet withdrawn.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        return await info.context.backend.available(AccountKind.INCOMING_PAYMENT, self._uuid)


@strawberry.type
class IncomingPaymentEdge:
    node: IncomingPayment
    cursor: str


@strawberry.type
class IncomingPaymentConnection:
    page_info: PageInfo
    edges: list[IncomingPaymentEdge]


async def page_incoming_payments(
    ctx: Context, page: PageRequest, filters: Mapping[str, list[Any]] | None = None
) -> IncomingPaymentConnection:
    """A page of incoming payments; ``filters`` are binds of the listing's filters
    (:func:`incoming_payment_filters`, ``wallets``)."""
    rows, page_info, cursors = await fetch_listing(ctx.pool, _PAYMENTS, page, filters)
    return IncomingPaymentConnection(
        page_info=page_info,
        edges=[
            IncomingPaymentEdge(node=IncomingPayment.from_row(r), cursor=c)
            for r, c in zip(rows, cursors, strict=True)
        ],
    )


async def _load(ctx: Context, payment_id: uuid.UUID) -> asyncpg.Record:
    row = await _LOAD.fetchrow(ctx.pool, id=payment_id)
    if row is None:
        raise not_found("incoming payment")
    return row


@strawberry.input
class IncomingPaymentFilter:
    initiated_by: FilterString | None = strawberry.field(
        default=None,
        description="Rafiki's initiation reasons: ADMIN (the admin API), OPEN_PAYMENTS (an Open "
        "Payments client), CARD (never, here).",
    )
    wallet_address_id: FilterString | None = None
    state: FilterString | None = None


def incoming_payment_filters(filter: IncomingPaymentFilter | None) -> dict[str, list[Any]]:
    """The listing binds of a filter (BAD_USER_INPUT for a value that is none)."""
    if filter is None:
        return {}
    # States first: with both wrong, the state is the error, as it always was.
    return {
        **filter_binds(filter.state, "states", state_values(States)),
        **filter_binds(filter.wallet_address_id, "wallets", uuid_values("walletAddressId")),
        **filter_binds(
            filter.initiated_by,
            "initiated",
            state_values(_InitiationReason, "initiatedBy"),
        ),
    }


class _InitiationReason(enum.Enum):
    ADMIN = "ADMIN"
    CARD = "CARD"
    OPEN_PAYMENTS = "OPEN_PAYMENTS"


@strawberry.type
class IncomingPaymentQuery:
    @strawberry.field(description="Fetch an incoming payment by its id.")
    async def incoming_payment(
        self, info: strawberry.Info[Context, None], id: str
    ) -> IncomingPayment | None:
        return IncomingPayment.from_row(await _load(info.context, parse_uuid(id, "id")))

    @strawberry.field(description="A page of incoming payments, newest first by default.")
    @paged
    async def incoming_payments(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: IncomingPaymentFilter | None = None,
        tenant_id: str | None = None,
    ) -> IncomingPaymentConnection:
        check_tenant(info.context, tenant_id)
        return await page_incoming_payments(info.context, page, incoming_payment_filters(filter))


@strawberry.input
class CreateIncomingPaymentInput:
    wallet_address_id: str
    expires_at: str | None = None
    metadata: JSONObject | None = None
    incoming_amount: AmountInput | None = None
    idempotency_key: str | None = None
    sender_wallet_address: str | None = strawberry.field(
        default=None, description="The payer's wallet address (stored and shown, as Rafiki)."
    )


@strawberry.input
class UpdateIncomingPaymentInput:
    id: strawberry.ID
    metadata: JSONObject
    idempotency_key: str | None = None


@strawberry.input
class CancelIncomingPaymentInput:
    id: strawberry.ID
    idempotency_key: str | None = None
    cancellation_reason: str | None = strawberry.field(
        default=None, description="Why it is cancelled (stored and shown)."
    )


@strawberry.input
class CreateIncomingPaymentWithdrawalInput:
    incoming_payment_id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.type
class IncomingPaymentResponse:
    payment: IncomingPayment | None


@strawberry.type
class CancelIncomingPaymentResponse:
    payment: IncomingPayment | None


def _text(value: str | None, field: str, longest: int) -> str | None:
    """An optional text input of at most ``longest`` characters (else BAD_USER_INPUT)."""
    if value is not None and (len(value) > longest or "\x00" in value):
        raise bad_input(f"{field} is at most {longest} characters, without NUL", field=field)
    return value


async def _reload(ctx: Context, record: dict[str, Any]) -> IncomingPayment:
    return IncomingPayment.from_row(await _load(ctx, uuid.UUID(record["id"])))


@strawberry.type
class IncomingPaymentMutation:
    @strawberry.mutation(
        description="Create an incoming payment under a wallet address of this node; senders "
        "pay it over SPSP/STREAM at <wallet address>/incoming-payments/<id>."
    )
    async def create_incoming_payment(
        self, info: strawberry.Info[Context, None], input: CreateIncomingPaymentInput
    ) -> IncomingPaymentResponse:
        ctx = info.context
        wallet_id = parse_uuid(input.wallet_address_id, "walletAddressId")
        new = new_incoming_payment(
            ctx,
            input.expires_at,
            input.incoming_amount,
            input.metadata,
            _text(input.sender_wallet_address, "senderWalletAddress", 2048),
        )

        async def run() -> tuple[dict[str, Any], IncomingPaymentResponse]:
            wallet = await WALLET_ADDRESS_RECEIVER_BY_ID.fetchrow(ctx.pool, id=wallet_id)
            if wallet is None:
                raise not_found("wallet address")
            row = await create_incoming_payment(ctx, wallet, new)
            return {"id": str(row["id"])}, IncomingPaymentResponse(
                payment=IncomingPayment.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> IncomingPaymentResponse:
            return IncomingPaymentResponse(payment=await _reload(ctx, record))

        return await ctx.idempotent(
            "createIncomingPayment", input.idempotency_key, input, run, replay
        )

    @strawberry.mutation(description="Replace an incoming payment's metadata.")
    async def update_incoming_payment(
        self, info: strawberry.Info[Context, None], input: UpdateIncomingPaymentInput
    ) -> IncomingPaymentResponse:
        ctx = info.context
        payment_id = parse_uuid(str(input.id), "id")
        metadata = metadata_json(input.metadata)

        async def change() -> uuid.UUID:
            updated = await _SET_METADATA.fetchval(ctx.pool, id=payment_id, metadata=metadata)
            if updated is None:
                raise not_found("incoming payment")
            return payment_id

        async def respond(record: dict[str, Any]) -> IncomingPaymentResponse:
            return IncomingPaymentResponse(payment=await _reload(ctx, record))

        return await ctx.idempotent_change(
            "updateIncomingPayment", input.idempotency_key, input, change, respond
        )

    @strawberry.mutation(
        description="Cancel a PENDING incoming payment (nothing received yet): it expires now "
        "and refuses money."
    )
    async def cancel_incoming_payment(
        self, info: strawberry.Info[Context, None], input: CancelIncomingPaymentInput
    ) -> CancelIncomingPaymentResponse:
        ctx = info.context
        payment_id = parse_uuid(str(input.id), "id")
        reason = _text(input.cancellation_reason, "cancellationReason", 1024)

        async def change() -> uuid.UUID:
            async with ctx.pool.acquire() as conn, conn.transaction():
                state = await _LOCK_STATE.fetchval(conn, id=payment_id)
                if state is None:
                    raise not_found("incoming payment")
                if state != States.PENDING:
                    raise ApiError(
                        ErrorCode.CONFLICT,
                        f"only a PENDING incoming payment can be cancelled; this one is {state}",
                    )
                await ctx.ledger.sync_balances(
                    conn, [account_id_for(AccountKind.INCOMING_PAYMENT, payment_id)]
                )
                received = await ledger_reads.incoming_payment_received(conn, payment_id)
                if received is not None and received.posted + received.pending != 0:
                    raise ApiError(
                        ErrorCode.CONFLICT, "the incoming payment has already received money"
                    )
                await store.cancel(conn, payment_id, reason)
            await ctx.backend.receiver_changed(payment_id)
            return payment_id

        async def respond(record: dict[str, Any]) -> CancelIncomingPaymentResponse:
            return CancelIncomingPaymentResponse(payment=await _reload(ctx, record))

        return await ctx.idempotent_change(
            "cancelIncomingPayment", input.idempotency_key, input, change, respond
        )

    @strawberry.mutation(
        description="Withdraw what a completed or expired incoming payment received."
    )
    async def create_incoming_payment_withdrawal(
        self, info: strawberry.Info[Context, None], input: CreateIncomingPaymentWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        payment_id = parse_uuid(input.incoming_payment_id, "incomingPaymentId")

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            row = await _load(ctx, payment_id)
            if row["state"] not in ENDED:
                raise ApiError(
                    ErrorCode.FORBIDDEN,
                    "the incoming payment is still receiving; withdraw once it is "
                    "COMPLETED or EXPIRED",
                )
            await withdraw_payment(
                ctx,
                AccountKind.INCOMING_PAYMENT,
                payment_id,
                row["asset_id"],
                [
                    EventType.INCOMING_PAYMENT_COMPLETED.value,
                    EventType.INCOMING_PAYMENT_EXPIRED.value,
                ],
                input.timeout_seconds,
                "incoming payment",
            )
            return success_response()

        return await ctx.idempotent(
            "createIncomingPaymentWithdrawal", input.idempotency_key, input, run, replay_success
        )
