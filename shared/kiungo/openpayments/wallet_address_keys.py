"""Wallet address keys: the Ed25519 public keys a wallet address's owner signs Open Payments
requests with, and the documents other nodes read about a wallet address.

The admin API adds and revokes keys (Rafiki's ``createWalletAddressKey`` and
``revokeWalletAddressKey``); ``GET <wallet address URL>/jwks.json`` publishes the active ones as a
JWK Set (RFC 7517, RFC 8037), which is where an authorization server finds the key a client's
signatures must verify with. A key is a JWK of type ``OKP`` on curve ``Ed25519`` (``alg``
``EdDSA``), its ``x`` the 32-byte public key in unpadded base64url. Like Rafiki, a wallet address
has at most one active key per ``kid``; a revoked key frees its ``kid``.

``GET <wallet address URL>`` with ``Accept: application/json`` answers the wallet address
document (Open Payments' wallet address server API): what a client needs to pay it, where its
authorization and resource servers are, and the additional properties its owner made visible.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import and_, bindparam, case, func, insert, select, true, update

from kiungo.models import Asset, WalletAddress, WalletAddressKey, WalletAddressStatus
from kiungo.models.sql import Statement, stored_json, table

__all__ = [
    "ALG",
    "CRV",
    "KEY_QUERY",
    "KTY",
    "DuplicateKey",
    "InvalidJwk",
    "Jwk",
    "KeyNotFound",
    "KeyRefusal",
    "WalletAddressNotFound",
    "active_jwks",
    "create_key",
    "load_key",
    "parse_jwk",
    "public_key",
    "revoke_key",
    "wallet_address_document",
]

KTY = "OKP"
CRV = "Ed25519"
ALG = "EdDSA"
MAX_KID = 255
_keys = table(WalletAddressKey)
_wallets = table(WalletAddress)
_assets = table(Asset)
_KEY = (
    _keys.c.id,
    _keys.c.wallet_address_id,
    _keys.c.kid,
    _keys.c.x,
    _keys.c.revoked,
    _keys.c.created_at,
)
KEY_QUERY = select(*_KEY)
"""Every key, as a select to filter and page through (the admin API's list)."""
"""The columns a key is read with, as SQL text."""

_CREATE = Statement(
    insert(_keys)
    .values(
        id=bindparam("id"),
        wallet_address_id=bindparam("wallet_address_id"),
        kid=bindparam("kid"),
        x=bindparam("x"),
    )
    .returning(*_KEY)
)
# Revoking a revoked key changes nothing, its updated_at included.
_REVOKE = Statement(
    update(_keys)
    .where(_keys.c.id == bindparam("id"))
    .values(
        revoked=true(),
        updated_at=case((_keys.c.revoked, _keys.c.updated_at), else_=func.now()),
    )
    .returning(*_KEY)
)
_LOAD = Statement(KEY_QUERY.where(_keys.c.id == bindparam("id")))
_ACTIVE_JWKS = Statement(
    select(_wallets.c.status, _keys.c.kid, _keys.c.x)
    .select_from(
        _wallets.outerjoin(
            _keys, and_(_keys.c.wallet_address_id == _wallets.c.id, ~_keys.c.revoked)
        )
    )
    .where(_wallets.c.url == bindparam("url"))
    .order_by(_keys.c.created_at, _keys.c.id)
)
_DOCUMENT = Statement(
    select(
        _wallets.c.url,
        _wallets.c.public_name,
        _wallets.c.status,
        _wallets.c.additional_properties,
        _assets.c.code,
        _assets.c.scale,
    )
    .select_from(_wallets.join(_assets, _assets.c.id == _wallets.c.asset_id))
    .where(_wallets.c.url == bindparam("url"))
)
# The Open Payments schema's pattern for x; base64url without padding.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class KeyRefusal(Exception):
    """A refusal, nothing changed: its type says what; ``details`` go to the API error."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidJwk(KeyRefusal):
    """Not an Ed25519 public key as a JWK."""


class DuplicateKey(KeyRefusal):
    def __init__(self) -> None:
        super().__init__("Key already exists")


class KeyNotFound(KeyRefusal):
    def __init__(self) -> None:
        super().__init__("wallet address key not found")


class WalletAddressNotFound(KeyRefusal):
    def __init__(self) -> None:
        super().__init__("wallet address not found")


@dataclass(frozen=True, slots=True)
class Jwk:
    kid: str
    x: str

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "x": self.x, "kty": KTY, "crv": CRV, "alg": ALG, "use": "sig"}


def public_key(x: str) -> bytes:
    """The 32 bytes of an Ed25519 JWK's ``x``; raises :class:`InvalidJwk` for anything else."""
    if not _BASE64URL.fullmatch(x) or len(x) != 43:
        raise InvalidJwk("x must be a 32-byte public key in base64url without padding", field="x")
    try:
        raw = base64.urlsafe_b64decode(x + "=")
    except (binascii.Error, ValueError):
        raise InvalidJwk("x is not base64url", field="x") from None
    # 43 characters carry 258 bits: the last two must be zero for the text to be canonical,
    # or two different x strings would name the same key (and dodge the one-per-kid rule).
    if len(raw) != 32 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != x:
        raise InvalidJwk("x must be a 32-byte public key in base64url without padding", field="x")
    return raw


def parse_jwk(*, kid: str, x: str, kty: str = KTY, crv: str = CRV, alg: str | None = ALG) -> Jwk:
    """An Ed25519 public JWK, checked; raises :class:`InvalidJwk`."""
    if kty != KTY:
        raise InvalidJwk(f"kty must be {KTY}", field="kty")
    if crv != CRV:
        raise InvalidJwk(f"crv must be {CRV}", field="crv")
    if alg is not None and alg != ALG:
        raise InvalidJwk(f"alg must be {ALG}", field="alg")
    if not kid or len(kid) > MAX_KID or not kid.isprintable():
        raise InvalidJwk(f"kid must be 1 to {MAX_KID} printable characters", field="kid")
    public_key(x)
    return Jwk(kid, x)


async def create_key(pool: asyncpg.Pool, wallet_address_id: uuid.UUID, jwk: Jwk) -> asyncpg.Record:
    """Add ``jwk`` to the wallet address; returns the key's row (:data:`KEY_COLUMNS`).
    Raises :class:`WalletAddressNotFound` or :class:`DuplicateKey` (an active key of that
    wallet address has this ``kid``)."""
    try:
        row = await _CREATE.fetchrow(
            pool, id=uuid.uuid4(), wallet_address_id=wallet_address_id, kid=jwk.kid, x=jwk.x
        )
    except asyncpg.ForeignKeyViolationError:
        raise WalletAddressNotFound() from None
    except asyncpg.UniqueViolationError:
        raise DuplicateKey() from None
    assert row is not None
    return row


async def revoke_key(pool: asyncpg.Pool, key_id: uuid.UUID) -> asyncpg.Record:
    """Revoke a key (from now on no signature made with it verifies); revoking a revoked key
    changes nothing. Returns its row; raises :class:`KeyNotFound`."""
    row = await _REVOKE.fetchrow(pool, id=key_id)
    if row is None:
        raise KeyNotFound()
    return row


async def load_key(pool: asyncpg.Pool, key_id: uuid.UUID) -> asyncpg.Record:
    row = await _LOAD.fetchrow(pool, id=key_id)
    if row is None:
        raise KeyNotFound()
    return row


async def active_jwks(pool: asyncpg.Pool, url: str) -> list[Jwk] | None:
    """The active keys of the active wallet address at ``url``, oldest first; None when no
    active wallet address has that URL."""
    rows = await _ACTIVE_JWKS.fetch(pool, url=url)
    if not rows or rows[0]["status"] != WalletAddressStatus.ACTIVE:
        return None
    return [Jwk(r["kid"], r["x"]) for r in rows if r["kid"] is not None]


async def wallet_address_document(
    pool: asyncpg.Pool, url: str, *, auth_server: str, resource_server: str
) -> dict[str, Any] | None:
    """The Open Payments wallet address document of the active wallet address at ``url``, or
    None when there is none (unknown or inactive: both are 404 to the world)."""
    row = await _DOCUMENT.fetchrow(pool, url=url)
    if row is None or row["status"] != WalletAddressStatus.ACTIVE:
        return None
    document: dict[str, Any] = {"id": row["url"]}
    if row["public_name"] is not None:
        document["publicName"] = row["public_name"]
    document.update(
        assetCode=row["code"],
        assetScale=row["scale"],
        authServer=auth_server,
        resourceServer=resource_server,
    )
    visible = _visible_properties(row["additional_properties"])
    if visible:
        document["additionalProperties"] = visible
    return document


def _visible_properties(raw: Any) -> dict[str, str]:
    """The additional properties the wallet address's owner made public (Rafiki puts them in
    the document as ``additionalProperties``, key to value); the others stay private."""
    try:
        values = stored_json(raw)
    except ValueError:
        return {}
    if not isinstance(values, list):
        return {}
    return {
        p["key"]: p["value"]
        for p in values
        if isinstance(p, dict)
        and p.get("visibleInOpenPayments") is True
        and isinstance(p.get("key"), str)
        and isinstance(p.get("value"), str)
    }
