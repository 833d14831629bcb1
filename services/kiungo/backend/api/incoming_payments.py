"""Incoming payments: what a wallet address expects to receive, paid over STREAM through the
connector (by SPSP on the payment's URL), completed, expired, cancelled and withdrawn. Their
type and reads are :mod:`kiungo.backend.api.incoming_payment_reads`."""

from __future__ import annotations

import uuid
from typing import Any

import strawberry
from sqlalchemy import bindparam, func, select, update

from kiungo.backend.api.common import (
    AmountInput,
    JSONObject,
    UInt64,
    metadata_json,
    parse_uuid,
)
from kiungo.backend.api.incoming_payment_creation import (
    create_incoming_payment,
    new_incoming_payment,
)
from kiungo.backend.api.incoming_payment_reads import (
    IncomingPayment,
    IncomingPaymentConnection,
    IncomingPaymentFilter,
    incoming_payment_filters,
    load_incoming_payment,
    page_incoming_payments,
)
from kiungo.backend.api.liquidity import (
    LiquidityMutationResponse,
    replay_success,
    success_response,
    withdraw_payment,
)
from kiungo.backend.api.pagination import PageRequest, paged
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, not_found
from kiungo.events import EventType
from kiungo.ledger import AccountKind, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import IncomingPayment as IncomingPaymentModel
from kiungo.models.sql import Statement, table
from kiungo.payments.incoming import ENDED, States, store
from kiungo.payments.receivers import WALLET_ADDRESS_RECEIVER_BY_ID

__all__ = [
    "IncomingPayment",
    "IncomingPaymentConnection",
    "IncomingPaymentFilter",
    "IncomingPaymentMutation",
    "IncomingPaymentQuery",
    "incoming_payment_filters",
    "page_incoming_payments",
]

_payments = table(IncomingPaymentModel)
_SET_METADATA = Statement(
    update(_payments)
    .where(_payments.c.id == bindparam("id"))
    .values(metadata=bindparam("metadata"), updated_at=func.now())
    .returning(_payments.c.id)
)
_LOCK_STATE = Statement(
    select(_payments.c.state).where(_payments.c.id == bindparam("id")).with_for_update()
)


@strawberry.type
class IncomingPaymentQuery:
    @strawberry.field(description="Fetch an incoming payment by its id.")
    async def incoming_payment(
        self, info: strawberry.Info[Context, None], id: str
    ) -> IncomingPayment | None:
        return IncomingPayment.from_row(
            await load_incoming_payment(info.context, parse_uuid(id, "id"))
        )

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
    return IncomingPayment.from_row(await load_incoming_payment(ctx, uuid.UUID(record["id"])))


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
            row = await load_incoming_payment(ctx, payment_id)
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
