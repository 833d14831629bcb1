"""Quotes in the admin API: the GraphQL types and inputs; quoting itself is
:mod:`kiungo.payments.quotes`."""

from __future__ import annotations

import uuid
from fractions import Fraction
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import Uuid

from kiungo.backend.api.common import Amount, AmountInput, PageInfo, iso, parse_uuid
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, in_filter
from kiungo.backend.context import Context
from kiungo.backend.errors import ErrorCode, refusals_as
from kiungo.payments import quotes as domain
from kiungo.payments.quotes.service import QUOTE_QUERY
from kiungo.payments.receivers import open_payments_receiver
from kiungo.refusal import Refusal

__all__ = [
    "QUOTE_CODES",
    "Quote",
    "QuoteConnection",
    "QuoteMutation",
    "QuoteQuery",
    "amount_of",
    "create_quote",
    "page_quotes",
    "quoting",
]

# What each refusal of the quote domain is in the API. QuotingUnavailable (no rate, or the
# connector could not quote) is INTERNAL_SERVER_ERROR with its message, as Rafiki's
# CouldNotFetchRates is (open_payments/quote/errors.ts errorToCode): a typed code, not masked.
QUOTE_CODES: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.InvalidQuoteRequest, ErrorCode.BAD_USER_INPUT),
    (domain.WalletAddressNotFound, ErrorCode.NOT_FOUND),
    (domain.QuoteNotFound, ErrorCode.NOT_FOUND),
    (domain.WalletAddressInactive, ErrorCode.INACTIVE),
    (domain.QuotingUnavailable, ErrorCode.INTERNAL_SERVER_ERROR),
)


@strawberry.type
class Quote:
    id: strawberry.ID
    wallet_address_id: strawberry.ID
    debit_amount: Amount = strawberry.field(description="What the payment debits, fee included.")
    receive_amount: Amount = strawberry.field(description="What the receiver gets.")
    created_at: str
    expires_at: str
    estimated_exchange_rate: float | None = strawberry.field(
        description="Receiver's smallest units per smallest unit sent, for display only: "
        "amounts are computed with the exact rate."
    )
    _receiver: strawberry.Private[str]

    @strawberry.field(
        description="Who is paid: this node's incoming payment by its Open Payments URL "
        "(<OPEN_PAYMENTS_URL>/incoming-payments/<id>), in whichever form it was given; "
        "anything else as given."
    )
    def receiver(self, info: strawberry.Info[Context, None]) -> str:
        return open_payments_receiver(
            info.context.backend.settings.open_payments_url, self._receiver
        )

    @strawberry.field(description="The tenant it was created under: the operator's, here.")
    def tenant_id(self, info: strawberry.Info[Context, None]) -> strawberry.ID:
        return strawberry.ID(info.context.backend.settings.operator_tenant_id)

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> Quote:
        numerator = row["low_estimated_exchange_rate_numerator"]
        denominator = row["low_estimated_exchange_rate_denominator"]
        estimated = (
            None
            if numerator is None or not denominator
            else float(Fraction(int(numerator), int(denominator)))
        )
        return cls(
            id=strawberry.ID(str(row["id"])),
            wallet_address_id=strawberry.ID(str(row["wallet_address_id"])),
            _receiver=row["receiver"],
            debit_amount=Amount(
                value=int(row["debit_amount"]),
                asset_code=row["asset_code"],
                asset_scale=row["asset_scale"],
            ),
            receive_amount=Amount(
                value=int(row["receive_amount"]),
                asset_code=row["receive_asset_code"],
                asset_scale=row["receive_asset_scale"],
            ),
            created_at=iso(row["created_at"]),
            expires_at=iso(row["expires_at"]),
            estimated_exchange_rate=estimated,
        )


@strawberry.type
class QuoteEdge:
    node: Quote
    cursor: str


@strawberry.type
class QuoteConnection:
    page_info: PageInfo
    edges: list[QuoteEdge]


_QUOTES = Listing(
    QUOTE_QUERY, in_filter("wallets", QUOTE_QUERY.selected_columns["wallet_address_id"], Uuid())
)


async def page_quotes(
    ctx: Context, page: PageRequest, wallet_address_id: uuid.UUID
) -> QuoteConnection:
    """A page of one wallet address's quotes."""
    rows, page_info, cursors = await fetch_listing(
        ctx.pool, _QUOTES, page, {"wallets": [wallet_address_id]}
    )
    return connection(QuoteConnection, QuoteEdge, Quote.from_row, rows, page_info, cursors)


def amount_of(amount: AmountInput | None) -> domain.Amount | None:
    if amount is None:
        return None
    return domain.Amount(amount.value, amount.asset_code, amount.asset_scale)


def quoting(ctx: Context) -> domain.Quoting:
    """What quoting reads, from the backend's services."""
    backend = ctx.backend
    return domain.Quoting(
        backend.settings, backend.pool, backend.ledger, backend.rates, backend.http
    )


async def create_quote(
    ctx: Context,
    wallet_address_id: str,
    receiver: str,
    debit_amount: AmountInput | None,
    receive_amount: AmountInput | None,
) -> dict[str, Any]:
    """Quote and store (:func:`kiungo.payments.quotes.create_quote`); returns the quote's row.
    Refusals are API errors."""
    wallet_id = parse_uuid(wallet_address_id, "walletAddressId")
    with refusals_as(QUOTE_CODES):
        return await domain.create_quote(
            quoting(ctx), wallet_id, receiver, amount_of(debit_amount), amount_of(receive_amount)
        )


async def load_quote(ctx: Context, quote_id: uuid.UUID) -> asyncpg.Record:
    with refusals_as(QUOTE_CODES):
        return await domain.load_quote(ctx.pool, quote_id)


@strawberry.input
class CreateQuoteInput:
    wallet_address_id: str
    receiver: str
    debit_amount: AmountInput | None = None
    receive_amount: AmountInput | None = None
    idempotency_key: str | None = None


@strawberry.type
class QuoteResponse:
    quote: Quote | None


@strawberry.type
class QuoteQuery:
    @strawberry.field(description="Fetch a quote by its id.")
    async def quote(self, info: strawberry.Info[Context, None], id: str) -> Quote | None:
        return Quote.from_row(await load_quote(info.context, parse_uuid(id, "id")))


@strawberry.type
class QuoteMutation:
    @strawberry.mutation(
        description="Quote a payment from a wallet address of this node to a receiver (a "
        "wallet address or incoming payment URL, or a payment pointer): give debitAmount "
        "(fixed send) or receiveAmount (fixed receive), or neither to pay what an incoming "
        "payment still expects."
    )
    async def create_quote(
        self, info: strawberry.Info[Context, None], input: CreateQuoteInput
    ) -> QuoteResponse:
        ctx = info.context

        async def run() -> tuple[dict[str, Any], QuoteResponse]:
            row = await create_quote(
                ctx,
                input.wallet_address_id,
                input.receiver,
                input.debit_amount,
                input.receive_amount,
            )
            return {"id": str(row["id"])}, QuoteResponse(quote=Quote.from_row(row))

        async def replay(record: dict[str, Any]) -> QuoteResponse:
            return QuoteResponse(
                quote=Quote.from_row(await load_quote(ctx, uuid.UUID(record["id"])))
            )

        return await ctx.idempotent("createQuote", input.idempotency_key, input, run, replay)
