"""Outgoing payments and quotes as the Open Payments resource server serves them (its sending
side, :mod:`kiungo.connector.resource_sending`): which actions a grant's access allows, the
reads it needs (a quote's client and wallet address, one payment, a wallet address's payments a
page at a time) and the resources' JSON. The rows are the admin API's
(:mod:`kiungo.payments.outgoing`, :mod:`kiungo.payments.quotes`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from sqlalchemy import String, Uuid, bindparam, select, tuple_, update

from kiungo.events import amount_json, iso_time
from kiungo.models import Quote, WalletAddress
from kiungo.models.sql import Statement, stored_json, table
from kiungo.payments.outgoing.service import OUTGOING_PAYMENT_QUERY
from kiungo.payments.outgoing.states import States

__all__ = [
    "DEFAULT_PAGE",
    "actions",
    "outgoing_item",
    "page",
    "payment_by_id",
    "payment_json",
    "quote_json",
    "quote_owner",
    "set_quote_client",
    "wallet_url",
]

OUTGOING = "outgoing-payment"
DEFAULT_PAGE = 10

_quotes = table(Quote)
_wallets = table(WalletAddress)
_p = OUTGOING_PAYMENT_QUERY.selected_columns

_SET_QUOTE_CLIENT = Statement(
    update(_quotes).where(_quotes.c.id == bindparam("id")).values(client=bindparam("client"))
)
_QUOTE_OWNER = Statement(
    select(_quotes.c.client, _wallets.c.url)
    .select_from(_quotes.join(_wallets, _wallets.c.id == _quotes.c.wallet_address_id))
    .where(_quotes.c.id == bindparam("id"))
)
_WALLET_URL = Statement(select(_wallets.c.url).where(_wallets.c.id == bindparam("id")))
_PAYMENT = Statement(OUTGOING_PAYMENT_QUERY.where(_p.id == bindparam("id", type_=Uuid)))
_CLIENT = bindparam("client", type_=String)
_OF_WALLET = (
    _p.wallet_address_id == bindparam("wallet_id", type_=Uuid),
    (_CLIENT.is_(None)) | (_p.client == _CLIENT),
)
_POSITION = tuple_(_p.created_at, _p.id)
_AT = tuple_(bindparam("at_time"), bindparam("at_id", type_=Uuid))
_PAGE_FIRST = Statement(
    OUTGOING_PAYMENT_QUERY.where(*_OF_WALLET)
    .order_by(_p.created_at, _p.id)
    .limit(bindparam("limit"))
)
_PAGE_AFTER = Statement(
    OUTGOING_PAYMENT_QUERY.where(*_OF_WALLET, _POSITION > _AT)
    .order_by(_p.created_at, _p.id)
    .limit(bindparam("limit"))
)
_PAGE_LAST = Statement(
    OUTGOING_PAYMENT_QUERY.where(*_OF_WALLET)
    .order_by(_p.created_at.desc(), _p.id.desc())
    .limit(bindparam("limit"))
)
_PAGE_BEFORE = Statement(
    OUTGOING_PAYMENT_QUERY.where(*_OF_WALLET, _POSITION < _AT)
    .order_by(_p.created_at.desc(), _p.id.desc())
    .limit(bindparam("limit"))
)


def actions(access: Iterable[Mapping[str, Any]], kind: str, wallet: str | None) -> frozenset[str]:
    """The actions of ``kind`` the grant allows on ``wallet`` (None: on any)."""
    found: set[str] = set()
    for item in access:
        if item.get("type") != kind:
            continue
        identifier = item.get("identifier")
        if (
            wallet is None
            or identifier is None
            or (isinstance(identifier, str) and identifier.rstrip("/") == wallet.rstrip("/"))
        ):
            found.update(a for a in item.get("actions", ()) if isinstance(a, str))
    return frozenset(found)


def outgoing_item(
    access: Iterable[Mapping[str, Any]], wallet: str | None
) -> Mapping[str, Any] | None:
    for item in access:
        identifier = item.get("identifier")
        if item.get("type") == OUTGOING and (
            wallet is None or (isinstance(identifier, str) and identifier.rstrip("/") == wallet)
        ):
            return item
    return None


async def set_quote_client(pool: asyncpg.Pool, quote_id: uuid.UUID, client: str) -> None:
    """Record the Open Payments client that asked for the quote."""
    await _SET_QUOTE_CLIENT.execute(pool, id=quote_id, client=client)


async def quote_owner(pool: asyncpg.Pool, quote_id: uuid.UUID) -> asyncpg.Record | None:
    """The quote's client and its wallet address's URL (``client``, ``url``), else None."""
    return await _QUOTE_OWNER.fetchrow(pool, id=quote_id)


async def wallet_url(pool: asyncpg.Pool, wallet_id: uuid.UUID) -> str | None:
    url: str | None = await _WALLET_URL.fetchval(pool, id=wallet_id)
    return url


async def payment_by_id(pool: asyncpg.Pool, payment_id: uuid.UUID) -> asyncpg.Record | None:
    """The outgoing payment as :data:`OUTGOING_PAYMENT_QUERY` reads it, else None."""
    return await _PAYMENT.fetchrow(pool, id=payment_id)


async def page(
    pool: asyncpg.Pool,
    wallet_id: uuid.UUID,
    client: str | None,
    size: int,
    cursor: Mapping[str, Any] | None,
    backward: bool,
) -> tuple[list[asyncpg.Record], bool]:
    """Up to ``size`` payments of the wallet address (only ``client``'s unless None), oldest
    first, after ``cursor`` (a payment's row) or, ``backward``, the last ones before it; and
    whether there are more that way."""
    binds: dict[str, Any] = {"wallet_id": wallet_id, "client": client, "limit": size + 1}
    if cursor is not None:
        binds |= {"at_time": cursor["created_at"], "at_id": cursor["id"]}
        statement = _PAGE_BEFORE if backward else _PAGE_AFTER
    else:
        statement = _PAGE_LAST if backward else _PAGE_FIRST
    rows = list(await statement.fetch(pool, **binds))
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    return rows, more


def quote_json(row: Mapping[str, Any], base: str, wallet: str, receiver: str) -> dict[str, Any]:
    """The Open Payments ``quote`` of a quote's row (``receiver`` as it is to be shown)."""
    return {
        "id": f"{base}/quotes/{row['id']}",
        "walletAddress": wallet,
        "receiver": receiver,
        "debitAmount": amount_json(int(row["debit_amount"]), row["asset_code"], row["asset_scale"]),
        "receiveAmount": amount_json(
            int(row["receive_amount"]), row["receive_asset_code"], row["receive_asset_scale"]
        ),
        "method": "ilp",
        "createdAt": iso_time(row["created_at"]),
        "expiresAt": iso_time(row["expires_at"]),
    }


def payment_json(row: Mapping[str, Any], base: str, wallet: str, receiver: str) -> dict[str, Any]:
    """The Open Payments ``outgoing-payment`` of a row of :data:`OUTGOING_PAYMENT_QUERY`."""
    code, scale = row["asset_code"], row["asset_scale"]
    body: dict[str, Any] = {
        "id": f"{base}/outgoing-payments/{row['id']}",
        "walletAddress": wallet,
        "quoteId": f"{base}/quotes/{row['quote_id']}",
        "failed": row["state"] == States.FAILED,
        "receiver": receiver,
        "receiveAmount": amount_json(
            int(row["receive_amount"]), row["receive_asset_code"], row["receive_asset_scale"]
        ),
        "debitAmount": amount_json(int(row["debit_amount"]), code, scale),
        "sentAmount": amount_json(int(row["sent_amount"]), code, scale),
        "createdAt": iso_time(row["created_at"]),
    }
    metadata = row["metadata"]
    if metadata is not None:
        body["metadata"] = stored_json(metadata)
    return body
