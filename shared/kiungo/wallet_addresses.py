"""Wallet addresses (payment pointers): what a valid one is, and creating, changing and reading
them.

A wallet address is stored as its normalized URL, under OPEN_PAYMENTS_URL (where the connector
serves SPSP and Open Payments for it), with its asset, status and additional properties. Each
refusal is a :class:`WalletAddressError` subclass, raised before anything is written; the admin
API maps each to its code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import bindparam, func, insert, null, select

from kiungo.ledger import AccountKind, Ledger
from kiungo.models import WalletAddress, WalletAddressStatus
from kiungo.models.sql import Statement, stored_json, table
from kiungo.refusal import NotFound, Refusal

__all__ = [
    "KEEP",
    "MAX_PROPERTIES",
    "WALLET_ADDRESS_COLUMNS",
    "WALLET_ADDRESS_QUERY",
    "InvalidWalletAddress",
    "Keep",
    "Property",
    "WalletAddressChanges",
    "WalletAddressError",
    "WalletAddressExists",
    "WalletAddressNotFound",
    "by_url",
    "check_public_name",
    "create",
    "load",
    "normalize_address",
    "properties_json",
    "properties_of",
    "update",
]

MAX_PROPERTIES = 64

_wallets = table(WalletAddress)
_COLUMNS = (
    _wallets.c.id,
    _wallets.c.url,
    _wallets.c.public_name,
    _wallets.c.asset_id,
    _wallets.c.status,
    _wallets.c.additional_properties,
    _wallets.c.created_at,
    _wallets.c.deactivated_at,
)
WALLET_ADDRESS_COLUMNS = ", ".join(column.name for column in _COLUMNS)
"""The columns a wallet address is read with, as SQL text."""

WALLET_ADDRESS_QUERY = select(*_COLUMNS)
"""Every wallet address, as a select to page through (the admin API's list)."""
_BY_ID = Statement(select(*_COLUMNS).where(_wallets.c.id == bindparam("id")))
_BY_URL = Statement(select(*_COLUMNS).where(_wallets.c.url == bindparam("url")))
_INSERT = Statement(
    insert(_wallets)
    .values(
        id=bindparam("id"),
        url=bindparam("url"),
        public_name=bindparam("public_name"),
        asset_id=bindparam("asset_id"),
        additional_properties=bindparam("additional_properties"),
    )
    .returning(*_COLUMNS)
)


class WalletAddressError(Refusal):
    """A request about a wallet address refused, nothing written."""


class InvalidWalletAddress(WalletAddressError):
    """The request's values are not a wallet address this node keeps (the caller's to change)."""


class WalletAddressNotFound(NotFound, WalletAddressError):
    what = "wallet address"


class WalletAddressExists(WalletAddressError):
    def __init__(self, url: str) -> None:
        super().__init__(f"the wallet address {url} already exists")


@dataclass(frozen=True, slots=True)
class Property:
    """An additional property; ``visible`` ones are shown in Open Payments."""

    key: str
    value: str
    visible: bool


def normalize_address(address: str, open_payments_url: str) -> str:
    """A wallet address URL as stored, as Rafiki makes it: a full URL under
    ``open_payments_url`` (a ``$host/path`` payment pointer read as ``https://``), or a path or
    name relative to it (``"alice"`` and ``"/alice"`` are ``<open_payments_url>/alice``); no
    trailing slash, lower-cased. (Rafiki also refuses paths holding ``/incoming-payments``,
    ``/outgoing-payments`` or ``/quotes``; Kiungo keeps serving such an address, since its
    resource server answers only Open Payments requests on those paths.)"""
    text = address.strip()
    base = open_payments_url.rstrip("/")
    if text.startswith("$"):
        text = "https://" + text[1:]
    elif "://" not in text:
        text = f"{base}/{text.lstrip('/')}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidWalletAddress(f"{address!r} is not a wallet address URL", field="address")
    path = parts.path.rstrip("/")
    if not path:
        raise InvalidWalletAddress(
            "a wallet address URL needs a path, such as /alice", field="address"
        )
    url = f"{parts.scheme}://{parts.netloc}{path}".lower()
    if not url.startswith(base.lower() + "/"):
        raise InvalidWalletAddress(
            f"wallet addresses of this node are under {base}/ (OPEN_PAYMENTS_URL)",
            field="address",
        )
    return url


def properties_json(properties: Sequence[Property]) -> str:
    """Additional properties as the JSON text stored (Rafiki's field names)."""
    if len(properties) > MAX_PROPERTIES:
        raise InvalidWalletAddress(f"at most {MAX_PROPERTIES} additional properties")
    for p in properties:
        if not p.key or len(p.key) > 255 or len(p.value) > 4096:
            raise InvalidWalletAddress(
                "additional property keys are 1-255 characters, values up to 4096"
            )
    return json.dumps(
        [{"key": p.key, "value": p.value, "visibleInOpenPayments": p.visible} for p in properties]
    )


def properties_of(raw: Any) -> list[Property]:
    """The stored additional properties (jsonb, or its text)."""
    values = stored_json(raw) or []
    if not isinstance(values, list):
        return []
    return [Property(p["key"], p["value"], p["visibleInOpenPayments"]) for p in values]


def check_public_name(name: str | None) -> str | None:
    if name is not None and len(name) > 255:
        raise InvalidWalletAddress("publicName is at most 255 characters", field="publicName")
    return name


class Keep:
    """The value of a field an update leaves as it is."""


KEEP: Final = Keep()


@dataclass(frozen=True, slots=True)
class WalletAddressChanges:
    """What an update changes; :data:`KEEP` leaves a field alone. ``additional_properties``
    is the JSON text of :func:`properties_json`."""

    public_name: str | Keep | None = KEEP
    status: WalletAddressStatus | Keep = KEEP
    additional_properties: str | Keep = KEEP


async def load(pool: asyncpg.Pool, wallet_address_id: uuid.UUID) -> asyncpg.Record | None:
    return await _BY_ID.fetchrow(pool, id=wallet_address_id)


async def by_url(pool: asyncpg.Pool, url: str) -> asyncpg.Record | None:
    """The wallet address stored as ``url`` (normalized), if there is one."""
    return await _BY_URL.fetchrow(pool, url=url)


async def create(
    pool: asyncpg.Pool,
    ledger: Ledger,
    asset_id: uuid.UUID,
    url: str,
    public_name: str | None,
    properties: str,
) -> asyncpg.Record:
    """A new ACTIVE wallet address with its (empty) Web Monetization account."""
    try:
        row = await _INSERT.fetchrow(
            pool,
            id=uuid.uuid4(),
            url=url,
            public_name=public_name,
            asset_id=asset_id,
            additional_properties=properties,
        )
    except asyncpg.UniqueViolationError:
        raise WalletAddressExists(url) from None
    assert row is not None
    await ledger.ensure_account(AccountKind.WALLET_ADDRESS, row["id"], asset_id)
    return row


_UpdateShape = tuple[bool, WalletAddressStatus | None, bool]
"""What an update sets: the public name (or not), the new status (or None), the properties
(or not)."""
_UPDATES: dict[_UpdateShape, Statement] = {}
"""One statement per shape of update, built the first time that shape is asked for."""


def _update_statement(shape: _UpdateShape) -> Statement:
    statement = _UPDATES.get(shape)
    if statement is None:
        name, status, properties = shape
        values: dict[str, Any] = {}
        if name:
            values["public_name"] = bindparam("public_name")
        if status is not None:
            values["status"] = status
            values["deactivated_at"] = (
                func.coalesce(_wallets.c.deactivated_at, func.now())
                if status == WalletAddressStatus.INACTIVE
                else null()
            )
        if properties:
            values["additional_properties"] = bindparam("additional_properties")
        values["updated_at"] = func.now()
        statement = _UPDATES[shape] = Statement(
            _wallets.update()
            .where(_wallets.c.id == bindparam("id"))
            .values(values)
            .returning(*_COLUMNS)
        )
    return statement


async def update(
    pool: asyncpg.Pool, wallet_address_id: uuid.UUID, changes: WalletAddressChanges
) -> asyncpg.Record:
    """Apply ``changes``; deactivating stamps ``deactivated_at`` (once), activating clears it."""
    values: dict[str, Any] = {"id": wallet_address_id}
    if not isinstance(changes.public_name, Keep):
        values["public_name"] = changes.public_name
    status = None if isinstance(changes.status, Keep) else WalletAddressStatus(changes.status)
    if not isinstance(changes.additional_properties, Keep):
        values["additional_properties"] = changes.additional_properties
    shape = ("public_name" in values, status, "additional_properties" in values)
    row = await _update_statement(shape).fetchrow(pool, **values)
    if row is None:
        raise WalletAddressNotFound()
    return row
