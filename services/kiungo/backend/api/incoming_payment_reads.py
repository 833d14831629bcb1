"""Reading incoming payments: the IncomingPayment type, one by its id, and a page of them with
Rafiki's filters (the admin API's own query, and a wallet address's incomingPayments)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import String, Uuid, bindparam, case, select

from kiungo.backend.api.common import (
    Amount,
    FilterString,
    JSONObject,
    PageInfo,
    UInt64,
    filter_binds,
    iso,
    metadata_value,
    state_values,
    uuid_values,
)
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, in_filter
from kiungo.backend.context import Context
from kiungo.backend.errors import not_found
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.models import Asset
from kiungo.models import IncomingPayment as IncomingPaymentModel
from kiungo.models.sql import Statement, table
from kiungo.openpayments.incoming_payments import payment_url
from kiungo.payments.incoming import States

__all__ = [
    "IncomingPayment",
    "IncomingPaymentConnection",
    "IncomingPaymentFilter",
    "incoming_payment_filters",
    "load_incoming_payment",
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
    return connection(
        IncomingPaymentConnection,
        IncomingPaymentEdge,
        IncomingPayment.from_row,
        rows,
        page_info,
        cursors,
    )


async def load_incoming_payment(ctx: Context, payment_id: uuid.UUID) -> asyncpg.Record:
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
