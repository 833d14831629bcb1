"""Outgoing payments: a quote made into a payment, funded, sent by the connector's worker and
withdrawn from once it ends.

States (Rafiki's): FUNDING (created; waits for ``depositOutgoingPaymentLiquidity``), SENDING
(funded; the connector's worker sends it, from ``process_at``), then COMPLETED or FAILED (the
worker), or CANCELLED (from FUNDING only). Each change that raises an event writes it in the
transaction of the change, with :func:`kiungo.events.outgoing_payment_data`.

The payment's money is its OUTGOING_PAYMENT ledger account: funded with exactly the quote's
debit amount (fee included), spent by the worker, and what is left is withdrawn once the
payment has ended.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import asyncpg
import strawberry

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
from kiungo.backend.api.liquidity import (
    LiquidityMutationResponse,
    ledger_errors,
    replay_success,
    success_response,
    withdraw_payment,
)
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, paged
from kiungo.backend.api.quotes import QUOTE_CODES, Quote, amount_of, quoting
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.backend.errors import ErrorCode, refusals_as
from kiungo.events import EventType
from kiungo.ledger import AccountKind
from kiungo.payments.outgoing import States
from kiungo.payments.outgoing import service as domain
from kiungo.payments.outgoing.sent import sent_amounts
from kiungo.payments.receivers import open_payments_receiver, stored_receiver
from kiungo.refusal import Refusal

__all__ = [
    "OutgoingPayment",
    "OutgoingPaymentConnection",
    "OutgoingPaymentMutation",
    "OutgoingPaymentQuery",
    "page_outgoing_payments",
]

# What each refusal of the outgoing payment domain is in the API.
_CODES: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.OutgoingPaymentNotFound, ErrorCode.NOT_FOUND),
    (domain.WalletAddressNotFound, ErrorCode.NOT_FOUND),
    (domain.QuoteNotFound, ErrorCode.NOT_FOUND),
    (domain.WalletAddressInactive, ErrorCode.INACTIVE),
    (domain.InvalidPaymentRequest, ErrorCode.BAD_USER_INPUT),
    (domain.QuoteAlreadyPaid, ErrorCode.DUPLICATE),
    (domain.NotCancellable, ErrorCode.CONFLICT),
    (domain.AlreadyFunded, ErrorCode.DUPLICATE),
    (domain.NotFundable, ErrorCode.FORBIDDEN),
    (domain.NotEnded, ErrorCode.FORBIDDEN),
)


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """The domain's refusals as API errors; the ledger's refusal of a deposit as every
    liquidity mutation reports it."""
    with refusals_as(_CODES):
        try:
            yield
        except domain.FundingRefused as refused:
            with ledger_errors():
                raise refused.ledger_error from None


# The models' enum, registered as the schema's OutgoingPaymentState.
strawberry.enum(States, name="OutgoingPaymentState")


_PAYMENTS = Listing(domain.OUTGOING_PAYMENT_QUERY, domain.OUTGOING_PAYMENT_FILTERS)


@strawberry.type
class OutgoingPayment:
    id: strawberry.ID
    wallet_address_id: strawberry.ID
    client: str | None
    state: States
    error: str | None
    state_attempts: int
    debit_amount: Amount = strawberry.field(description="What the payment debits, fee included.")
    receive_amount: Amount = strawberry.field(description="What the receiver is to get.")
    metadata: JSONObject | None
    quote: Quote | None
    created_at: str
    grant_id: str | None
    _uuid: strawberry.Private[uuid.UUID]
    _row: strawberry.Private[Mapping[str, Any]]
    _receiver: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> OutgoingPayment:
        code, scale = row["asset_code"], row["asset_scale"]
        quote = Quote.from_row(
            {
                **dict(row),
                "id": row["quote_id"],
                "created_at": row["quote_created_at"],
                "expires_at": row["quote_expires_at"],
            }
        )
        return cls(
            id=strawberry.ID(str(row["id"])),
            wallet_address_id=strawberry.ID(str(row["wallet_address_id"])),
            client=row["client"],
            state=States(row["state"]),
            error=row["error"],
            state_attempts=int(row["state_attempts"]),
            debit_amount=quote.debit_amount,
            receive_amount=quote.receive_amount,
            _receiver=row["receiver"],
            metadata=metadata_value(row["metadata"]),
            quote=quote,
            created_at=iso(row["created_at"]),
            grant_id=row["grant_id"],
            _uuid=row["id"],
            _row={
                "id": row["id"],
                "state": row["state"],
                "sent_amount": row["sent_amount"],
                "asset": (code, scale),
            },
        )

    @strawberry.field(description="Who is paid, as its quote shows it (Quote.receiver).")
    def receiver(self, info: strawberry.Info[Context, None]) -> str:
        return open_payments_receiver(
            info.context.backend.settings.open_payments_url, self._receiver
        )

    @strawberry.field(
        description="What has been sent so far (while SENDING, what its fulfilled packets "
        "have debited)."
    )
    async def sent_amount(self, info: strawberry.Info[Context, None]) -> Amount:
        [sent] = await sent_amounts(info.context.ledger, [self._row])
        code, scale = self._row["asset"]
        return Amount(value=sent, asset_code=code, asset_scale=scale)

    @strawberry.field(description="Money in the payment's account, not yet sent or withdrawn.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        return await info.context.backend.available(AccountKind.OUTGOING_PAYMENT, self._uuid)


@strawberry.type
class OutgoingPaymentEdge:
    node: OutgoingPayment
    cursor: str


@strawberry.type
class OutgoingPaymentConnection:
    page_info: PageInfo
    edges: list[OutgoingPaymentEdge]


async def page_outgoing_payments(
    ctx: Context,
    page: PageRequest,
    filters: Mapping[str, list[Any]] | None = None,
) -> OutgoingPaymentConnection:
    """A page of outgoing payments; ``filters`` are binds of OUTGOING_PAYMENT_FILTERS."""
    rows, page_info, cursors = await fetch_listing(ctx.pool, _PAYMENTS, page, filters)
    return connection(
        OutgoingPaymentConnection,
        OutgoingPaymentEdge,
        OutgoingPayment.from_row,
        rows,
        page_info,
        cursors,
    )


async def _load(ctx: Context, payment_id: uuid.UUID) -> asyncpg.Record:
    with _api_errors():
        return await domain.load(ctx.pool, payment_id)


async def _reload(ctx: Context, record: dict[str, Any]) -> OutgoingPayment:
    return OutgoingPayment.from_row(await _load(ctx, uuid.UUID(record["id"])))


async def _response(ctx: Context, record: dict[str, Any]) -> OutgoingPaymentResponse:
    return OutgoingPaymentResponse(payment=await _reload(ctx, record))


@strawberry.input
class OutgoingPaymentFilter:
    receiver: FilterString | None = None
    wallet_address_id: FilterString | None = None
    state: FilterString | None = None


@strawberry.type
class OutgoingPaymentQuery:
    @strawberry.field(description="Fetch an outgoing payment by its id.")
    async def outgoing_payment(
        self, info: strawberry.Info[Context, None], id: str
    ) -> OutgoingPayment | None:
        return OutgoingPayment.from_row(await _load(info.context, parse_uuid(id, "id")))

    @strawberry.field(description="A page of outgoing payments, newest first by default.")
    @paged
    async def outgoing_payments(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: OutgoingPaymentFilter | None = None,
        tenant_id: str | None = None,
    ) -> OutgoingPaymentConnection:
        ctx = info.context
        check_tenant(ctx, tenant_id)
        filters = outgoing_payment_filters(filter)
        open_payments_url = ctx.backend.settings.open_payments_url
        for key in ("receivers", "receivers_not"):
            if key in filters:
                # This node's incoming payments by their Open Payments URL too.
                filters[key] = [
                    await stored_receiver(ctx.pool, open_payments_url, r) for r in filters[key]
                ]
        return await page_outgoing_payments(ctx, page, filters)


def outgoing_payment_filters(filter: OutgoingPaymentFilter | None) -> dict[str, list[Any]]:
    """The listing binds of a filter (BAD_USER_INPUT for a value that is none)."""
    if filter is None:
        return {}
    # States first: with both wrong, the state is the error, as it always was.
    return {
        **filter_binds(filter.state, "states", state_values(States)),
        **filter_binds(filter.wallet_address_id, "wallets", uuid_values("walletAddressId")),
        **filter_binds(filter.receiver, "receivers"),
    }


@strawberry.input
class CreateOutgoingPaymentInput:
    wallet_address_id: str
    quote_id: str
    metadata: JSONObject | None = None
    idempotency_key: str | None = None


@strawberry.input
class CreateOutgoingPaymentFromIncomingPaymentInput:
    wallet_address_id: str
    incoming_payment: str = strawberry.field(description="The incoming payment's URL.")
    debit_amount: AmountInput | None = None
    metadata: JSONObject | None = None
    idempotency_key: str | None = None


@strawberry.input
class CancelOutgoingPaymentInput:
    id: strawberry.ID
    reason: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class DepositOutgoingPaymentLiquidityInput:
    outgoing_payment_id: str
    idempotency_key: str


@strawberry.input
class CreateOutgoingPaymentWithdrawalInput:
    outgoing_payment_id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.type
class OutgoingPaymentResponse:
    payment: OutgoingPayment | None


async def _create_payment(
    ctx: Context, wallet_id: uuid.UUID, quote_id: uuid.UUID, metadata: str | None
) -> uuid.UUID:
    with _api_errors():
        return await domain.create(ctx.pool, ctx.ledger, wallet_id, quote_id, metadata)


@strawberry.type
class OutgoingPaymentMutation:
    @strawberry.mutation(
        description="Create an outgoing payment from a quote of the same wallet address; it "
        "waits in FUNDING for depositOutgoingPaymentLiquidity."
    )
    async def create_outgoing_payment(
        self, info: strawberry.Info[Context, None], input: CreateOutgoingPaymentInput
    ) -> OutgoingPaymentResponse:
        ctx = info.context
        wallet_id = parse_uuid(input.wallet_address_id, "walletAddressId")
        quote_id = parse_uuid(input.quote_id, "quoteId")
        metadata = metadata_json(input.metadata)

        async def change() -> uuid.UUID:
            return await _create_payment(ctx, wallet_id, quote_id, metadata)

        return await ctx.idempotent_change(
            "createOutgoingPayment", input.idempotency_key, input, change, partial(_response, ctx)
        )

    @strawberry.mutation(
        description="Quote paying an incoming payment (its remaining amount, or debitAmount) "
        "and create the outgoing payment of that quote."
    )
    async def create_outgoing_payment_from_incoming_payment(
        self,
        info: strawberry.Info[Context, None],
        input: CreateOutgoingPaymentFromIncomingPaymentInput,
    ) -> OutgoingPaymentResponse:
        ctx = info.context
        wallet_id = parse_uuid(input.wallet_address_id, "walletAddressId")
        metadata = metadata_json(input.metadata)

        async def change() -> uuid.UUID:
            # The quote is stored with the payment: a refused payment leaves no quote behind.
            with refusals_as(_CODES + QUOTE_CODES):
                return await domain.create_from_incoming_payment(
                    quoting(ctx),
                    ctx.ledger,
                    wallet_id,
                    input.incoming_payment,
                    amount_of(input.debit_amount),
                    metadata,
                )

        return await ctx.idempotent_change(
            "createOutgoingPaymentFromIncomingPayment",
            input.idempotency_key,
            input,
            change,
            partial(_response, ctx),
        )

    @strawberry.mutation(
        description="Cancel an outgoing payment still in FUNDING; the reason is kept in its "
        "metadata as cancellationReason."
    )
    async def cancel_outgoing_payment(
        self, info: strawberry.Info[Context, None], input: CancelOutgoingPaymentInput
    ) -> OutgoingPaymentResponse:
        ctx = info.context
        payment_id = parse_uuid(str(input.id), "id")

        async def change() -> uuid.UUID:
            with _api_errors():
                await domain.cancel(ctx.pool, ctx.ledger, payment_id, input.reason, metadata_json)
            return payment_id

        return await ctx.idempotent_change(
            "cancelOutgoingPayment", input.idempotency_key, input, change, partial(_response, ctx)
        )

    @strawberry.mutation(
        description="Fund a FUNDING outgoing payment with exactly its debit amount (once) and "
        "start sending it."
    )
    async def deposit_outgoing_payment_liquidity(
        self, info: strawberry.Info[Context, None], input: DepositOutgoingPaymentLiquidityInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        payment_id = parse_uuid(input.outgoing_payment_id, "outgoingPaymentId")

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            with _api_errors():
                await domain.fund(ctx.pool, ctx.ledger, payment_id)
            await ctx.backend.payments_due()
            return success_response()

        return await ctx.idempotent(
            "depositOutgoingPaymentLiquidity", input.idempotency_key, input, run, replay_success
        )

    @strawberry.mutation(
        description="Withdraw what is left in a COMPLETED, FAILED or CANCELLED outgoing payment."
    )
    async def create_outgoing_payment_withdrawal(
        self, info: strawberry.Info[Context, None], input: CreateOutgoingPaymentWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        payment_id = parse_uuid(input.outgoing_payment_id, "outgoingPaymentId")

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            row = await _load(ctx, payment_id)
            with _api_errors():
                domain.check_ended(row["state"])
            await withdraw_payment(
                ctx,
                AccountKind.OUTGOING_PAYMENT,
                payment_id,
                row["asset_id"],
                [
                    EventType.OUTGOING_PAYMENT_COMPLETED.value,
                    EventType.OUTGOING_PAYMENT_FAILED.value,
                    EventType.OUTGOING_PAYMENT_CANCELLED.value,
                ],
                input.timeout_seconds,
                "outgoing payment",
            )
            return success_response()

        return await ctx.idempotent(
            "createOutgoingPaymentWithdrawal", input.idempotency_key, input, run, replay_success
        )
