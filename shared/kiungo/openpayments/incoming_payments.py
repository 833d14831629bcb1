"""Incoming payments as the Open Payments resource server serves them: the reads it needs (one
payment with its wallet address and asset, a wallet address's payments a page at a time), which
actions a grant's access allows on a wallet address, and the resource's JSON. A payment created
through Open Payments records its client (``store.create``'s ``client``).

The rows are the admin API's: a payment is created by :func:`kiungo.payments.incoming.store
.create` (with its ``incoming_payment.created`` event) and completed by
:func:`~kiungo.payments.incoming.store.complete`, whichever API asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Integer, String, Uuid, bindparam, or_, select, tuple_

from kiungo.events import amount_json, iso_time
from kiungo.models import Asset, IncomingPayment, WalletAddress
from kiungo.models.sql import Statement, stored_json, table
from kiungo.payments.incoming import States
from kiungo.payments.receivers import incoming_payment_open

__all__ = [
    "INCOMING_PAYMENT",
    "MAX_PAGE",
    "Page",
    "any_actions",
    "by_id",
    "cursor_position",
    "granted_actions",
    "is_open",
    "page",
    "payment_json",
    "payment_url",
]

INCOMING_PAYMENT = "incoming-payment"
MAX_PAGE = 100
DEFAULT_PAGE = 10

_P = table(IncomingPayment)
_W = table(WalletAddress)
_A = table(Asset)

_COLUMNS = (
    _P.c.id,
    _P.c.wallet_address_id,
    _P.c.asset_id,
    _P.c.incoming_amount,
    _P.c.received_amount,
    _P.c.state,
    _P.c.expires_at,
    _P.c["metadata"],
    _P.c.client,
    _P.c.created_at,
    _P.c.updated_at,
    _W.c.url,
    _A.c.code.label("asset_code"),
    _A.c.scale.label("asset_scale"),
)
_FROM = _P.join(_W, _W.c.id == _P.c.wallet_address_id).join(_A, _A.c.id == _P.c.asset_id)

_BY_ID = Statement(select(*_COLUMNS).select_from(_FROM).where(_P.c.id == bindparam("id")))

# A grant without read-all/list-all sees only what its own client created: ``client`` NULL
# means no such restriction.
_CLIENT = bindparam("client", type_=String)
_VISIBLE = (
    _P.c.wallet_address_id == bindparam("wallet_id", type_=Uuid),
    or_(_CLIENT.is_(None), _P.c.client == _CLIENT),
)

_CURSOR = Statement(
    select(_P.c.created_at).where(_P.c.id == bindparam("id", type_=Uuid), *_VISIBLE)
)


def _page_statement(newest_first: bool) -> Statement:
    key = tuple_(_P.c.created_at, _P.c.id)
    cursor_id = bindparam("cursor_id", type_=Uuid)
    cursor = tuple_(bindparam("cursor_at", type_=DateTime(timezone=True)), cursor_id)
    beyond = key < cursor if newest_first else key > cursor
    order = (
        (_P.c.created_at.desc(), _P.c.id.desc())
        if newest_first
        else (_P.c.created_at.asc(), _P.c.id.asc())
    )
    return Statement(
        select(*_COLUMNS)
        .select_from(_FROM)
        .where(*_VISIBLE, or_(cursor_id.is_(None), beyond))
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
    )


_FORWARD = _page_statement(newest_first=True)
_BACKWARD = _page_statement(newest_first=False)


async def by_id(pool: asyncpg.Pool, payment_id: uuid.UUID) -> asyncpg.Record | None:
    """The payment with its wallet address's URL and asset, or None."""
    return await _BY_ID.fetchrow(pool, id=payment_id)


async def cursor_position(
    pool: asyncpg.Pool, cursor: uuid.UUID, wallet_id: uuid.UUID, client: str | None
) -> datetime | None:
    """When the payment ``cursor`` was created, if the listing may see it; else None."""
    moment: datetime | None = await _CURSOR.fetchval(
        pool, id=cursor, wallet_id=wallet_id, client=client
    )
    return moment


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[asyncpg.Record]
    has_next: bool
    has_previous: bool


async def page(
    pool: asyncpg.Pool,
    wallet_id: uuid.UUID,
    client: str | None,
    *,
    first: int | None,
    last: int | None,
    cursor: tuple[uuid.UUID, datetime] | None,
) -> Page:
    """A page of the wallet address's payments, newest first: ``first`` after ``cursor`` (or
    from the newest), or ``last`` before it (or up to the oldest). ``cursor`` is a payment the
    listing sees (:func:`cursor_position`), so with one there is always a page on its side."""
    backward = last is not None
    size = (last if backward else first) or DEFAULT_PAGE
    statement = _BACKWARD if backward else _FORWARD
    rows = await statement.fetch(
        pool,
        wallet_id=wallet_id,
        client=client,
        cursor_id=None if cursor is None else cursor[0],
        cursor_at=None if cursor is None else cursor[1],
        limit=size + 1,
    )
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
        return Page(rows, has_next=cursor is not None, has_previous=more)
    return Page(rows, has_next=more, has_previous=cursor is not None)


def granted_actions(access: Iterable[Mapping[str, Any]], wallet_address: str) -> frozenset[str]:
    """The incoming payment actions a grant's access allows on ``wallet_address``: those of
    its ``incoming-payment`` items naming that wallet address (a trailing slash aside) or
    none."""
    wallet_address = wallet_address.rstrip("/")
    actions: set[str] = set()
    for item in access:
        if item.get("type") != INCOMING_PAYMENT:
            continue
        identifier = item.get("identifier")
        if identifier is None or (
            isinstance(identifier, str) and identifier.rstrip("/") == wallet_address
        ):
            actions.update(a for a in item.get("actions", ()) if isinstance(a, str))
    return frozenset(actions)


def any_actions(access: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The incoming payment actions a grant's access allows on any wallet address."""
    actions: set[str] = set()
    for item in access:
        if item.get("type") == INCOMING_PAYMENT:
            actions.update(a for a in item.get("actions", ()) if isinstance(a, str))
    return frozenset(actions)


def payment_url(resource_server: str, payment_id: uuid.UUID) -> str:
    """The payment's Open Payments id: ``<resource server>/incoming-payments/<uuid>``."""
    return f"{resource_server}/incoming-payments/{payment_id}"


def is_open(row: Mapping[str, Any], now: datetime) -> bool:
    return incoming_payment_open(row["state"], row["expires_at"], now)


def payment_json(
    row: Mapping[str, Any],
    resource_server: str,
    received: int,
    methods: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The Open Payments ``incoming-payment`` (``incoming-payment-with-methods`` with
    ``methods``) of a row of :func:`by_id` or :func:`page`, having received ``received``.
    Exactly the schema's properties: no ``updatedAt``, which the schema does not name and
    which the client refuses in a list or a completion (``additionalProperties: false``)."""
    code, scale = row["asset_code"], row["asset_scale"]
    body: dict[str, Any] = {
        "id": payment_url(resource_server, row["id"]),
        "walletAddress": row["url"],
        "completed": row["state"] == States.COMPLETED,
        "receivedAmount": amount_json(received, code, scale),
        "createdAt": iso_time(row["created_at"]),
    }
    if row["incoming_amount"] is not None:
        body["incomingAmount"] = amount_json(int(row["incoming_amount"]), code, scale)
    if row["expires_at"] is not None:
        body["expiresAt"] = iso_time(row["expires_at"])
    metadata = row["metadata"]
    if metadata is not None:
        body["metadata"] = stored_json(metadata)
    if methods is not None:
        body["methods"] = [dict(m) for m in methods]
    return body
