"""GNAP grants (RFC 9635) as an Open Payments authorization server issues them: the access a
request may ask for, non-interactive grants with their access and continuation tokens, token
rotation and revocation, grant cancellation, and :func:`introspect` for the resource server.

Token values are 32 random bytes (base64url) handed to the client once; rows hold only their
SHA-256, so every lookup hashes the presented value. A rotation revokes the old row and adds a
new one (new value, new manage URL) in one transaction, so at most one of them authorizes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, insert, select, true, update

from kiungo.ilp.oer import MAX_UINT64
from kiungo.models import Grant, GrantAccessToken, GrantState
from kiungo.models.sql import Statement, stored_json, table
from kiungo.openpayments.intervals import InvalidInterval, parse_interval

__all__ = [
    "ACCESS_TOKEN_EXPIRY_SECONDS",
    "APPROVED",
    "FINALIZED",
    "INTERACTIVE_ACTIONS",
    "NON_INTERACTIVE_ACTIONS",
    "PENDING",
    "AccessRefused",
    "GrantInfo",
    "IssuedToken",
    "cancel_grant",
    "create_grant",
    "grant_for_continuation",
    "hash_token",
    "introspect",
    "issue_token",
    "needs_interaction",
    "new_value",
    "parse_access",
    "revoke_grant",
    "revoke_token",
    "rotate_token",
    "token_holder",
]

# Rafiki's ACCESS_TOKEN_EXPIRY_SECONDS default.
ACCESS_TOKEN_EXPIRY_SECONDS = 600
PROCESSING = GrantState.PROCESSING.value
PENDING = GrantState.PENDING.value
APPROVED = GrantState.APPROVED.value
FINALIZED = GrantState.FINALIZED.value
# Finalization reasons (Rafiki's GrantFinalization).
ISSUED = "ISSUED"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
# What may be granted without interaction, per type (Open Payments access-incoming/-quote).
NON_INTERACTIVE_ACTIONS: Mapping[str, frozenset[str]] = {
    "incoming-payment": frozenset({"create", "read", "read-all", "list", "list-all", "complete"}),
    "quote": frozenset({"create", "read", "read-all"}),
}
# What needs the account holder's consent (Open Payments access-outgoing).
INTERACTIVE_ACTIONS: Mapping[str, frozenset[str]] = {
    "outgoing-payment": frozenset({"create", "read", "read-all", "list", "list-all"}),
}
_ACTIONS = {**NON_INTERACTIVE_ACTIONS, **INTERACTIVE_ACTIONS}
_LIMIT_FIELDS = frozenset({"receiver", "debitAmount", "receiveAmount", "interval"})
MAX_ACCESS_ITEMS = 16
MAX_IDENTIFIER = 2048


_grants = table(Grant)
_tokens = table(GrantAccessToken)

_INSERT_TOKEN = Statement(
    insert(_tokens).values(
        id=bindparam("id"),
        grant_id=bindparam("grant_id"),
        value_hash=bindparam("value_hash"),
        expires_at=bindparam("expires_at"),
    )
)
# A grant with its first access token, in one statement (one round trip, no transaction).
_new_grant = (
    insert(_grants)
    .values(
        id=bindparam("id"),
        client=bindparam("client"),
        client_jwk=bindparam("client_jwk"),
        access=bindparam("access"),
        state=APPROVED,
        continue_token_hash=bindparam("continue_token_hash"),
    )
    .returning(_grants.c.id)
    .cte("new_grant")
)
_INSERT_GRANT = Statement(
    insert(_tokens).from_select(
        ["id", "grant_id", "value_hash", "expires_at"],
        select(
            bindparam("token_id", type_=_tokens.c.id.type),
            _new_grant.c.id,
            bindparam("value_hash", type_=_tokens.c.value_hash.type),
            bindparam("expires_at", type_=_tokens.c.expires_at.type),
        ).select_from(_new_grant),
    )
)
# The approved grant of an unrevoked token, whoever holds it.
_HELD = _tokens.join(_grants, _grants.c.id == _tokens.c.grant_id)
_HOLDER = Statement(
    select(_grants.c.id.label("grant_id"), _grants.c.client, _grants.c.client_jwk, _grants.c.access)
    .select_from(_HELD)
    .where(
        _tokens.c.id == bindparam("id"),
        _tokens.c.value_hash == bindparam("value_hash"),
        ~_tokens.c.revoked,
        _grants.c.state == APPROVED,
    )
)
# Revoking a token presented with its value (rotating it revokes it too): its grant's id, or
# nothing when the token is unknown, already revoked or its value wrong.
_REVOKE = Statement(
    update(_tokens)
    .where(
        _tokens.c.id == bindparam("id"),
        _tokens.c.value_hash == bindparam("value_hash"),
        ~_tokens.c.revoked,
    )
    .values(revoked=true(), updated_at=func.now())
    .returning(_tokens.c.grant_id)
)
# A grant its continuation token may still continue or cancel (any state but FINALIZED).
_LIVE = (PROCESSING, PENDING, APPROVED)
_CONTINUATION = Statement(
    select(
        _grants.c.id,
        _grants.c.client,
        _grants.c.client_jwk,
        _grants.c.access,
        _grants.c.state,
        _grants.c.interact_id,
    ).where(
        _grants.c.id == bindparam("id"),
        _grants.c.continue_token_hash == bindparam("continue_token_hash"),
        _grants.c.state.in_(_LIVE),
    )
)
_FINALIZE = Statement(
    update(_grants)
    .where(
        _grants.c.id == bindparam("id"),
        _grants.c.continue_token_hash == bindparam("continue_token_hash"),
        _grants.c.state.in_(_LIVE),
    )
    .values(state=FINALIZED, finalization_reason=REVOKED, updated_at=func.now())
    .returning(_grants.c.id)
)
# The operator's revocation (the admin API's revokeGrant): any grant not yet finalized.
_REVOKE_GRANT = Statement(
    update(_grants)
    .where(_grants.c.id == bindparam("id"), _grants.c.state.in_(_LIVE))
    .values(state=FINALIZED, finalization_reason=REVOKED, updated_at=func.now())
    .returning(_grants.c.id)
)
_REVOKE_ALL = Statement(
    update(_tokens)
    .where(_tokens.c.grant_id == bindparam("grant_id"), ~_tokens.c.revoked)
    .values(revoked=true(), updated_at=func.now())
)
_INTROSPECT = Statement(
    select(
        _tokens.c.id,
        _grants.c.id.label("grant_id"),
        _grants.c.client,
        _grants.c.client_jwk,
        _grants.c.access,
    )
    .select_from(_HELD)
    .where(
        _tokens.c.value_hash == bindparam("value_hash"),
        ~_tokens.c.revoked,
        _tokens.c.expires_at > func.now(),
        _grants.c.state == APPROVED,
    )
)


class AccessRefused(Exception):
    """The requested access cannot be granted; ``code`` is the GNAP error code."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class IssuedToken:
    id: uuid.UUID
    value: str
    expires_in: int


@dataclass(frozen=True)
class GrantInfo:
    """What a valid access token authorizes: the grant, its client (and the client's JWK when
    it is known by its key) and access."""

    grant_id: uuid.UUID
    token_id: uuid.UUID
    client: str
    access: list[dict[str, Any]]
    client_jwk: dict[str, Any] | None = None


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_value() -> str:
    """A fresh random token value (32 bytes, base64url)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _limit_amount(raw: object, what: str) -> dict[str, Any]:
    if (
        not isinstance(raw, dict)
        or set(raw) != {"value", "assetCode", "assetScale"}
        or not isinstance(raw["value"], str)
        or not raw["value"].isascii()
        or not raw["value"].isdigit()
        or len(raw["value"]) > 20
        or not 0 < int(raw["value"]) <= MAX_UINT64
        or not isinstance(raw["assetCode"], str)
        or not 0 < len(raw["assetCode"]) <= 16
        or type(raw["assetScale"]) is not int
        or not 0 <= raw["assetScale"] <= 255
    ):
        raise AccessRefused(
            "invalid_request", f"limits.{what} must be an amount {{value, assetCode, assetScale}}"
        )
    return {
        "value": str(int(raw["value"])),
        "assetCode": raw["assetCode"],
        "assetScale": raw["assetScale"],
    }


def _limits(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or not set(raw) <= _LIMIT_FIELDS:
        raise AccessRefused("invalid_request", f"limits may have only {sorted(_LIMIT_FIELDS)}")
    limits: dict[str, Any] = {}
    receiver = raw.get("receiver")
    if receiver is not None:
        if not isinstance(receiver, str) or not 0 < len(receiver) <= MAX_IDENTIFIER:
            raise AccessRefused("invalid_request", "limits.receiver must be a URL string")
        limits["receiver"] = receiver
    if raw.get("debitAmount") is not None and raw.get("receiveAmount") is not None:
        raise AccessRefused(
            "invalid_request", "only one of limits.debitAmount and limits.receiveAmount"
        )
    for what in ("debitAmount", "receiveAmount"):
        if raw.get(what) is not None:
            limits[what] = _limit_amount(raw[what], what)
    interval = raw.get("interval")
    if interval is not None:
        try:
            parse_interval(interval)
        except InvalidInterval as exc:
            raise AccessRefused("invalid_request", f"limits.interval: {exc}") from None
        limits["interval"] = interval
    return limits


def parse_access(raw: object) -> list[dict[str, Any]]:
    """The access items of a grant request, checked: each a known type with distinct known
    actions and an optional string identifier (required for ``outgoing-payment``, whose
    ``limits`` are checked too: amounts, an ISO 8601 repeating interval)."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_ACCESS_ITEMS:
        raise AccessRefused("invalid_request", "access must be a non-empty array")
    items: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise AccessRefused("invalid_request", "each access item must be an object")
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in _ACTIONS:
            raise AccessRefused("invalid_request", "unknown access type")
        outgoing = kind in INTERACTIVE_ACTIONS
        allowed = set(item) - {"type", "actions", "identifier", *(["limits"] if outgoing else [])}
        if allowed:
            raise AccessRefused("invalid_request", f"unknown access fields: {sorted(allowed)}")
        actions = item.get("actions")
        if (
            not isinstance(actions, list)
            or not all(isinstance(a, str) for a in actions)
            or len(set(actions)) != len(actions)
            or not set(actions) <= _ACTIONS[kind]
        ):
            raise AccessRefused("invalid_request", f"invalid actions for {kind}")
        checked: dict[str, Any] = {"type": kind, "actions": list(actions)}
        identifier = item.get("identifier")
        if identifier is None and outgoing:
            raise AccessRefused("invalid_request", f"{kind} access needs an identifier")
        if identifier is not None:
            if kind == "quote":
                raise AccessRefused("invalid_request", "quote access takes no identifier")
            if not isinstance(identifier, str) or not 0 < len(identifier) <= MAX_IDENTIFIER:
                raise AccessRefused("invalid_request", "identifier must be a URI string")
            checked["identifier"] = identifier
        if item.get("limits") is not None:
            checked["limits"] = _limits(item["limits"])
        items.append(checked)
    return items


def needs_interaction(access: Sequence[Mapping[str, Any]]) -> bool:
    """Whether granting ``access`` needs the account holder's consent."""
    return any(item["type"] in INTERACTIVE_ACTIONS for item in access)


def _expiry(expires_in: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=expires_in)


async def issue_token(
    conn: asyncpg.Connection, grant_id: uuid.UUID, expires_in: int
) -> IssuedToken:
    token = IssuedToken(uuid.uuid4(), new_value(), expires_in)
    await _INSERT_TOKEN.execute(
        conn,
        id=token.id,
        grant_id=grant_id,
        value_hash=hash_token(token.value),
        expires_at=_expiry(expires_in),
    )
    return token


async def create_grant(
    pool: asyncpg.Pool,
    client: str,
    access: Sequence[Mapping[str, Any]],
    expires_in: int = ACCESS_TOKEN_EXPIRY_SECONDS,
    client_jwk: Mapping[str, str] | None = None,
) -> tuple[uuid.UUID, IssuedToken, str]:
    """An approved grant for ``client`` (known by ``client_jwk`` when given): its id, access
    token, and continuation token value."""
    grant_id = uuid.uuid4()
    continue_value = new_value()
    token = IssuedToken(uuid.uuid4(), new_value(), expires_in)
    await _INSERT_GRANT.execute(
        pool,
        id=grant_id,
        client=client,
        client_jwk=None if client_jwk is None else json.dumps(dict(client_jwk)),
        access=json.dumps(list(access)),
        continue_token_hash=hash_token(continue_value),
        token_id=token.id,
        value_hash=hash_token(token.value),
        expires_at=_expiry(expires_in),
    )
    return grant_id, token, continue_value


async def token_holder(
    pool: asyncpg.Pool, token_id: uuid.UUID, value: str
) -> asyncpg.Record | None:
    """The grant (client, client_jwk, access) of the unrevoked token ``token_id`` whose value
    is ``value``, expired or not (an expired token may still be rotated or revoked, as in
    Rafiki); else None."""
    return await _HOLDER.fetchrow(pool, id=token_id, value_hash=hash_token(value))


async def rotate_token(
    pool: asyncpg.Pool,
    token_id: uuid.UUID,
    value: str,
    expires_in: int = ACCESS_TOKEN_EXPIRY_SECONDS,
) -> IssuedToken | None:
    """Revoke token ``token_id`` (presented as ``value``) and issue its grant a new one; None
    when that token is unknown, revoked or its value wrong. Concurrent rotations of one token:
    only one wins (the UPDATE's row lock)."""
    async with pool.acquire() as conn, conn.transaction():
        grant_id = await _REVOKE.fetchval(conn, id=token_id, value_hash=hash_token(value))
        if grant_id is None:
            return None
        return await issue_token(conn, grant_id, expires_in)


async def revoke_token(pool: asyncpg.Pool, token_id: uuid.UUID, value: str) -> bool:
    """Revoke token ``token_id`` presented as ``value``; False when nothing was revoked."""
    grant_id = await _REVOKE.fetchval(pool, id=token_id, value_hash=hash_token(value))
    return grant_id is not None


async def grant_for_continuation(
    pool: asyncpg.Pool, grant_id: uuid.UUID, value: str
) -> asyncpg.Record | None:
    """The approved grant ``grant_id`` if ``value`` is its continuation token, else None."""
    return await _CONTINUATION.fetchrow(pool, id=grant_id, continue_token_hash=hash_token(value))


async def cancel_grant(pool: asyncpg.Pool, grant_id: uuid.UUID, value: str) -> bool:
    """Finalize grant ``grant_id`` (continuation token ``value``) and revoke its tokens."""
    async with pool.acquire() as conn, conn.transaction():
        cancelled = await _FINALIZE.fetchval(
            conn, id=grant_id, continue_token_hash=hash_token(value)
        )
        if cancelled is None:
            return False
        await _REVOKE_ALL.execute(conn, grant_id=grant_id)
    return True


async def revoke_grant(pool: asyncpg.Pool, grant_id: uuid.UUID) -> bool:
    """Finalize grant ``grant_id`` as REVOKED and revoke its tokens; False when it is unknown
    or already finalized."""
    async with pool.acquire() as conn, conn.transaction():
        revoked = await _REVOKE_GRANT.fetchval(conn, id=grant_id)
        if revoked is None:
            return False
        await _REVOKE_ALL.execute(conn, grant_id=grant_id)
    return True


def _covers(
    access: Sequence[Mapping[str, Any]], kind: str, action: str, identifier: str | None
) -> bool:
    for item in access:
        if item.get("type") != kind or action not in item.get("actions", ()):
            continue
        granted = item.get("identifier")
        if granted is None or identifier is None or granted == identifier:
            return True
    return False


async def introspect(
    pool: asyncpg.Pool,
    token_value: str,
    *required: tuple[str, str, str | None],
) -> GrantInfo | None:
    """The grant an access token value authorizes, when it is active (not revoked, not
    expired, its grant approved) and its access covers every ``(type, action, identifier)`` in
    ``required`` (an identifier of None matches any; a grant without identifier covers all);
    else None. This is what the resource server calls for ``Authorization: GNAP <value>``."""
    row = await _INTROSPECT.fetchrow(pool, value_hash=hash_token(token_value))
    if row is None:
        return None
    access = stored_json(row["access"])
    if not all(_covers(access, *need) for need in required):
        return None
    return GrantInfo(
        row["grant_id"], row["id"], row["client"], access, stored_json(row["client_jwk"])
    )
