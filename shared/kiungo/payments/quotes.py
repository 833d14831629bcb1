"""Quotes: what sending from a wallet address of this node to a receiver debits and delivers.

A quote fixes the amounts of one outgoing payment until it expires (QUOTE_LIFESPAN, and never
after the receiver's own expiry). All money is integers in the assets' smallest units and every
rate an exact ``Fraction`` of those units: *receiver's units per unit of ours*.

Receivers:

- **local**: a URL under OPEN_PAYMENTS_URL, ``<wallet address URL>`` of an active wallet
  address or ``<wallet address URL>/incoming-payments/<id>`` of an open incoming payment (a
  ``$pointer`` reads as ``https://``). The rate is the rates service's (EXCHANGE_RATES_URL; 1
  for the same currency), scaled by the two assets' scales; low, high and estimated rates are
  that one rate.
- **remote**: anything else (an http(s) URL answering SPSP, or a ``$pointer``). The connector
  probes it (``POST {ILP_CONNECTOR_URL}/internal/quote``); its low estimated rate is the rate.

Amounts (DESIGN §6): ``receive = floor(sent × rate)``, and the other way round ceil (by the
minimum rate, below); the minimum rate a payment accepts is ``rate × (1 - SLIPPAGE)``.

The sending fee (the sender's asset's latest SENDING fee: ``fixed`` plus ``basis_points``) is
charged on what is sent: ``fee(sent) = fixed + ceil(sent × basis_points / 10000)`` and
``debit = sent + fee``.

- fixed-receive: ``sent = ceil(receive / minimum rate)``, ``debit = sent + fee(sent)``: as
  Rafiki (and ``@interledger/pay``) quote it, the budget has room for the rate to move within
  the slippage and for every packet's rounding down; what the payment did not need stays in
  its account for withdrawal when it completes.
- fixed-send: ``sent`` is the largest amount with ``sent + fee(sent) <= debit``, which is
  ``floor(10000 × (debit - fixed) / (10000 + basis_points))``, and the fee is ``debit - sent``.
  That equals ``fee(sent)`` whenever some ``sent`` satisfies ``debit = sent + fee(sent)``
  exactly; when none does (the rounding of the basis points skips ``debit``), the fee is
  ``fee(sent) + 1``: the one unit left over is the node's, never the sender's surprise.

The quote keeps the fee it charged (``fee_amount``): a payment sends at most
``debit_amount - fee_amount``.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from kiungo.config import Settings
from kiungo.ilp.oer import MAX_UINT64
from kiungo.ledger import AccountKind, Ledger, UnknownAccount, account_id_for
from kiungo.models import FeeType, IncomingPaymentState, WalletAddressStatus
from kiungo.open_payments import INCOMING_PAYMENT_PATH
from kiungo.rates import RatesClient, RatesError, scaled_rate
from kiungo.signatures import signature_header

__all__ = [
    "QUOTE_COLUMNS",
    "Amount",
    "InvalidQuoteRequest",
    "InvalidReceiver",
    "QuoteError",
    "QuoteNotFound",
    "Quoting",
    "QuotingUnavailable",
    "RateProbeFailed",
    "SendingFee",
    "WalletAddressInactive",
    "WalletAddressNotFound",
    "create_quote",
    "load_quote",
    "local_receiver_url",
    "sending_fee",
]

# How long the connector may take to probe a remote receiver.
_PROBE_TIMEOUT_SECONDS = 15.0
_MAX_RECEIVER_LENGTH = 2048
# Rates are stored as NUMERIC(40, 0) numerators and denominators.
_RATE_PART_LIMIT = 10**40
# An incoming payment that can still receive (when not expired).
_OPEN = frozenset({IncomingPaymentState.PENDING.value, IncomingPaymentState.PROCESSING.value})

QUOTE_COLUMNS = """
q.id, q.wallet_address_id, q.asset_id, q.receiver, q.debit_amount, q.fee_amount,
q.receive_amount, q.receive_asset_code, q.receive_asset_scale,
q.low_estimated_exchange_rate_numerator, q.low_estimated_exchange_rate_denominator,
q.created_at, q.expires_at, a.code AS asset_code, a.scale AS asset_scale
"""
# Built from the constant column list only.
_SELECT = f"SELECT {QUOTE_COLUMNS} FROM quotes q JOIN assets a ON a.id = q.asset_id"  # noqa: S608
_WALLET = """
SELECT w.id, w.status, w.asset_id, a.code, a.scale
FROM wallet_addresses w JOIN assets a ON a.id = w.asset_id WHERE w.id = $1
"""
_FEE = """
SELECT id, fixed_fee, basis_point_fee FROM fees
WHERE asset_id = $1 AND type = $2 ORDER BY created_at DESC, id DESC LIMIT 1
"""
_LOCAL_INCOMING_PAYMENT = """
SELECT p.id, p.state, p.expires_at, p.incoming_amount, p.received_amount, w.url, w.status,
       a.code, a.scale
FROM incoming_payments p
JOIN wallet_addresses w ON w.id = p.wallet_address_id
JOIN assets a ON a.id = p.asset_id
WHERE p.id = $1
"""
_LOCAL_WALLET = """
SELECT w.status, a.code, a.scale
FROM wallet_addresses w JOIN assets a ON a.id = w.asset_id WHERE w.url = $1
"""
_INSERT = """
INSERT INTO quotes (id, wallet_address_id, asset_id, receiver, debit_amount, fee_amount,
                    receive_amount, receive_asset_code, receive_asset_scale, max_packet_amount,
                    min_exchange_rate_numerator, min_exchange_rate_denominator,
                    low_estimated_exchange_rate_numerator, low_estimated_exchange_rate_denominator,
                    high_estimated_exchange_rate_numerator,
                    high_estimated_exchange_rate_denominator, estimated_exchange_rate, fee_id,
                    expires_at, created_at, updated_at, stream_destination, stream_shared_secret)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $20, $21, $22)
"""


class QuoteError(Exception):
    """Quoting refused, and nothing stored. ``details`` go with the message to the caller: the
    input at fault as ``field``, and what else helps (``quoteError``, ``minSendAmount``)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidQuoteRequest(QuoteError):
    """The request cannot be quoted as it is (the caller's to change)."""


class InvalidReceiver(InvalidQuoteRequest):
    """The receiver is not one this node can pay."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"invalid receiver: {detail}", field="receiver", quoteError="InvalidReceiver"
        )


class RateProbeFailed(InvalidQuoteRequest):
    """The remote receiver's path could not be probed for a rate."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the rate probe failed: {detail}", field="receiver", quoteError="RateProbeFailed"
        )


class WalletAddressNotFound(QuoteError):
    def __init__(self) -> None:
        super().__init__("wallet address not found")


class WalletAddressInactive(QuoteError):
    def __init__(self) -> None:
        super().__init__("the wallet address is inactive")


class QuoteNotFound(QuoteError):
    def __init__(self) -> None:
        super().__init__("quote not found")


class QuotingUnavailable(QuoteError):
    """The rates service or the connector could not quote, or answered something unusable; a
    retry may do."""


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount in an asset's smallest units."""

    value: int
    asset_code: str
    asset_scale: int


@dataclass(frozen=True, slots=True)
class Quoting:
    """What quoting reads: the node's settings, its database and ledger (what an incoming payment
    has received), the rates service, and the client that asks the connector to probe a remote
    receiver."""

    settings: Settings
    pool: asyncpg.Pool
    ledger: Ledger
    rates: RatesClient
    http: httpx.AsyncClient


@dataclass(frozen=True, slots=True)
class SendingFee:
    """An asset's sending fee; ``id`` None when it has none."""

    id: uuid.UUID | None
    fixed: int
    basis_points: int

    def on(self, sent: int) -> int:
        """The fee for sending ``sent``: fixed plus the basis points, rounded up."""
        return self.fixed + -(-sent * self.basis_points // 10_000)

    def sendable(self, debit: int) -> int:
        """The most that ``debit`` can send with its fee paid (0 when it cannot pay the fee)."""
        spare = debit - self.fixed
        if spare <= 0:
            return 0
        return spare * 10_000 // (10_000 + self.basis_points)


async def sending_fee(pool: asyncpg.Pool, asset_id: uuid.UUID) -> SendingFee:
    """The asset's latest SENDING fee (none: zero)."""
    row = await pool.fetchrow(_FEE, asset_id, FeeType.SENDING.value)
    if row is None:
        return SendingFee(None, 0, 0)
    return SendingFee(row["id"], int(row["fixed_fee"]), int(row["basis_point_fee"]))


@dataclass(frozen=True, slots=True)
class _Receiver:
    """A receiver as quoting sees it."""

    url: str
    asset_code: str
    asset_scale: int
    remaining: int | None
    expires_at: datetime | None
    low: Fraction
    high: Fraction
    max_packet: int | None
    # A remote receiver's STREAM credentials, as the connector's probe resolved them.
    stream_destination: str | None = None
    stream_shared_secret: bytes | None = None


def local_receiver_url(open_payments_url: str, receiver: str) -> str | None:
    """``receiver`` as the URL of this node it names, or None when it is not under
    OPEN_PAYMENTS_URL (a remote receiver). A ``$pointer`` reads as ``https://``."""
    text = receiver.strip()
    if text.startswith("$"):
        text = "https://" + text[1:]
        if "/" not in text[len("https://") :]:
            text += "/.well-known/pay"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    url = f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    base = open_payments_url.rstrip("/")
    if not url.startswith(base + "/"):
        return None
    if parts.query or parts.fragment:
        raise InvalidReceiver("a receiver URL has no query or fragment")
    return url


async def _exchange_rate(
    quoting: Quoting, source: tuple[str, int], destination: tuple[str, int]
) -> Fraction:
    if source[0] == destination[0]:
        return scaled_rate(Fraction(1), source[1], destination[1])
    try:
        rate = await quoting.rates.rate(source[0], destination[0])
    except RatesError as exc:
        raise QuotingUnavailable(
            f"no exchange rate from {source[0]} to {destination[0]}: {exc}"
        ) from None
    return scaled_rate(rate, source[1], destination[1])


async def _local_receiver(
    quoting: Quoting, url: str, sender: tuple[str, int], now: datetime
) -> _Receiver:
    match = INCOMING_PAYMENT_PATH.match(url)
    if match is None:
        wallet = await quoting.pool.fetchrow(_LOCAL_WALLET, url)
        if wallet is None:
            raise InvalidReceiver(f"no wallet address {url} on this node")
        if wallet["status"] != WalletAddressStatus.ACTIVE:
            raise InvalidReceiver(f"the wallet address {url} is inactive")
        code, scale = wallet["code"], wallet["scale"]
        remaining = None
        expires_at = None
    else:
        payment_id = uuid.UUID(match["id"])
        row = await quoting.pool.fetchrow(_LOCAL_INCOMING_PAYMENT, payment_id)
        if row is None or row["url"] != match["wallet"]:
            raise InvalidReceiver(f"no incoming payment {url} on this node")
        if row["state"] not in _OPEN or row["expires_at"] <= now:
            state = "expired" if row["state"] in _OPEN else row["state"]
            raise InvalidReceiver(f"the incoming payment is {state.lower()}")
        if row["status"] != WalletAddressStatus.ACTIVE:
            raise InvalidReceiver("the incoming payment's wallet address is inactive")
        code, scale = row["code"], row["scale"]
        expires_at = row["expires_at"]
        remaining = None
        if row["incoming_amount"] is not None:
            try:
                balance = await quoting.ledger.balance(
                    account_id_for(AccountKind.INCOMING_PAYMENT, payment_id)
                )
                received = balance.credits_posted
            except UnknownAccount:
                received = int(row["received_amount"])
            remaining = int(row["incoming_amount"]) - received
            if remaining <= 0:
                raise InvalidReceiver("the incoming payment has received all it expects")
        url = f"{row['url']}/incoming-payments/{payment_id}"
    rate = _at_most_rate_parts(await _exchange_rate(quoting, sender, (code, scale)))
    return _Receiver(url, code, scale, remaining, expires_at, rate, rate, None)


def _fraction(value: Any, what: str) -> Fraction:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a fraction string")
    numerator, sep, denominator = value.partition("/")
    if not sep or not numerator.isdigit() or not denominator.isdigit():
        raise ValueError(f"{what} is not <numerator>/<denominator>")
    fraction = Fraction(int(numerator), int(denominator))  # zero denominator: ZeroDivisionError
    if fraction <= 0:
        raise ValueError(f"{what} is not positive")
    if fraction.numerator >= _RATE_PART_LIMIT or fraction.denominator >= _RATE_PART_LIMIT:
        raise ValueError(f"{what} has more than 40 digits")
    return fraction


def _u64_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isdigit() or int(value) > MAX_UINT64:
        raise ValueError(f"{what} is not a u64 string")
    return int(value)


def _probe_answer(receiver: str, answer: Any, now: datetime) -> _Receiver:
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    code, scale = answer.get("receiveAssetCode"), answer.get("receiveAssetScale")
    if not isinstance(code, str) or not code:
        raise ValueError("receiveAssetCode is missing")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        raise ValueError("receiveAssetScale is not 0-255")
    low = _fraction(answer.get("lowEstimatedExchangeRate"), "lowEstimatedExchangeRate")
    high = _fraction(answer.get("highEstimatedExchangeRate"), "highEstimatedExchangeRate")
    max_packet = _u64_or_none(answer.get("maxPacketAmount"), "maxPacketAmount")
    incoming = _u64_or_none(answer.get("incomingAmount"), "incomingAmount")
    received = _u64_or_none(answer.get("receivedAmount"), "receivedAmount")
    expires_text = answer.get("expiresAt")
    expires_at = None
    if expires_text is not None:
        if not isinstance(expires_text, str):
            raise ValueError("expiresAt is not a string")
        expires_at = datetime.fromisoformat(expires_text.replace("Z", "+00:00"))
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    remaining = None
    if incoming is not None:
        remaining = incoming - (received or 0)
        if remaining <= 0:
            raise InvalidReceiver("the incoming payment has received all it expects")
    if expires_at is not None and expires_at <= now:
        raise InvalidReceiver("the incoming payment is expired")
    destination, secret = answer.get("streamDestination"), answer.get("streamSharedSecret")
    credentials: tuple[str, bytes] | None = None
    if isinstance(destination, str) and isinstance(secret, str) and 0 < len(destination) <= 1023:
        decoded = base64.b64decode(secret, validate=True)  # ValueError: unusable
        if len(decoded) == 32:
            credentials = (destination, decoded)
    return _Receiver(
        receiver, code, scale, remaining, expires_at, low, high, max_packet,
        *(credentials or (None, None)),
    )  # fmt: skip


async def _remote_receiver(
    quoting: Quoting, receiver: str, sender: tuple[str, int], now: datetime
) -> _Receiver:
    settings = quoting.settings
    body = {"receiver": receiver, "assetCode": sender[0], "assetScale": sender[1]}
    headers = {"content-type": "application/json"}
    if settings.admin_api_secret:
        headers["signature"] = signature_header(settings.admin_api_secret, body)
    url = settings.ilp_connector_url.rstrip("/") + "/internal/quote"
    try:
        response = await quoting.http.post(
            url,
            content=json.dumps(body).encode(),
            headers=headers,
            timeout=_PROBE_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise QuotingUnavailable(
            f"the connector could not be asked to quote ({type(exc).__name__}); retry",
        ) from None
    try:
        answer = response.json()
    except (ValueError, RecursionError):
        answer = None
    message = answer.get("message") if isinstance(answer, dict) else None
    detail = message if isinstance(message, str) and message else f"HTTP {response.status_code}"
    if response.status_code == 404:
        raise InvalidReceiver(detail)
    if response.status_code == 422:
        raise RateProbeFailed(detail)
    if response.status_code != 200:
        raise QuotingUnavailable(f"the connector could not quote: {detail}")
    try:
        return _probe_answer(receiver, answer, now)
    except (ValueError, ZeroDivisionError) as exc:
        raise QuotingUnavailable(f"the connector's quote is unusable: {exc}") from None


def _at_most_rate_parts(rate: Fraction) -> Fraction:
    """``rate``, or a fraction just below it whose parts fit the NUMERIC(40, 0) columns."""
    if rate.numerator < _RATE_PART_LIMIT and rate.denominator < _RATE_PART_LIMIT:
        return rate
    shrink = max(rate.numerator, rate.denominator) // (_RATE_PART_LIMIT // 10) + 1
    smaller = Fraction(rate.numerator // shrink, -(-rate.denominator // shrink))
    if smaller <= 0:
        raise QuotingUnavailable(f"the exchange rate {rate} is unusable")
    return smaller


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


async def create_quote(
    quoting: Quoting,
    wallet_id: uuid.UUID,
    receiver: str,
    debit_amount: Amount | None,
    receive_amount: Amount | None,
) -> dict[str, Any]:
    """Quote and store; returns the quote's row (as ``QUOTE_COLUMNS`` reads it). Nothing is
    written unless the quote is made."""
    if debit_amount is not None and receive_amount is not None:
        raise InvalidQuoteRequest("give debitAmount or receiveAmount, not both")
    if debit_amount is not None:
        _check_amount(debit_amount, "debitAmount")
    if receive_amount is not None:
        _check_amount(receive_amount, "receiveAmount")
    receiver = receiver.strip()
    if not receiver or len(receiver) > _MAX_RECEIVER_LENGTH:
        raise InvalidReceiver(f"give a URL or payment pointer of 1-{_MAX_RECEIVER_LENGTH} chars")

    wallet = await quoting.pool.fetchrow(_WALLET, wallet_id)
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
    local = local_receiver_url(quoting.settings.open_payments_url, receiver)
    if local is not None:
        target = await _local_receiver(quoting, local, sender, now)
    elif receiver.startswith("$") or urlsplit(receiver).scheme in ("http", "https"):
        target = await _remote_receiver(quoting, receiver, sender, now)
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
    minimum_rate = _at_most_rate_parts(rate * (1 - slippage))
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
    await quoting.pool.execute(
        _INSERT,
        quote_id,
        wallet_id,
        wallet["asset_id"],
        target.url,
        debit,
        debit - sent,
        receive,
        target.asset_code,
        target.asset_scale,
        target.max_packet,
        minimum_rate.numerator,
        minimum_rate.denominator,
        rate.numerator,
        rate.denominator,
        target.high.numerator,
        target.high.denominator,
        _decimal(rate),
        fee.id,
        expires_at,
        now,
        target.stream_destination,
        target.stream_shared_secret,
    )
    return {
        "id": quote_id,
        "wallet_address_id": wallet_id,
        "asset_id": wallet["asset_id"],
        "receiver": target.url,
        "debit_amount": debit,
        "fee_amount": debit - sent,
        "receive_amount": receive,
        "receive_asset_code": target.asset_code,
        "receive_asset_scale": target.asset_scale,
        "low_estimated_exchange_rate_numerator": rate.numerator,
        "low_estimated_exchange_rate_denominator": rate.denominator,
        "created_at": now,
        "expires_at": expires_at,
        "asset_code": sender[0],
        "asset_scale": sender[1],
    }


async def load_quote(pool: asyncpg.Pool, quote_id: uuid.UUID) -> asyncpg.Record:
    """The quote's row, as ``QUOTE_COLUMNS`` reads it."""
    row: asyncpg.Record | None = await pool.fetchrow(_SELECT + " WHERE q.id = $1", quote_id)
    if row is None:
        raise QuoteNotFound()
    return row
