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

import asyncpg
import strawberry

from kiungo.backend.api.common import (
    Amount,
    AmountInput,
    JSONObject,
    iso,
    metadata_value,
)
from kiungo.backend.api.incoming_payment_creation import (
    NewIncomingPayment,
    create_incoming_payment,
    new_incoming_payment,
)
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.openpayments.client import OpenPaymentsError, RemoteIncomingPayment
from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.payments.incoming import OPEN, States, store
from kiungo.payments.receivers import (
    INCOMING_PAYMENT_RECEIVER_BY_ID,
    INCOMING_PAYMENT_RECEIVER_FOR_UPDATE,
    WALLET_ADDRESS_RECEIVER_BY_URL,
    InvalidReceiverUrl,
    incoming_payment_url,
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


_REMOTE_CODES = {
    "NotFound": ErrorCode.NOT_FOUND,
    "UnknownWalletAddress": ErrorCode.NOT_FOUND,
    "InvalidGrant": ErrorCode.FORBIDDEN,
}


def _remote_error(exc: OpenPaymentsError, field: str) -> ApiError:
    """Rafiki's GraphQL code for a remote incoming payment error."""
    code = _REMOTE_CODES.get(exc.kind, ErrorCode.BAD_USER_INPUT)
    if code is ErrorCode.BAD_USER_INPUT:
        return bad_input(f"{field}: {exc.message}", field=field)
    return ApiError(code, exc.message)


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


def _unknown(url: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"receiver not found: no incoming payment {url}")


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


def _from_remote(payment: RemoteIncomingPayment) -> Receiver:
    code, scale = payment.asset_code, payment.asset_scale
    return Receiver(
        id=payment.id,
        wallet_address_url=payment.wallet_address,
        completed=payment.completed,
        incoming_amount=(
            None
            if payment.incoming_amount is None
            else Amount(value=payment.incoming_amount, asset_code=code, asset_scale=scale)
        ),
        received_amount=Amount(value=payment.received_amount, asset_code=code, asset_scale=scale),
        expires_at=None if payment.expires_at is None else iso(payment.expires_at),
        metadata=payment.metadata,
        created_at=iso(payment.created_at),
    )


async def _read_remote(ctx: Context, url: str, field: str) -> Receiver:
    """Another node's incoming payment over Open Payments; from a Kiungo node that answers
    only its older JSON, that."""
    try:
        return _from_remote(await ctx.backend.open_payments.incoming_payment(url))
    except OpenPaymentsError as exc:
        if exc.kind != "InvalidRequest":
            raise _remote_error(exc, field) from None
        failure = exc
    try:
        return await _load_remote(ctx, url, field)
    except ApiError:
        raise _remote_error(failure, field) from None


async def _received(ctx: Context, payment_id: uuid.UUID) -> int:
    try:
        balance = await ctx.ledger.balance(account_id_for(AccountKind.INCOMING_PAYMENT, payment_id))
    except UnknownAccount:
        return 0
    return balance.credits_posted


async def _load(ctx: Context, payment_id: uuid.UUID, wallet_url: str | None = None) -> Receiver:
    """The receiver of one incoming payment; with ``wallet_url``, only under that wallet."""
    row = await INCOMING_PAYMENT_RECEIVER_BY_ID.fetchrow(ctx.pool, id=payment_id)
    if row is None or (wallet_url is not None and row["url"] != wallet_url):
        raise _unknown(
            str(payment_id) if wallet_url is None else incoming_payment_url(wallet_url, payment_id)
        )
    return Receiver.from_row(row, await _received(ctx, payment_id))


def _remote_incoming_payment_url(ctx: Context, given: str) -> str | None:
    """``given`` when it names another node's incoming payment (a ``$pointer`` read as
    ``https://``), else None."""
    text = given.strip()
    if not text or len(text) > _MAX_URL_LENGTH:
        return None
    url = "https://" + text[1:] if text.startswith("$") else text
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return None
    try:
        if local_receiver_url(ctx.backend.settings.open_payments_url, text) is not None:
            return None
    except InvalidReceiverUrl:
        return None
    return url if INCOMING_PAYMENT_PATH.match(url) else None


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
        raise _unknown(url)
    if view.created_at is None:
        message = f"{field}: the receiver's node does not tell when it was created"
        raise bad_input(message, field=field)
    code, scale = view.asset_code, view.asset_scale
    return Receiver(
        id=view.id,
        wallet_address_url=view.wallet_address,
        completed=view.completed,
        incoming_amount=(
            None
            if view.incoming_amount is None
            else Amount(value=view.incoming_amount, asset_code=code, asset_scale=scale)
        ),
        received_amount=Amount(value=view.received_amount, asset_code=code, asset_scale=scale),
        expires_at=None if view.expires_at is None else iso(view.expires_at),
        metadata=None,
        created_at=iso(view.created_at),
    )


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
            return await _read_remote(info.context, _remote_payment_url(remote.url, "id"), "id")
        return await _load(info.context, payment_id, wallet_url)


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
            return CreateReceiverResponse(receiver=await _load(ctx, uuid.UUID(record["id"])))

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
                    raise _unknown(given)
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
            return CompleteReceiverResponse(receiver=await _load(ctx, uuid.UUID(record["id"])))

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
            raise _remote_error(exc, "walletAddressUrl") from None
        return {"url": payment.id}, CreateReceiverResponse(receiver=_from_remote(payment))

    async def replay(record: dict[str, Any]) -> CreateReceiverResponse:
        return CreateReceiverResponse(
            receiver=await _read_remote(ctx, record["url"], "walletAddressUrl")
        )

    return await ctx.idempotent("createReceiver", input.idempotency_key, input, run, replay)


async def _complete_remote(
    ctx: Context, input: CompleteReceiverInput, url: str, field: str
) -> CompleteReceiverResponse:
    async def run() -> tuple[dict[str, Any], CompleteReceiverResponse]:
        try:
            payment = await ctx.backend.open_payments.complete_incoming_payment(url)
        except OpenPaymentsError as exc:
            raise _remote_error(exc, field) from None
        return {"url": url}, CompleteReceiverResponse(receiver=_from_remote(payment))

    async def replay(record: dict[str, Any]) -> CompleteReceiverResponse:
        return CompleteReceiverResponse(receiver=await _read_remote(ctx, record["url"], field))

    return await ctx.idempotent("completeReceiver", input.idempotency_key, input, run, replay)
