"""Make a quote and store it; read one back. :func:`price_quote` makes one without storing it
(:func:`store_quote` stores it, in the caller's transaction: an outgoing payment made from an
incoming payment stores its quote with the payment, or neither)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import ColumnElement, bindparam, insert, select
from sqlalchemy.sql.selectable import NamedFromClause

from kiungo.ilp.oer import MAX_UINT64
from kiungo.models import Asset, Quote, WalletAddress, WalletAddressStatus
from kiungo.models.sql import Statement, table
from kiungo.payments.quotes.errors import (
    InvalidQuoteRequest,
    InvalidReceiver,
    QuoteNotFound,
    WalletAddressInactive,
    WalletAddressNotFound,
)
from kiungo.payments.quotes.fees import sending_fee
from kiungo.payments.quotes.quoting import Amount, Quoting
from kiungo.payments.quotes.receiver import (
    at_most_rate_parts,
    local_receiver,
    remote_receiver,
)
from kiungo.payments.receivers import InvalidReceiverUrl, local_receiver_url

__all__ = [
    "QUOTE_QUERY",
    "PricedQuote",
    "create_quote",
    "load_quote",
    "price_quote",
    "quote_columns",
    "store_quote",
]

_MAX_RECEIVER_LENGTH = 2048

_quotes = table(Quote)
_q = _quotes.alias("q")
_a = table(Asset).alias("a")
_w = table(WalletAddress).alias("w")

# A quote (``q``) with its asset (``a``): the row create_quote and load_quote return.


def quote_columns(quote: NamedFromClause) -> tuple[ColumnElement[Any], ...]:
    """What a quote is shown with: its asset, receiver, amounts and low rate estimate
    (``quote`` the quotes table or an alias of it)."""
    c = quote.c
    return (
        c.asset_id,
        c.receiver,
        c.debit_amount,
        c.fee_amount,
        c.receive_amount,
        c.receive_asset_code,
        c.receive_asset_scale,
        c.low_estimated_exchange_rate_numerator,
        c.low_estimated_exchange_rate_denominator,
    )


QUOTE_QUERY = select(
    _q.c.id,
    _q.c.wallet_address_id,
    *quote_columns(_q),
    _q.c.created_at,
    _q.c.expires_at,
    _a.c.code.label("asset_code"),
    _a.c.scale.label("asset_scale"),
).select_from(_q.join(_a, _a.c.id == _q.c.asset_id))
"""Every quote with its asset, as load_quote reads one: a select to page through."""
_SELECT = Statement(QUOTE_QUERY.where(_q.c.id == bindparam("id")))
_WALLET = Statement(
    select(_w.c.id, _w.c.status, _w.c.asset_id, _a.c.code, _a.c.scale)
    .select_from(_w.join(_a, _a.c.id == _w.c.asset_id))
    .where(_w.c.id == bindparam("id"))
)
_INSERT = Statement(
    insert(_quotes).values(
        {
            name: bindparam(name)
            for name in (
                "id",
                "wallet_address_id",
                "asset_id",
                "receiver",
                "debit_amount",
                "fee_amount",
                "receive_amount",
                "receive_asset_code",
                "receive_asset_scale",
                "max_packet_amount",
                "min_exchange_rate_numerator",
                "min_exchange_rate_denominator",
                "low_estimated_exchange_rate_numerator",
                "low_estimated_exchange_rate_denominator",
                "high_estimated_exchange_rate_numerator",
                "high_estimated_exchange_rate_denominator",
                "estimated_exchange_rate",
                "fee_id",
                "expires_at",
                "stream_destination",
                "stream_shared_secret",
                "client",
            )
        }
        | {"created_at": bindparam("now"), "updated_at": bindparam("now")}
    )
)


def _decimal(rate: Fraction) -> Decimal | None:
    """The NUMERIC(40, 20) estimate (display only), rounded down; None when it does not fit."""
    with localcontext() as context:
        context.prec = 80
        value = (Decimal(rate.numerator) / Decimal(rate.denominator)).quantize(
            Decimal("1e-20"), rounding=ROUND_FLOOR
        )
    return value if value < Decimal(10) ** 20 else None


def _check_amount(amount: Amount, what: str) -> None:
    if amount.value <= 0:
        raise InvalidQuoteRequest(f"{what} must be above zero", field=what)


@dataclass(frozen=True, slots=True)
class PricedQuote:
    """A quote made and not yet stored: its columns and the row it is once stored (as
    :func:`load_quote` reads it)."""

    columns: dict[str, Any]
    row: dict[str, Any]

    @property
    def id(self) -> uuid.UUID:
        quote_id: uuid.UUID = self.row["id"]
        return quote_id


async def create_quote(
    quoting: Quoting,
    wallet_id: uuid.UUID,
    receiver: str,
    debit_amount: Amount | None,
    receive_amount: Amount | None,
) -> dict[str, Any]:
    """Quote and store; returns the quote's row (as :func:`load_quote` reads it). Nothing is
    written unless the quote is made."""
    quote = await price_quote(quoting, wallet_id, receiver, debit_amount, receive_amount)
    await store_quote(quoting.pool, quote)
    return quote.row


async def store_quote(
    executor: asyncpg.Pool | asyncpg.Connection, quote: PricedQuote, *, client: str | None = None
) -> None:
    """Write a quote :func:`price_quote` made (made by the Open Payments ``client``, if any)."""
    await _INSERT.execute(executor, **quote.columns, client=client)


async def price_quote(
    quoting: Quoting,
    wallet_id: uuid.UUID,
    receiver: str,
    debit_amount: Amount | None,
    receive_amount: Amount | None,
) -> PricedQuote:
    """Quote, writing nothing (:func:`store_quote` writes it); refusals are
    :class:`kiungo.payments.quotes.errors.QuoteError`."""
    if debit_amount is not None and receive_amount is not None:
        raise InvalidQuoteRequest("give debitAmount or receiveAmount, not both")
    if debit_amount is not None:
        _check_amount(debit_amount, "debitAmount")
    if receive_amount is not None:
        _check_amount(receive_amount, "receiveAmount")
    receiver = receiver.strip()
    if not receiver or len(receiver) > _MAX_RECEIVER_LENGTH:
        raise InvalidReceiver(f"give a URL or payment pointer of 1-{_MAX_RECEIVER_LENGTH} chars")

    wallet = await _WALLET.fetchrow(quoting.pool, id=wallet_id)
    if wallet is None:
        raise WalletAddressNotFound()
    if wallet["status"] != WalletAddressStatus.ACTIVE:
        raise WalletAddressInactive()
    sender = (wallet["code"], wallet["scale"])
    if debit_amount is not None and (debit_amount.asset_code, debit_amount.asset_scale) != sender:
        raise InvalidQuoteRequest(
            f"debitAmount must be in the wallet address's asset, {sender[0]} at scale {sender[1]}",
            field="debitAmount",
        )

    now = datetime.now(UTC)
    try:
        local = local_receiver_url(quoting.settings.open_payments_url, receiver)
    except InvalidReceiverUrl as exc:
        raise InvalidReceiver(str(exc)) from None
    if local is not None:
        target = await local_receiver(quoting, local, sender, now)
    elif receiver.startswith("$") or urlsplit(receiver).scheme in ("http", "https"):
        target = await remote_receiver(quoting, receiver, sender, now)
    else:
        raise InvalidReceiver("give an http(s) URL or a $payment.pointer")
    receiving = (target.asset_code, target.asset_scale)
    if (
        receive_amount is not None
        and (receive_amount.asset_code, receive_amount.asset_scale) != receiving
    ):
        raise InvalidQuoteRequest(
            f"receiveAmount must be in the receiver's asset, {receiving[0]} at scale "
            f"{receiving[1]}",
            field="receiveAmount",
        )

    fee = await sending_fee(quoting.pool, wallet["asset_id"])
    rate = target.low
    slippage = Fraction(quoting.settings.slippage)
    minimum_rate = at_most_rate_parts(rate * (1 - slippage))
    if debit_amount is None:
        if receive_amount is None:
            if target.remaining is None:
                raise InvalidQuoteRequest(
                    "give debitAmount or receiveAmount: the receiver does not say how much "
                    "it expects"
                )
            receive = target.remaining
        else:
            receive = receive_amount.value
        sent = -(-receive * minimum_rate.denominator // minimum_rate.numerator)
        debit = sent + fee.on(sent)
        if debit > MAX_UINT64:
            raise InvalidQuoteRequest("receiving that much would debit more than 2^64 - 1")
    else:
        debit = debit_amount.value
        sent = fee.sendable(debit)
        receive = sent * rate.numerator // rate.denominator
        if receive <= 0:
            least = -(-rate.denominator // rate.numerator)
            minimum = least + fee.on(least)
            raise InvalidQuoteRequest(
                f"debitAmount is too small to deliver anything; send at least {minimum}",
                field="debitAmount",
                minSendAmount=str(minimum),
            )
    if target.remaining is not None and receive > target.remaining:
        raise InvalidQuoteRequest(
            f"the quote would deliver {receive}, more than the {target.remaining} the "
            "incoming payment still expects",
            field="receiveAmount" if debit_amount is None else "debitAmount",
        )

    expires_at = now + timedelta(milliseconds=quoting.settings.quote_lifespan_ms)
    if target.expires_at is not None and target.expires_at < expires_at:
        expires_at = target.expires_at
    quote_id = uuid.uuid4()
    columns: dict[str, Any] = {
        "id": quote_id,
        "wallet_address_id": wallet_id,
        "asset_id": wallet["asset_id"],
        "receiver": target.url,
        "debit_amount": debit,
        "fee_amount": debit - sent,
        "receive_amount": receive,
        "receive_asset_code": target.asset_code,
        "receive_asset_scale": target.asset_scale,
        "max_packet_amount": target.max_packet,
        "min_exchange_rate_numerator": minimum_rate.numerator,
        "min_exchange_rate_denominator": minimum_rate.denominator,
        "low_estimated_exchange_rate_numerator": rate.numerator,
        "low_estimated_exchange_rate_denominator": rate.denominator,
        "high_estimated_exchange_rate_numerator": target.high.numerator,
        "high_estimated_exchange_rate_denominator": target.high.denominator,
        "estimated_exchange_rate": _decimal(rate),
        "fee_id": fee.id,
        "expires_at": expires_at,
        "now": now,
        "stream_destination": target.stream_destination,
        "stream_shared_secret": target.stream_shared_secret,
    }
    shown = (
        "id", "wallet_address_id", "asset_id", "receiver", "debit_amount", "fee_amount",
        "receive_amount", "receive_asset_code", "receive_asset_scale",
        "low_estimated_exchange_rate_numerator", "low_estimated_exchange_rate_denominator",
        "expires_at",
    )  # fmt: skip
    row = {name: columns[name] for name in shown}
    row |= {"created_at": now, "asset_code": sender[0], "asset_scale": sender[1]}
    return PricedQuote(columns, row)


async def load_quote(pool: asyncpg.Pool, quote_id: uuid.UUID) -> asyncpg.Record:
    """The quote's row (its columns and its asset's code and scale)."""
    row = await _SELECT.fetchrow(pool, id=quote_id)
    if row is None:
        raise QuoteNotFound()
    return row
