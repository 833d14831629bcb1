"""Receivers: where money paid to this node lands, and the rules both services apply to them.

A receiver is a wallet address of this node or one of its incoming payments. Whether a
receiver string names one (:func:`local_receiver_url`), whether it still accepts money
(:func:`receiver_open`) and how a STREAM connection names it (its payment tag: ``w<hex>`` a
wallet address, ``i<hex>`` an incoming payment) are decided here only: the backend quotes
and creates receivers by these rules and the connector pays into them by the same ones.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import bindparam, select

from kiungo.models import Asset, IncomingPayment, WalletAddress, WalletAddressStatus
from kiungo.models.sql import Statement, stored_json, table
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH
from kiungo.payments.incoming.states import OPEN
from kiungo.spsp.pointer import parse_payment_pointer

__all__ = [
    "INCOMING_PAYMENT_RECEIVER_BY_ID",
    "INCOMING_PAYMENT_RECEIVER_FOR_UPDATE",
    "WALLET_ADDRESS_RECEIVER_BY_ID",
    "WALLET_ADDRESS_RECEIVER_BY_URL",
    "InvalidReceiverUrl",
    "ReceiverKind",
    "incoming_payment_open",
    "incoming_payment_tag",
    "incoming_payment_url",
    "local_receiver_url",
    "open_payments_receiver",
    "receiver_open",
    "shown_event_data",
    "stored_receiver",
    "wallet_tag",
]


class InvalidReceiverUrl(ValueError):
    """A URL under this node's OPEN_PAYMENTS_URL that cannot name a receiver."""


def local_receiver_url(open_payments_url: str, receiver: str) -> str | None:
    """``receiver`` as the URL of this node it names (no trailing slash), or None when it
    names something elsewhere (a remote receiver, or not a receiver at all).

    A ``$pointer`` reads as payment pointers do (RFC 26): ``https://`` and its path, an empty
    path or ``/`` being ``/.well-known/pay``; a string that is no valid pointer names nothing
    here. A URL under OPEN_PAYMENTS_URL with a query or fragment raises
    :class:`InvalidReceiverUrl`: it is this node's, and no receiver of it has one."""
    text = receiver.strip()
    try:
        if text.startswith("$"):
            text = parse_payment_pointer(text)
        parts = urlsplit(text)
    except ValueError:  # InvalidPaymentPointer, or no URL at all (``http://[``)
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    url = f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    if not url.startswith(open_payments_url.rstrip("/") + "/"):
        return None
    if parts.query or parts.fragment:
        raise InvalidReceiverUrl("a receiver URL has no query or fragment")
    return url


def incoming_payment_url(wallet_address_url: str, payment_id: uuid.UUID) -> str:
    """An incoming payment's URL, its receiver id (read back by
    :data:`kiungo.openpayments.remote.INCOMING_PAYMENT_PATH`)."""
    return f"{wallet_address_url}/incoming-payments/{payment_id}"


class ReceiverKind(enum.StrEnum):
    """The first character of a payment tag."""

    WALLET_ADDRESS = "w"
    INCOMING_PAYMENT = "i"


def wallet_tag(wallet_address_id: uuid.UUID) -> str:
    return f"{ReceiverKind.WALLET_ADDRESS.value}{wallet_address_id.hex}"


def incoming_payment_tag(incoming_payment_id: uuid.UUID) -> str:
    return f"{ReceiverKind.INCOMING_PAYMENT.value}{incoming_payment_id.hex}"


def incoming_payment_open(state: str, expires_at: datetime | None, now: datetime) -> bool:
    """An incoming payment accepts money while it is PENDING or PROCESSING and not expired."""
    return state in OPEN and (expires_at is None or now < expires_at)


def receiver_open(
    kind: ReceiverKind, state: str, expires_at: datetime | None, now: datetime
) -> bool:
    """Still accepting money: an active wallet address (``state`` its status), or an open
    incoming payment (:func:`incoming_payment_open`)."""
    if kind is ReceiverKind.WALLET_ADDRESS:
        return state == WalletAddressStatus.ACTIVE
    return incoming_payment_open(state, expires_at, now)


# What a receiver is, read for paying or completing it (on the packet path: a receiver is
# looked up per connection).
_w = table(WalletAddress).alias("w")
_a = table(Asset).alias("a")
_p = table(IncomingPayment).alias("p")

_WALLET_ADDRESS_RECEIVER = select(
    _w.c.id,
    _w.c.url,
    _w.c.status,
    _w.c.asset_id,
    _a.c.code.label("asset_code"),
    _a.c.scale.label("asset_scale"),
).select_from(_w.join(_a, _a.c.id == _w.c.asset_id))
WALLET_ADDRESS_RECEIVER_BY_ID = Statement(
    _WALLET_ADDRESS_RECEIVER.where(_w.c.id == bindparam("id"))
)
"""A wallet address (``id=``) with its asset."""
WALLET_ADDRESS_RECEIVER_BY_URL = Statement(
    _WALLET_ADDRESS_RECEIVER.where(_w.c.url == bindparam("url"))
)
"""The wallet address stored as ``url=``, with its asset."""

_INCOMING_PAYMENT_RECEIVER = (
    select(
        _p.c.id,
        _p.c.wallet_address_id,
        _p.c.asset_id,
        _p.c.incoming_amount,
        _p.c.received_amount,
        _p.c.state,
        _p.c.expires_at,
        _p.c.metadata,
        _p.c.client,
        _p.c.created_at,
        _w.c.url,
        _w.c.status.label("wallet_status"),
        _a.c.code.label("asset_code"),
        _a.c.scale.label("asset_scale"),
    )
    .select_from(_p.join(_w, _w.c.id == _p.c.wallet_address_id).join(_a, _a.c.id == _p.c.asset_id))
    .where(_p.c.id == bindparam("id"))
)
INCOMING_PAYMENT_RECEIVER_BY_ID = Statement(_INCOMING_PAYMENT_RECEIVER)
"""One incoming payment (``id=``) with its wallet address's URL and its asset."""
INCOMING_PAYMENT_RECEIVER_FOR_UPDATE = Statement(_INCOMING_PAYMENT_RECEIVER.with_for_update(of=_p))
""":data:`INCOMING_PAYMENT_RECEIVER_BY_ID`, the payment's row locked (completing it)."""


async def stored_receiver(
    executor: asyncpg.Pool | asyncpg.Connection, open_payments_url: str, receiver: str
) -> str:
    """``receiver`` as a quote stores it: this node's incoming payment named by its Open
    Payments URL (``<OPEN_PAYMENTS_URL>/incoming-payments/<id>``, Rafiki's ``url``) in its
    receiver form (:func:`incoming_payment_url`), as quoting resolves it; anything else as it
    is (what names no receiver here matches no quote)."""
    match = INCOMING_PAYMENT_PATH.match(receiver)
    if match is None or match["wallet"] != open_payments_url.rstrip("/"):
        return receiver
    payment_id = uuid.UUID(match["id"])
    row = await INCOMING_PAYMENT_RECEIVER_BY_ID.fetchrow(executor, id=payment_id)
    return receiver if row is None else incoming_payment_url(row["url"], payment_id)


def open_payments_receiver(open_payments_url: str, receiver: str) -> str:
    """A stored receiver as the APIs show it, the inverse of :func:`stored_receiver`: this
    node's incoming payment (stored in its receiver form, ``<wallet address>/incoming-payments/
    <id>``, the wallet address under OPEN_PAYMENTS_URL) by its Open Payments URL,
    ``<OPEN_PAYMENTS_URL>/incoming-payments/<id>`` (Rafiki's quotes and outgoing payments show
    the incoming payment URL they were given, that ``url``); anything else (a wallet address,
    another node's receiver) as it is."""
    base = open_payments_url.rstrip("/")
    match = INCOMING_PAYMENT_PATH.match(receiver)
    if match is None or not receiver.startswith(base + "/"):
        return receiver
    return f"{base}/incoming-payments/{match['id']}"


def shown_event_data(open_payments_url: str, event_type: str, stored: Any) -> dict[str, Any]:
    """An event's stored data (its ``data`` column, decoded or as JSON text) as webhooks and the
    admin API show it: an outgoing payment's ``receiver`` by the Open Payments URL its quote
    shows (:func:`open_payments_receiver`); anything that is not a JSON object as an empty one."""
    data = stored_json(stored)
    if not isinstance(data, dict):
        return {}
    receiver = data.get("receiver")
    if event_type.startswith("outgoing_payment.") and isinstance(receiver, str):
        return {**data, "receiver": open_payments_receiver(open_payments_url, receiver)}
    return data
