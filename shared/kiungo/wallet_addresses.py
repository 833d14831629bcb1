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

from kiungo.ledger import AccountKind, Ledger
from kiungo.models import WalletAddressStatus
from kiungo.refusal import NotFound, Refusal

__all__ = [
    "KEEP",
    "MAX_PROPERTIES",
    "WALLET_ADDRESS_COLUMNS",
    "WALLET_ADDRESS_SELECT",
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

WALLET_ADDRESS_COLUMNS = (
    "id, url, public_name, asset_id, status, additional_properties, created_at, deactivated_at"
)

# Built from the constant column list only.
WALLET_ADDRESS_SELECT = f"SELECT {WALLET_ADDRESS_COLUMNS} FROM wallet_addresses"  # noqa: S608
"""Every wallet address (a WHERE may follow)."""
_BY_ID = f"SELECT {WALLET_ADDRESS_COLUMNS} FROM wallet_addresses WHERE id = $1"  # noqa: S608
_BY_URL = f"SELECT {WALLET_ADDRESS_COLUMNS} FROM wallet_addresses WHERE url = $1"  # noqa: S608
_INSERT = (
    "INSERT INTO wallet_addresses (id, url, public_name, asset_id, additional_properties) "  # noqa: S608
    f"VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING {WALLET_ADDRESS_COLUMNS}"
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
    """A wallet address URL as stored: ``$host/path`` payment pointers read as ``https://``,
    no trailing slash, and under ``open_payments_url``, where the connector serves SPSP for it."""
    text = address.strip()
    if text.startswith("$"):
        text = "https://" + text[1:]
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidWalletAddress(f"{address!r} is not a wallet address URL", field="address")
    path = parts.path.rstrip("/")
    if not path:
        raise InvalidWalletAddress(
            "a wallet address URL needs a path, such as /alice", field="address"
        )
    url = f"{parts.scheme}://{parts.netloc.lower()}{path}"
    base = open_payments_url.rstrip("/")
    if not url.startswith(base + "/"):
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
    values = json.loads(raw) if isinstance(raw, str) else (raw or [])
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
    row: asyncpg.Record | None = await pool.fetchrow(_BY_ID, wallet_address_id)
    return row


async def by_url(pool: asyncpg.Pool, url: str) -> asyncpg.Record | None:
    """The wallet address stored as ``url`` (normalized), if there is one."""
    row: asyncpg.Record | None = await pool.fetchrow(_BY_URL, url)
    return row


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
        row = await pool.fetchrow(_INSERT, uuid.uuid4(), url, public_name, asset_id, properties)
    except asyncpg.UniqueViolationError:
        raise WalletAddressExists(url) from None
    assert row is not None
    await ledger.ensure_account(AccountKind.WALLET_ADDRESS, row["id"], asset_id)
    return row


async def update(
    pool: asyncpg.Pool, wallet_address_id: uuid.UUID, changes: WalletAddressChanges
) -> asyncpg.Record:
    """Apply ``changes``; deactivating stamps ``deactivated_at`` (once), activating clears it."""
    sets: list[str] = []
    values: list[Any] = [wallet_address_id]
    if not isinstance(changes.public_name, Keep):
        values.append(changes.public_name)
        sets.append(f"public_name = ${len(values)}")
    if not isinstance(changes.status, Keep):
        values.append(changes.status.value)
        sets.append(f"status = ${len(values)}::text")
        sets.append(
            "deactivated_at = coalesce(deactivated_at, now())"
            if changes.status == WalletAddressStatus.INACTIVE
            else "deactivated_at = NULL"
        )
    if not isinstance(changes.additional_properties, Keep):
        values.append(changes.additional_properties)
        sets.append(f"additional_properties = ${len(values)}::jsonb")
    assignments = ", ".join([*sets, "updated_at = now()"])
    # Built from the constant column names above only; every value is a parameter.
    row: asyncpg.Record | None = await pool.fetchrow(
        f"UPDATE wallet_addresses SET {assignments} WHERE id = $1 "  # noqa: S608
        f"RETURNING {WALLET_ADDRESS_COLUMNS}",
        *values,
    )
    if row is None:
        raise WalletAddressNotFound()
    return row
