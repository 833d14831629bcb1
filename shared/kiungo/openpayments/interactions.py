"""Interactive grants (GNAP redirect interaction, RFC 9635 §4, as Open Payments and Rafiki's
auth service run it): a grant that needs the account holder's consent is created PROCESSING
with an interaction (:func:`create_interactive_grant`); the client's browser starts it (the
grant goes PENDING, :func:`start`) and is sent to the operator's identity provider, which reads
the grant (:func:`find`) and accepts or rejects it (:func:`choose`); the browser comes back
(:func:`finish`: an accepted grant becomes APPROVED, a rejected one FINALIZED) and goes on to
the client's finish URI with the interaction hash (:func:`interaction_hash`) and reference,
which the client presents once at continuation for its access token (:func:`continue_grant`).

Every change is one conditional UPDATE (or two in a transaction), so a race between two
accepts, or an accept and an expiry, has exactly one outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, insert, null, select, update

from kiungo.models import Grant, GrantState
from kiungo.models.sql import Statement, table
from kiungo.openpayments import grants as grants_
from kiungo.openpayments.grants import (
    APPROVED,
    FINALIZED,
    ISSUED,
    PENDING,
    REJECTED,
    IssuedToken,
    hash_token,
    new_value,
)

__all__ = [
    "INTERACTION_EXPIRY_SECONDS",
    "Choice",
    "Created",
    "choose",
    "continue_grant",
    "create_interactive_grant",
    "find",
    "finish",
    "interaction_hash",
    "new_session",
    "revoked",
    "same_session",
    "start",
]

# Rafiki's INTERACTION_EXPIRY_SECONDS default.
INTERACTION_EXPIRY_SECONDS = 600
# Interaction states (Rafiki's InteractionState).
I_PENDING = "PENDING"
I_APPROVED = "APPROVED"
I_DENIED = "DENIED"

_grants = table(Grant)
_c = _grants.c

_INSERT = Statement(
    insert(_grants).values(
        id=bindparam("id"),
        client=bindparam("client"),
        client_jwk=bindparam("client_jwk"),
        access=bindparam("access"),
        state=GrantState.PROCESSING.value,
        continue_token_hash=bindparam("continue_token_hash"),
        interact_id=bindparam("interact_id"),
        interact_nonce=bindparam("interact_nonce"),
        interact_state=I_PENDING,
        interact_expires_at=bindparam("interact_expires_at"),
        client_nonce=bindparam("client_nonce"),
        finish_uri=bindparam("finish_uri"),
    )
)
_addressed = (_c.interact_id == bindparam("interact_id")) & (
    _c.interact_nonce == bindparam("interact_nonce")
)
_FIND = Statement(
    select(
        _c.id,
        _c.client,
        _c.access,
        _c.state,
        _c.finalization_reason,
        _c.interact_state,
        _c.interact_ref,
        _c.interact_session_hash,
        _c.client_nonce,
        _c.finish_uri,
        (_c.interact_expires_at <= func.now()).label("expired"),
    ).where(_addressed)
)
# An interaction still open: waiting for the end user's choice, its grant undecided, in time.
_OPEN = update(_grants).where(
    _addressed,
    _c.interact_state == I_PENDING,
    _c.state.in_((GrantState.PROCESSING.value, PENDING)),
    _c.interact_expires_at > func.now(),
)
_START = Statement(
    _OPEN.values(
        state=PENDING,
        interact_session_hash=bindparam("session_hash"),
        updated_at=func.now(),
    ).returning(_c.id)
)
_CHOOSE = Statement(
    _OPEN.values(
        interact_state=bindparam("choice"),
        interact_ref=bindparam("new_ref"),
        updated_at=func.now(),
    ).returning(_c.id)
)
# The browser's return: an accepted interaction approves its grant, a denied one rejects it.
_APPROVE = Statement(
    update(_grants)
    .where(
        _addressed,
        _c.interact_state == I_APPROVED,
        _c.state.in_((GrantState.PROCESSING.value, PENDING)),
    )
    .values(state=APPROVED, updated_at=func.now())
    .returning(_c.id)
)
_REJECT = Statement(
    update(_grants)
    .where(
        _addressed,
        _c.interact_state == I_DENIED,
        _c.state.in_((GrantState.PROCESSING.value, PENDING)),
    )
    .values(state=FINALIZED, finalization_reason=REJECTED, updated_at=func.now())
    .returning(_c.id)
)
# Continuation with the interaction reference: used once (the reference is cleared).
_CONSUME_REF = Statement(
    update(_grants)
    .where(
        _c.id == bindparam("id"),
        _c.continue_token_hash == bindparam("continue_token_hash"),
        _c.state == APPROVED,
        _c.interact_ref == bindparam("ref"),
    )
    .values(interact_ref=null(), updated_at=func.now())
    .returning(_c.id)
)


@dataclass(frozen=True)
class Created:
    grant_id: uuid.UUID
    interact_id: uuid.UUID
    interact_nonce: str
    continue_value: str


class Choice:
    ACCEPT = "accept"
    REJECT = "reject"


def new_session() -> str:
    """A browser session value for an interaction's cookie."""
    return new_value()


def same_session(grant: Mapping[str, Any], session: str) -> bool:
    """Whether ``session`` is the cookie set when ``grant``'s interaction started."""
    stored = grant["interact_session_hash"]
    return stored is not None and hmac.compare_digest(stored, hash_token(session))


def revoked(grant: Mapping[str, Any]) -> bool:
    """Whether the grant ended other than by issuing its token (cancelled, revoked, rejected)."""
    return bool(grant["state"] == FINALIZED and grant["finalization_reason"] != ISSUED)


def interaction_hash(
    client_nonce: str, interact_nonce: str, interact_ref: str, grant_url: str
) -> str:
    """The ``hash`` of the finish redirect: SHA-256 over the client's nonce, the server's
    nonce, the interaction reference and the grant endpoint URL, each on its own line (RFC 9635
    §4.2.3), base64-encoded as Rafiki encodes it (standard alphabet, padded), which is what
    Open Payments clients check."""
    data = f"{client_nonce}\n{interact_nonce}\n{interact_ref}\n{grant_url}".encode()
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def create_interactive_grant(
    pool: asyncpg.Pool,
    client: str,
    access: Sequence[Mapping[str, Any]],
    client_jwk: Mapping[str, str] | None,
    client_nonce: str,
    finish_uri: str,
    expires_in: int = INTERACTION_EXPIRY_SECONDS,
) -> Created:
    """A PROCESSING grant awaiting consent, with its interaction."""
    created = Created(uuid.uuid4(), uuid.uuid4(), new_value(), new_value())
    await _INSERT.execute(
        pool,
        id=created.grant_id,
        client=client,
        client_jwk=None if client_jwk is None else json.dumps(dict(client_jwk)),
        access=json.dumps(list(access)),
        continue_token_hash=hash_token(created.continue_value),
        interact_id=created.interact_id,
        interact_nonce=created.interact_nonce,
        interact_expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        client_nonce=client_nonce,
        finish_uri=finish_uri,
    )
    return created


async def find(
    pool: asyncpg.Pool, interact_id: uuid.UUID, interact_nonce: str
) -> asyncpg.Record | None:
    """The grant of interaction ``interact_id`` addressed with its nonce, else None."""
    return await _FIND.fetchrow(pool, interact_id=interact_id, interact_nonce=interact_nonce)


async def start(
    pool: asyncpg.Pool, interact_id: uuid.UUID, interact_nonce: str, session: str
) -> bool:
    """Mark the grant PENDING (the account holder is being asked) in the browser session
    ``session``; False when the interaction is unknown, decided, expired or its grant ended."""
    started = await _START.fetchval(
        pool,
        interact_id=interact_id,
        interact_nonce=interact_nonce,
        session_hash=hash_token(session),
    )
    return started is not None


async def choose(
    pool: asyncpg.Pool, interact_id: uuid.UUID, interact_nonce: str, accept: bool
) -> bool:
    """Record the account holder's answer; False when the interaction is not pending (or
    expired, or its grant ended)."""
    chosen = await _CHOOSE.fetchval(
        pool,
        interact_id=interact_id,
        interact_nonce=interact_nonce,
        choice=I_APPROVED if accept else I_DENIED,
        new_ref=new_value() if accept else None,
    )
    return chosen is not None


async def finish(
    pool: asyncpg.Pool, interact_id: uuid.UUID, interact_nonce: str, state: str | None
) -> None:
    """Settle the grant after the interaction ended in ``state`` (APPROVED: approve it;
    DENIED: finalize it REJECTED)."""
    if state == I_APPROVED:
        await _APPROVE.execute(pool, interact_id=interact_id, interact_nonce=interact_nonce)
    elif state == I_DENIED:
        await _REJECT.execute(pool, interact_id=interact_id, interact_nonce=interact_nonce)


async def continue_grant(
    pool: asyncpg.Pool,
    grant_id: uuid.UUID,
    continue_value: str,
    interact_ref: str,
    expires_in: int = grants_.ACCESS_TOKEN_EXPIRY_SECONDS,
) -> IssuedToken | None:
    """The access token of approved grant ``grant_id`` for the interaction reference
    ``interact_ref`` (used once); None when the grant is not approved or the reference is
    wrong or already used."""
    async with pool.acquire() as conn, conn.transaction():
        consumed = await _CONSUME_REF.fetchval(
            conn,
            id=grant_id,
            continue_token_hash=hash_token(continue_value),
            ref=interact_ref,
        )
        if consumed is None:
            return None
        return await grants_.issue_token(conn, grant_id, expires_in)
