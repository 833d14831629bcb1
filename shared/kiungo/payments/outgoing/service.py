"""Creating, funding and cancelling an outgoing payment: the rules each request is checked
against before :mod:`kiungo.payments.outgoing.store` changes the row.

Each refusal is an :class:`OutgoingPaymentError` subclass, raised before anything is written
(or with the transaction that read the row rolled back); the admin API maps each to its code.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import asyncpg
from sqlalchemy import String, Uuid, all_, any_, bindparam, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from kiungo.events import OUTGOING_PAYMENT_EVENT_ROW_LOCKED
from kiungo.ledger import (
    AccountKind,
    Ledger,
    LedgerError,
    TransferExists,
    UnknownAccount,
    account_id_for,
)
from kiungo.models import Asset, OutgoingPayment, Quote, WalletAddress, WalletAddressStatus
from kiungo.models.sql import Statement, stored_json, table
from kiungo.payments.outgoing import limits, store
from kiungo.payments.outgoing.limits import GrantLimits
from kiungo.payments.outgoing.states import ENDED, States
from kiungo.payments.quotes.quoting import Amount, Quoting
from kiungo.payments.quotes.service import PricedQuote, price_quote, quote_columns, store_quote
from kiungo.refusal import NotFound, Refusal

__all__ = [
    "OUTGOING_PAYMENT_FILTERS",
    "OUTGOING_PAYMENT_QUERY",
    "AlreadyFunded",
    "FundingRefused",
    "InsufficientGrant",
    "InvalidPaymentRequest",
    "NotCancellable",
    "NotEnded",
    "NotFundable",
    "NotFunding",
    "OutgoingPaymentError",
    "OutgoingPaymentNotFound",
    "QuoteAlreadyPaid",
    "QuoteNotFound",
    "WalletAddressInactive",
    "WalletAddressNotFound",
    "cancel",
    "check_ended",
    "create",
    "create_from_incoming_payment",
    "fund",
    "load",
]


class OutgoingPaymentError(Refusal):
    """A request about an outgoing payment refused, nothing written."""


class OutgoingPaymentNotFound(NotFound, OutgoingPaymentError):
    what = "outgoing payment"


class WalletAddressNotFound(NotFound, OutgoingPaymentError):
    what = "wallet address"


class QuoteNotFound(NotFound, OutgoingPaymentError):
    what = "quote"


class WalletAddressInactive(OutgoingPaymentError):
    default_message = "the wallet address is inactive"


class InvalidPaymentRequest(OutgoingPaymentError):
    """The quote cannot be paid by this request (the caller's to change)."""


class InsufficientGrant(OutgoingPaymentError):
    """The Open Payments grant the payment is made under does not allow it (its limits)."""


class QuoteAlreadyPaid(OutgoingPaymentError):
    default_message = "the quote already has an outgoing payment"


class NotFunding(OutgoingPaymentError):
    """What is asked of the payment is for a FUNDING one only."""

    asked: ClassVar[str]

    def __init__(self, state: str) -> None:
        super().__init__(
            f"only a {States.FUNDING} outgoing payment {self.asked}; this one is {state}"
        )


class NotCancellable(NotFunding):
    asked = "can be cancelled"


class AlreadyFunded(OutgoingPaymentError):
    def __init__(self) -> None:
        super().__init__("the outgoing payment is already funded", liquidityError="TransferExists")


class NotFundable(NotFunding):
    asked = "takes liquidity"


class NotEnded(OutgoingPaymentError):
    def __init__(self) -> None:
        *first, last = [s.value for s in States if s in ENDED]
        super().__init__(
            f"the outgoing payment has not ended; withdraw once it is {', '.join(first)} or {last}"
        )


class FundingRefused(OutgoingPaymentError):
    """The ledger refused the deposit; ``ledger_error`` says why."""

    def __init__(self, ledger_error: LedgerError) -> None:
        super().__init__(str(ledger_error))
        self.ledger_error = ledger_error


_p = table(OutgoingPayment).alias("p")
_q = table(Quote).alias("q")
_a = table(Asset).alias("a")
_wallets = table(WalletAddress)
_quotes = table(Quote)
_payments = table(OutgoingPayment)

# An outgoing payment with its quote and asset, as the admin API shows it.
_SELECT = select(
    _p.c.id,
    _p.c.wallet_address_id,
    _p.c.quote_id,
    _p.c.state,
    _p.c.error,
    _p.c.state_attempts,
    _p.c.sent_amount,
    _p.c.metadata,
    _p.c.client,
    _p.c.grant_id,
    _p.c.created_at,
    *quote_columns(_q),
    _q.c.created_at.label("quote_created_at"),
    _q.c.expires_at.label("quote_expires_at"),
    _a.c.code.label("asset_code"),
    _a.c.scale.label("asset_scale"),
).select_from(_p.join(_q, _q.c.id == _p.c.quote_id).join(_a, _a.c.id == _q.c.asset_id))
OUTGOING_PAYMENT_QUERY = _SELECT
"""An outgoing payment with its quote and asset, as the admin API shows it: a select to page
through (the admin API's lists filter it on :data:`OUTGOING_PAYMENT_FILTERS`)."""
OUTGOING_PAYMENT_FILTERS = {
    "wallets": _p.c.wallet_address_id == any_(bindparam("wallets", type_=ARRAY(Uuid))),
    "states": _p.c.state == any_(bindparam("states", type_=ARRAY(String))),
    "receivers": _q.c.receiver == any_(bindparam("receivers", type_=ARRAY(String))),
    "wallets_not": _p.c.wallet_address_id != all_(bindparam("wallets_not", type_=ARRAY(Uuid))),
    "states_not": _p.c.state != all_(bindparam("states_not", type_=ARRAY(String))),
    "receivers_not": _q.c.receiver != all_(bindparam("receivers_not", type_=ARRAY(String))),
}
"""The conditions a page of :data:`OUTGOING_PAYMENT_QUERY` may apply, each on its named bind
(``<name>_not``: none of the values, a FilterString's ``notIn``)."""
_LOAD = Statement(_SELECT.where(_p.c.id == bindparam("id")))

_WALLET_STATUS = Statement(select(_wallets.c.status).where(_wallets.c.id == bindparam("id")))
# Locked: two payments of one quote wait for each other, and the second is a duplicate.
_QUOTE_LOCKED = Statement(
    select(
        _quotes.c.wallet_address_id,
        _quotes.c.asset_id,
        _quotes.c.expires_at,
        _quotes.c.receiver,
        _quotes.c.debit_amount,
        _quotes.c.receive_amount,
        _quotes.c.receive_asset_code,
        _quotes.c.receive_asset_scale,
        _a.c.code.label("asset_code"),
        _a.c.scale.label("asset_scale"),
    )
    .select_from(_quotes.join(_a, _a.c.id == _quotes.c.asset_id))
    .where(_quotes.c.id == bindparam("id"))
    .with_for_update(of=_quotes)
)
_QUOTE_PAID = Statement(
    select(literal(1)).select_from(_payments).where(_payments.c.quote_id == bindparam("id"))
)
# Locked while funding, so a cancel waits and then sees SENDING.
_FUNDING_LOCKED = Statement(
    select(_p.c.state, _q.c.asset_id, _q.c.debit_amount)
    .select_from(_p.join(_q, _q.c.id == _p.c.quote_id))
    .where(_p.c.id == bindparam("id"))
    .with_for_update(of=_p)
)

# The namespace of a payment's one deposit's id.
_DEPOSITS = uuid.UUID("0b8f3a52-6f0e-4d1c-9a57-3e0f6d2b8c41")


async def load(pool: asyncpg.Pool, payment_id: uuid.UUID) -> asyncpg.Record:
    """The payment's row, as :data:`OUTGOING_PAYMENT_QUERY` reads it."""
    row = await _LOAD.fetchrow(pool, id=payment_id)
    if row is None:
        raise OutgoingPaymentNotFound()
    return row


async def create(
    pool: asyncpg.Pool,
    ledger: Ledger,
    wallet_id: uuid.UUID,
    quote_id: uuid.UUID,
    metadata: str | None,
    *,
    client: str | None = None,
    grant: GrantLimits | None = None,
    new_quote: PricedQuote | None = None,
) -> uuid.UUID:
    """The payment of a quote of an active wallet address, FUNDING, with its
    ``outgoing_payment.created`` event and its (empty) ledger account. Made over Open Payments,
    by ``client`` under ``grant``: the grant's limits are checked first, with its row locked
    (:mod:`kiungo.payments.outgoing.limits`). ``new_quote`` (the quote ``quote_id``, not yet
    stored) is stored with the payment, or not at all."""
    now = datetime.now(UTC)
    payment_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        if new_quote is not None:
            await store_quote(conn, new_quote, client=client)
        status = await _WALLET_STATUS.fetchval(conn, id=wallet_id)
        if status is None:
            raise WalletAddressNotFound()
        if status != WalletAddressStatus.ACTIVE:
            raise WalletAddressInactive()
        quote = await _QUOTE_LOCKED.fetchrow(conn, id=quote_id)
        if quote is None:
            raise QuoteNotFound()
        if quote["wallet_address_id"] != wallet_id:
            raise InvalidPaymentRequest("the quote is another wallet address's", field="quoteId")
        if quote["expires_at"] <= now:
            raise InvalidPaymentRequest("quote expired", field="quoteId")
        if await _QUOTE_PAID.fetchval(conn, id=quote_id):
            raise QuoteAlreadyPaid()
        if grant is not None:
            await _within_limits(conn, grant, quote, now)
        try:
            await store.create(
                conn,
                payment_id,
                wallet_id,
                quote_id,
                metadata,
                now,
                client=client,
                grant_id=None if grant is None else str(grant.grant_id),
            )
        except asyncpg.UniqueViolationError:
            raise QuoteAlreadyPaid() from None
    await ledger.ensure_account(AccountKind.OUTGOING_PAYMENT, payment_id, quote["asset_id"])
    return payment_id


async def create_from_incoming_payment(
    quoting: Quoting,
    ledger: Ledger,
    wallet_id: uuid.UUID,
    incoming_payment: str,
    debit_amount: Amount | None,
    metadata: str | None,
    *,
    client: str | None = None,
    grant: GrantLimits | None = None,
) -> uuid.UUID:
    """Quote paying ``incoming_payment`` (``debit_amount``, or what it still expects) and make
    the payment of that quote (:func:`create`), the quote stored with the payment: a refusal
    of either (a :class:`kiungo.payments.quotes.errors.QuoteError`, an
    :class:`OutgoingPaymentError`) leaves neither behind."""
    quote = await price_quote(quoting, wallet_id, incoming_payment, debit_amount, None)
    return await create(
        quoting.pool,
        ledger,
        wallet_id,
        quote.id,
        metadata,
        client=client,
        grant=grant,
        new_quote=quote,
    )


async def _within_limits(
    conn: asyncpg.Connection, grant: GrantLimits, quote: Mapping[str, Any], now: datetime
) -> None:
    """Refuse (InsufficientGrant) a payment of ``quote`` the grant's limits do not leave room
    for in its current interval; the grant's row stays locked until the transaction ends."""
    if not await limits.lock_grant(conn, grant.grant_id):
        raise InsufficientGrant("the grant is gone")
    if grant.receiver is not None and quote["receiver"] != grant.receiver:
        raise InsufficientGrant("the grant allows paying another receiver only")
    bounds = limits.window(grant, now)
    if bounds is None:
        raise InsufficientGrant("the grant's interval does not include now")
    used = await limits.spent(conn, grant.grant_id, bounds)
    checks = (
        ("debitAmount", grant.debit, used.debit, quote["debit_amount"], "asset_code"),
        (
            "receiveAmount",
            grant.receive,
            used.receive,
            quote["receive_amount"],
            "receive_asset_code",
        ),
    )
    for what, limit, already, amount, code in checks:
        if limit is None:
            continue
        scale = code.replace("code", "scale")
        if (limit.asset_code, limit.asset_scale) != (quote[code], quote[scale]):
            raise InsufficientGrant(f"the grant limits {what} in another asset")
        if already + int(amount) > limit.value:
            raise InsufficientGrant(
                f"the grant's {what} limit leaves {max(limit.value - already, 0)} in this "
                f"interval; the quote needs {int(amount)}"
            )


async def _available(ledger: Ledger, payment_id: uuid.UUID) -> int:
    try:
        balance = await ledger.balance(account_id_for(AccountKind.OUTGOING_PAYMENT, payment_id))
    except UnknownAccount:
        return 0
    return balance.available


def _stored_metadata(raw: Any) -> dict[str, Any] | None:
    value = stored_json(raw)
    return value if isinstance(value, dict) else None


async def cancel(
    pool: asyncpg.Pool,
    ledger: Ledger,
    payment_id: uuid.UUID,
    reason: str | None,
    encode_metadata: Callable[[dict[str, Any] | None], str | None],
) -> None:
    """FUNDING → CANCELLED, the reason kept in its metadata as ``cancellationReason``.
    ``encode_metadata`` writes the new metadata as stored JSON text (the caller's rules on
    metadata apply, and what it raises rolls the cancel back)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await OUTGOING_PAYMENT_EVENT_ROW_LOCKED.fetchrow(conn, id=payment_id)
        if row is None:
            raise OutgoingPaymentNotFound()
        if row["state"] != States.FUNDING:
            raise NotCancellable(row["state"])
        metadata = _stored_metadata(row["metadata"])
        if reason is not None:
            metadata = {**(metadata or {}), "cancellationReason": reason}
        text = encode_metadata(metadata)
        # Nothing is funded before SENDING, but say so if a deposit raced the cancel.
        available = await _available(ledger, payment_id)
        withdrawal = (
            (account_id_for(AccountKind.OUTGOING_PAYMENT, payment_id), row["asset_id"], available)
            if available > 0
            else None
        )
        await store.cancel(conn, row, text, withdrawal=withdrawal)


async def fund(pool: asyncpg.Pool, ledger: Ledger, payment_id: uuid.UUID) -> None:
    """Deposit exactly the quote's debit amount (once: the deposit's id is the payment's) and
    make the payment SENDING. A deposit whose state change did not commit is finished."""
    transfer = uuid.uuid5(_DEPOSITS, str(payment_id))
    async with pool.acquire() as conn, conn.transaction():
        row = await _FUNDING_LOCKED.fetchrow(conn, id=payment_id)
        if row is None:
            raise OutgoingPaymentNotFound()
        if row["state"] != States.FUNDING:
            if await ledger.transfer(transfer) is not None:
                raise AlreadyFunded()
            raise NotFundable(row["state"])
        amount = int(row["debit_amount"])
        account = await ledger.ensure_account(
            AccountKind.OUTGOING_PAYMENT, payment_id, row["asset_id"]
        )
        try:
            try:
                await ledger.deposit(transfer, account, amount)
            except TransferExists:
                done = await ledger.transfer(transfer)
                if done is None or (done.credit_account_id, done.amount) != (account, amount):
                    raise
        except LedgerError as error:
            raise FundingRefused(error) from None
        await store.fund(conn, payment_id)


def check_ended(state: str) -> None:
    """Only what is left in an ended payment may be withdrawn."""
    if state not in ENDED:
        raise NotEnded()
