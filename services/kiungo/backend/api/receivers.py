"""Receivers (Rafiki's receiver API): incoming payments on this node or on any other that
speaks Open Payments.

A receiver is an incoming payment named by its URL (``<resource server>/incoming-payments/<id>``
over Open Payments; this node also names its own ``<wallet address URL>/incoming-payments/<id>``).
As Rafiki's receiver service, a wallet address or incoming payment of another node is reached
over Open Payments with this node's own client identity
(:mod:`kiungo.openpayments.client`: a grant from its authorization server, signed requests to
its resource server); another Kiungo node that answers only its older JSON is still read that
way (:mod:`kiungo.openpayments.remote`).

- ``createReceiver`` creates an incoming payment on a wallet address: of this node as
  ``createIncomingPayment`` does (same checks, same ``incoming_payment.created`` event), of
  another node on its resource server.
- ``receiver`` reads one; what a local one received is its ledger account's posted credits.
- ``completeReceiver`` (``incomingPaymentUrl``, as Rafiki's input, or ``id``) completes one
  early: it stops accepting money; a local one's ``incoming_payment.completed`` event offers
  what it received for withdrawal.

Another node's failures are Rafiki's codes: NOT_FOUND (no such payment or wallet address),
FORBIDDEN (no grant could be had), BAD_USER_INPUT (anything else it answered, or failed to).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import strawberry

from kiungo.backend.api.common import AmountInput, JSONObject
from kiungo.backend.api.incoming_payment_creation import (
    NewIncomingPayment,
    create_incoming_payment,
    new_incoming_payment,
)
from kiungo.backend.api.receiver_reads import (
    Receiver,
    load_receiver,
    read_remote_receiver,
    remote_error,
    unknown_receiver,
)
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input
from kiungo.ledger import AccountKind, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.openpayments.client import OpenPaymentsError
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH
from kiungo.payments.incoming import OPEN, States, store
from kiungo.payments.receivers import (
    INCOMING_PAYMENT_RECEIVER_FOR_UPDATE,
    WALLET_ADDRESS_RECEIVER_BY_URL,
    InvalidReceiverUrl,
    local_receiver_url,
)

__all__ = ["Receiver", "ReceiverMutation", "ReceiverQuery"]

_MAX_URL_LENGTH = 2048


def _local_url(ctx: Context, given: str, field: str) -> str:
    """``given`` as a URL of this node (normalized as quoting does), else BAD_USER_INPUT:
    malformed, or another node's."""
    text = given.strip()
    if not text or len(text) > _MAX_URL_LENGTH:
        raise bad_input(f"{field} must be a URL of 1-{_MAX_URL_LENGTH} characters", field=field)
    try:
        local = local_receiver_url(ctx.backend.settings.open_payments_url, text)
        parts = urlsplit("https://" + text[1:] if text.startswith("$") else text)
    except InvalidReceiverUrl:
        raise bad_input(f"{field} must be a URL without query or fragment", field=field) from None
    except ValueError:
        raise bad_input(f"{field} is not a URL: {given!r}", field=field) from None
    if local is not None:
        return local
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad_input(
            f"{field} must be an http(s) URL or a $payment.pointer, not {given!r}", field=field
        )
    raise _Remote(parts.geturl())


class _Remote(Exception):
    """The URL is another node's (``url``, a ``$pointer`` read as ``https://``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _payment_of(ctx: Context, receiver_url: str, field: str) -> tuple[uuid.UUID, str | None]:
    """The incoming payment id and wallet address URL a receiver URL of this node names (no
    wallet address for its Open Payments id, ``<OPEN_PAYMENTS_URL>/incoming-payments/<id>``);
    :class:`_Remote` for another node's URL."""
    url = _local_url(ctx, receiver_url, field)
    match = INCOMING_PAYMENT_PATH.match(url)
    if match is None:
        raise bad_input(
            f"{field} must be an incoming payment URL, <wallet address URL>/incoming-payments/<id>",
            field=field,
        )
    wallet: str | None = match["wallet"]
    if wallet == ctx.backend.settings.open_payments_url.rstrip("/"):
        wallet = None
    return uuid.UUID(match["id"]), wallet


def _remote_payment_url(url: str, field: str) -> str:
    if INCOMING_PAYMENT_PATH.match(url) is None:
        raise bad_input(
            f"{field} must be an incoming payment URL, <resource server>/incoming-payments/<id>",
            field=field,
        )
    return url


@strawberry.input
class CreateReceiverInput:
    wallet_address_url: str = strawberry.field(
        description="A wallet address URL (or $payment.pointer), of this node or another."
    )
    expires_at: str | None = None
    incoming_amount: AmountInput | None = None
    metadata: JSONObject | None = None
    idempotency_key: str | None = None


@strawberry.type
class CreateReceiverResponse:
    receiver: Receiver | None


@strawberry.input
class CompleteReceiverInput:
    incoming_payment_url: str | None = strawberry.field(
        default=None,
        description="The receiver's (incoming payment's) URL (Rafiki's field): "
        "<wallet address URL>/incoming-payments/<id>, its Open Payments URL "
        "<OPEN_PAYMENTS_URL>/incoming-payments/<id>, or another node's incoming payment URL.",
    )
    id: str | None = strawberry.field(
        default=None,
        description="The receiver's URL, as incomingPaymentUrl; give one of the two.",
        deprecation_reason="Use `incomingPaymentUrl`, Rafiki's name.",
    )
    idempotency_key: str | None = None


@strawberry.type
class CompleteReceiverResponse:
    receiver: Receiver | None


@strawberry.type
class ReceiverQuery:
    @strawberry.field(
        description="An incoming payment by its URL, as a receiver: this node's, or another "
        "node's read over Open Payments with a grant of its authorization server."
    )
    async def receiver(self, info: strawberry.Info[Context, None], id: str) -> Receiver | None:
        try:
            payment_id, wallet_url = _payment_of(info.context, id, "id")
        except _Remote as remote:
            return await read_remote_receiver(
                info.context, _remote_payment_url(remote.url, "id"), "id"
            )
        return await load_receiver(info.context, payment_id, wallet_url)


@strawberry.type
class ReceiverMutation:
    @strawberry.mutation(
        description="Create a receiver: an incoming payment on a wallet address, of this node "
        "(as createIncomingPayment) or of another node (over Open Payments, on its resource "
        "server), named by its URL."
    )
    async def create_receiver(
        self, info: strawberry.Info[Context, None], input: CreateReceiverInput
    ) -> CreateReceiverResponse:
        ctx = info.context
        new = new_incoming_payment(ctx, input.expires_at, input.incoming_amount, input.metadata)
        try:
            wallet_url = _local_url(ctx, input.wallet_address_url, "walletAddressUrl")
        except _Remote as remote:
            return await _create_remote(ctx, input, new, remote.url)

        async def run() -> tuple[dict[str, Any], CreateReceiverResponse]:
            wallet = await WALLET_ADDRESS_RECEIVER_BY_URL.fetchrow(ctx.pool, url=wallet_url)
            if wallet is None:
                if INCOMING_PAYMENT_PATH.match(wallet_url):
                    raise bad_input(
                        "walletAddressUrl is an incoming payment URL; give its wallet address URL",
                        field="walletAddressUrl",
                    )
                raise ApiError(
                    ErrorCode.NOT_FOUND, f"wallet address not found: no {wallet_url} on this node"
                )
            row = await create_incoming_payment(ctx, wallet, new)
            return {"id": str(row["id"])}, CreateReceiverResponse(
                receiver=Receiver.from_row({**row, "url": wallet["url"]}, 0)
            )

        async def replay(record: dict[str, Any]) -> CreateReceiverResponse:
            return CreateReceiverResponse(
                receiver=await load_receiver(ctx, uuid.UUID(record["id"]))
            )

        return await ctx.idempotent("createReceiver", input.idempotency_key, input, run, replay)

    @strawberry.mutation(
        description="Complete a PENDING or PROCESSING receiver (incoming payment) early: it "
        "accepts no more money. This node's: its incoming_payment.completed event offers what it "
        "received for withdrawal. Another node's (one this node created): over Open Payments."
    )
    async def complete_receiver(
        self, info: strawberry.Info[Context, None], input: CompleteReceiverInput
    ) -> CompleteReceiverResponse:
        ctx = info.context
        given, field = input.incoming_payment_url, "incomingPaymentUrl"
        if given is None:
            given, field = input.id, "id"
        elif input.id is not None:
            raise bad_input("give incomingPaymentUrl (or id, its older name), not both", field="id")
        if given is None:
            raise bad_input("incomingPaymentUrl is required", field="incomingPaymentUrl")
        try:
            payment_id, wallet_url = _payment_of(ctx, given, field)
        except _Remote as remote:
            return await _complete_remote(ctx, input, _remote_payment_url(remote.url, field), field)

        async def run() -> tuple[dict[str, Any], CompleteReceiverResponse]:
            async with ctx.pool.acquire() as conn, conn.transaction():
                row = await INCOMING_PAYMENT_RECEIVER_FOR_UPDATE.fetchrow(conn, id=payment_id)
                if row is None or (wallet_url is not None and row["url"] != wallet_url):
                    raise unknown_receiver(given)
                state = row["state"]
                if state not in OPEN:
                    raise ApiError(
                        ErrorCode.CONFLICT,
                        f"only a PENDING or PROCESSING receiver can be completed; this one is "
                        f"{state}",
                    )
                if row["expires_at"] <= datetime.now(UTC):
                    raise ApiError(ErrorCode.CONFLICT, "the receiver has expired")
                await ctx.ledger.sync_balances(
                    conn, [account_id_for(AccountKind.INCOMING_PAYMENT, payment_id)]
                )
                account = await ledger_reads.incoming_payment_received(conn, payment_id)
                if account is not None and account.pending > 0:
                    raise ApiError(
                        ErrorCode.CONFLICT,
                        "money is on its way to the receiver; retry in a moment",
                    )
                received = 0 if account is None else account.posted
                await store.complete(
                    conn,
                    payment_id,
                    received,
                    (row["asset_code"], row["asset_scale"]),
                )
            await ctx.backend.receiver_changed(payment_id)
            completed = Receiver.from_row({**dict(row), "state": States.COMPLETED.value}, received)
            return {"id": str(payment_id)}, CompleteReceiverResponse(receiver=completed)

        async def replay(record: dict[str, Any]) -> CompleteReceiverResponse:
            return CompleteReceiverResponse(
                receiver=await load_receiver(ctx, uuid.UUID(record["id"]))
            )

        return await ctx.idempotent("completeReceiver", input.idempotency_key, input, run, replay)


async def _create_remote(
    ctx: Context, input: CreateReceiverInput, new: NewIncomingPayment, wallet_url: str
) -> CreateReceiverResponse:
    """createReceiver on another node's wallet address: the incoming payment made on its
    resource server (an idempotency key replays by reading it there)."""
    amount = new.incoming_amount

    async def run() -> tuple[dict[str, Any], CreateReceiverResponse]:
        try:
            _, payment = await ctx.backend.open_payments.create_incoming_payment(
                wallet_url,
                incoming_amount=(
                    None
                    if amount is None
                    else (amount.value, amount.asset_code, amount.asset_scale)
                ),
                expires_at=new.expires_at if input.expires_at is not None else None,
                metadata=new.metadata,
            )
        except OpenPaymentsError as exc:
            raise remote_error(exc, "walletAddressUrl") from None
        return {"url": payment.id}, CreateReceiverResponse(receiver=Receiver.from_remote(payment))

    async def replay(record: dict[str, Any]) -> CreateReceiverResponse:
        return CreateReceiverResponse(
            receiver=await read_remote_receiver(ctx, record["url"], "walletAddressUrl")
        )

    return await ctx.idempotent("createReceiver", input.idempotency_key, input, run, replay)


async def _complete_remote(
    ctx: Context, input: CompleteReceiverInput, url: str, field: str
) -> CompleteReceiverResponse:
    async def run() -> tuple[dict[str, Any], CompleteReceiverResponse]:
        try:
            payment = await ctx.backend.open_payments.complete_incoming_payment(url)
        except OpenPaymentsError as exc:
            raise remote_error(exc, field) from None
        return {"url": url}, CompleteReceiverResponse(receiver=Receiver.from_remote(payment))

    async def replay(record: dict[str, Any]) -> CompleteReceiverResponse:
        return CompleteReceiverResponse(
            receiver=await read_remote_receiver(ctx, record["url"], field)
        )

    return await ctx.idempotent("completeReceiver", input.idempotency_key, input, run, replay)
