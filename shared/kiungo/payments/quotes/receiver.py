"""The receiver of a quote as quoting sees it: this node's own wallet address or incoming payment
(read from Postgres and the ledger, at the rates service's rate), or another node's (probed by
the connector: ``POST {ILP_CONNECTOR_URL}/internal/quote``)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import httpx

from kiungo.ilp.oer import MAX_UINT64
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.models import WalletAddressStatus
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH
from kiungo.payments.incoming import OPEN
from kiungo.payments.quotes.errors import InvalidReceiver, QuotingUnavailable, RateProbeFailed
from kiungo.payments.quotes.quoting import Quoting
from kiungo.payments.receivers import (
    INCOMING_PAYMENT_RECEIVER_BY_ID,
    WALLET_ADDRESS_RECEIVER_BY_URL,
    incoming_payment_open,
    incoming_payment_url,
)
from kiungo.rates import RatesClient, RatesError, scaled_rate
from kiungo.signatures import signature_header

__all__ = [
    "Receiver",
    "at_most_rate_parts",
    "local_receiver",
    "remote_receiver",
]

# How long the connector may take to probe a remote receiver.
_PROBE_TIMEOUT_SECONDS = 15.0
# Rates are stored as NUMERIC(40, 0) numerators and denominators.
_RATE_PART_LIMIT = 10**40


@dataclass(frozen=True, slots=True)
class Receiver:
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


async def _exchange_rate(
    rates: RatesClient, source: tuple[str, int], destination: tuple[str, int]
) -> Fraction:
    if source[0] == destination[0]:
        return scaled_rate(Fraction(1), source[1], destination[1])
    try:
        rate = await rates.rate(source[0], destination[0])
    except RatesError as exc:
        raise QuotingUnavailable(
            f"no exchange rate from {source[0]} to {destination[0]}: {exc}"
        ) from None
    return scaled_rate(rate, source[1], destination[1])


async def local_receiver(
    quoting: Quoting, url: str, sender: tuple[str, int], now: datetime
) -> Receiver:
    """The wallet address or incoming payment of this node at ``url``, if it can be paid: an
    incoming payment by its receiver URL (``<wallet address>/incoming-payments/<id>``) or its
    Open Payments URL (``<OPEN_PAYMENTS_URL>/incoming-payments/<id>``, Rafiki's ``url``); a
    wallet address case aside, as Rafiki looks them up (they are stored lower-cased)."""
    match = INCOMING_PAYMENT_PATH.match(url)
    if match is None:
        wallet = await WALLET_ADDRESS_RECEIVER_BY_URL.fetchrow(quoting.pool, url=url)
        if wallet is None and url != url.lower():
            wallet = await WALLET_ADDRESS_RECEIVER_BY_URL.fetchrow(quoting.pool, url=url.lower())
        if wallet is None:
            raise InvalidReceiver(f"no wallet address {url} on this node")
        if wallet["status"] != WalletAddressStatus.ACTIVE:
            raise InvalidReceiver(f"the wallet address {url} is inactive")
        code, scale = wallet["asset_code"], wallet["asset_scale"]
        remaining = None
        expires_at = None
    else:
        payment_id = uuid.UUID(match["id"])
        row = await INCOMING_PAYMENT_RECEIVER_BY_ID.fetchrow(quoting.pool, id=payment_id)
        resource_server = quoting.settings.open_payments_url.rstrip("/")
        if row is None or match["wallet"] not in (row["url"], resource_server):
            raise InvalidReceiver(f"no incoming payment {url} on this node")
        if not incoming_payment_open(row["state"], row["expires_at"], now):
            state = "expired" if row["state"] in OPEN else row["state"]
            raise InvalidReceiver(f"the incoming payment is {state.lower()}")
        if row["wallet_status"] != WalletAddressStatus.ACTIVE:
            raise InvalidReceiver("the incoming payment's wallet address is inactive")
        code, scale = row["asset_code"], row["asset_scale"]
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
        url = incoming_payment_url(row["url"], payment_id)
    rate = at_most_rate_parts(await _exchange_rate(quoting.rates, sender, (code, scale)))
    return Receiver(url, code, scale, remaining, expires_at, rate, rate, None)


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


def _probe_answer(receiver: str, answer: Any, now: datetime) -> Receiver:
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
    return Receiver(
        receiver, code, scale, remaining, expires_at, low, high, max_packet,
        *(credentials or (None, None)),
    )  # fmt: skip


async def remote_receiver(
    quoting: Quoting, receiver: str, sender: tuple[str, int], now: datetime
) -> Receiver:
    """Another node's receiver, as the connector's probe of it found it."""
    if quoting.probe is not None:
        status, answer = await quoting.probe(receiver, sender)
    else:
        status, answer = await _ask_connector(quoting, receiver, sender)
    message = answer.get("message") if isinstance(answer, dict) else None
    detail = message if isinstance(message, str) and message else f"HTTP {status}"
    if status == 404:
        raise InvalidReceiver(detail)
    if status == 422:
        raise RateProbeFailed(detail)
    if status != 200:
        raise QuotingUnavailable(f"the connector could not quote: {detail}")
    try:
        return _probe_answer(receiver, answer, now)
    except (ValueError, ZeroDivisionError) as exc:
        raise QuotingUnavailable(f"the connector's quote is unusable: {exc}") from None


async def _ask_connector(
    quoting: Quoting, receiver: str, sender: tuple[str, int]
) -> tuple[int, Any]:
    """``POST {ILP_CONNECTOR_URL}/internal/quote``: (status, JSON body or None)."""
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
        return response.status_code, response.json()
    except (ValueError, RecursionError):
        return response.status_code, None


def at_most_rate_parts(rate: Fraction) -> Fraction:
    """``rate``, or a fraction just below it whose parts fit the NUMERIC(40, 0) columns."""
    if rate.numerator < _RATE_PART_LIMIT and rate.denominator < _RATE_PART_LIMIT:
        return rate
    shrink = max(rate.numerator, rate.denominator) // (_RATE_PART_LIMIT // 10) + 1
    smaller = Fraction(rate.numerator // shrink, -(-rate.denominator // shrink))
    if smaller <= 0:
        raise QuotingUnavailable(f"the exchange rate {rate} is unusable")
    return smaller
