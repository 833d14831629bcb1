"""A receiver as the admin API shows it (:class:`Receiver`: an incoming payment named by its
URL), read from this node's tables and ledger, or from another node: over Open Payments with
this node's client identity (:mod:`kiungo.openpayments.client`), or in Kiungo's older JSON from
a node that answers only that (:mod:`kiungo.openpayments.remote`); another node's failures as
Rafiki's codes (:func:`remote_error`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import strawberry

from kiungo.backend.api.common import Amount, JSONObject, iso, metadata_value
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.openpayments.client import OpenPaymentsError
from kiungo.openpayments.client_answers import RemoteIncomingPayment
from kiungo.openpayments.remote import (
    IncomingPaymentView,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.payments.incoming import States
from kiungo.payments.receivers import INCOMING_PAYMENT_RECEIVER_BY_ID, incoming_payment_url

__all__ = [
    "Receiver",
    "load_receiver",
    "read_remote_receiver",
    "remote_error",
    "unknown_receiver",
]


@strawberry.type
class Receiver:
    id: str = strawberry.field(description="The incoming payment's URL.")
    wallet_address_url: str
    completed: bool
    incoming_amount: Amount | None
    received_amount: Amount
    expires_at: str | None
    metadata: JSONObject | None
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any], received: int) -> Receiver:
        code, scale = row["asset_code"], row["asset_scale"]
        incoming = row["incoming_amount"]
        return cls(
            id=incoming_payment_url(row["url"], row["id"]),
            wallet_address_url=row["url"],
            completed=row["state"] == States.COMPLETED,
            incoming_amount=(
                None
                if incoming is None
                else Amount(value=int(incoming), asset_code=code, asset_scale=scale)
            ),
            received_amount=Amount(value=received, asset_code=code, asset_scale=scale),
            expires_at=None if row["expires_at"] is None else iso(row["expires_at"]),
            metadata=metadata_value(row["metadata"]),
            created_at=iso(row["created_at"]),
        )

    @classmethod
    def from_remote(cls, payment: RemoteIncomingPayment) -> Receiver:
        """Another node's incoming payment, read over Open Payments."""
        return cls.from_view(payment, payment.created_at, payment.metadata)

    @classmethod
    def from_view(
        cls, payment: IncomingPaymentView, created_at: datetime, metadata: JSONObject | None
    ) -> Receiver:
        """Another node's incoming payment; when it was created and its metadata are given
        apart, as Kiungo's older JSON may not tell the one and never tells the other."""
        code, scale = payment.asset_code, payment.asset_scale
        return cls(
            id=payment.id,
            wallet_address_url=payment.wallet_address,
            completed=payment.completed,
            incoming_amount=(
                None
                if payment.incoming_amount is None
                else Amount(value=payment.incoming_amount, asset_code=code, asset_scale=scale)
            ),
            received_amount=Amount(
                value=payment.received_amount, asset_code=code, asset_scale=scale
            ),
            expires_at=None if payment.expires_at is None else iso(payment.expires_at),
            metadata=metadata,
            created_at=iso(created_at),
        )


def unknown_receiver(url: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"receiver not found: no incoming payment {url}")


_REMOTE_CODES = {
    "NotFound": ErrorCode.NOT_FOUND,
    "UnknownWalletAddress": ErrorCode.NOT_FOUND,
    "InvalidGrant": ErrorCode.FORBIDDEN,
}


def remote_error(exc: OpenPaymentsError, field: str) -> ApiError:
    """Rafiki's GraphQL code for a remote incoming payment error."""
    code = _REMOTE_CODES.get(exc.kind, ErrorCode.BAD_USER_INPUT)
    if code is ErrorCode.BAD_USER_INPUT:
        return bad_input(f"{field}: {exc.message}", field=field)
    return ApiError(code, exc.message)


async def _received(ctx: Context, payment_id: uuid.UUID) -> int:
    try:
        balance = await ctx.ledger.balance(account_id_for(AccountKind.INCOMING_PAYMENT, payment_id))
    except UnknownAccount:
        return 0
    return balance.credits_posted


async def load_receiver(
    ctx: Context, payment_id: uuid.UUID, wallet_url: str | None = None
) -> Receiver:
    """The receiver of one incoming payment of this node; with ``wallet_url``, only under that
    wallet."""
    row = await INCOMING_PAYMENT_RECEIVER_BY_ID.fetchrow(ctx.pool, id=payment_id)
    if row is None or (wallet_url is not None and row["url"] != wallet_url):
        raise unknown_receiver(
            str(payment_id) if wallet_url is None else incoming_payment_url(wallet_url, payment_id)
        )
    return Receiver.from_row(row, await _received(ctx, payment_id))


async def read_remote_receiver(ctx: Context, url: str, field: str) -> Receiver:
    """Another node's incoming payment over Open Payments; from a Kiungo node that answers
    only its older JSON, that."""
    try:
        payment = await ctx.backend.open_payments.incoming_payment(url)
        return Receiver.from_remote(payment)
    except OpenPaymentsError as exc:
        if exc.kind != "InvalidRequest":
            raise remote_error(exc, field) from None
        failure = exc
    try:
        return await _load_remote(ctx, url, field)
    except ApiError:
        raise remote_error(failure, field) from None


async def _load_remote(ctx: Context, url: str, field: str) -> Receiver:
    """Another node's incoming payment in Kiungo's older JSON
    (:mod:`kiungo.openpayments.remote`)."""
    try:
        view = await fetch_incoming_payment(
            ctx.backend.receiver_http,
            url,
            max_seconds=ctx.backend.settings.receiver_fetch_timeout_ms / 1000,
        )
    except ReceiverUnreadable as exc:
        message = f"{field}: the receiver's node does not tell its amounts: {exc}"
        raise bad_input(message, field=field) from None
    if view is None:
        raise unknown_receiver(url)
    if view.created_at is None:
        message = f"{field}: the receiver's node does not tell when it was created"
        raise bad_input(message, field=field)
    return Receiver.from_view(view, view.created_at, None)
