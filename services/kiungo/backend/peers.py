"""Peers: the nodes we exchange ILP packets with, their tokens, routes and liquidity; the rules
and the storage behind the admin API's peer mutations (:mod:`kiungo.backend.api.peers` is their
GraphQL face).

A peer's incoming tokens are kept only as their SHA-256 (the connector looks them up by digest);
its outgoing token is stored, because the connector sends it. Every change to a peer is
announced on Redis so that each connector reloads its routing table (connectors also reload
periodically, should an announcement be lost). Only the backend changes peers, so this lives in
the backend; the connector reads them with its own routing-table query. Its SQL is built from
the models (:class:`kiungo.models.sql.Statement`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from redis.exceptions import RedisError
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    select,
    update,
)

from kiungo.backend.assets import AssetNotFound
from kiungo.backend.context import Backend
from kiungo.backend.errors import NotFound, Refusal
from kiungo.ilp.address import is_valid_address
from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import Asset, Peer, PeerIncomingToken
from kiungo.models.peer import token_hash
from kiungo.models.sql import Statement, table

__all__ = [
    "PEERS",
    "InvalidPeer",
    "NewPeer",
    "PeerExists",
    "PeerInUse",
    "PeerNotFound",
    "announce",
    "check_address",
    "check_endpoint",
    "check_max_packet_amount",
    "check_name",
    "check_outgoing_token",
    "check_routes",
    "check_thresholds",
    "create_peer",
    "delete_peer",
    "forget_unfunded",
    "incoming_token_digests",
    "initial_liquidity_transfer",
    "load_peer",
    "peer_asset",
    "peer_by_address_and_asset",
    "update_peer",
]

log = logging.getLogger(__name__)

_peers = table(Peer)
_tokens = table(PeerIncomingToken)
_assets = table(Asset)
# The columns a peer is made with and changed through, each bound by its name.
_FIELDS = (
    "name",
    "static_ilp_address",
    "http_endpoint",
    "http_outgoing_token",
    "max_packet_amount",
    "liquidity_threshold",
    "liquidity_threshold_high",
    "routes",
)
# What a peer's row holds for the API.
_PEER_COLUMNS: tuple[ColumnElement[Any], ...] = tuple(
    _peers.c[name] for name in ("id", "asset_id", *_FIELDS, "created_at")
)
PEERS: Select[Any] = select(*_PEER_COLUMNS)
"""Peers' rows, for the caller's conditions."""

_INSERT_TOKEN = Statement(
    insert(_tokens).values(peer_id=bindparam("peer_id"), token_hash=bindparam("token_hash"))
)
_LOAD = Statement(PEERS.where(_peers.c.id == bindparam("id")))
_BY_ADDRESS_AND_ASSET = Statement(
    PEERS.where(
        _peers.c.static_ilp_address == bindparam("address"),
        _peers.c.asset_id == bindparam("asset_id"),
    )
)
_ASSET = Statement(select(_peers.c.asset_id).where(_peers.c.id == bindparam("id")))
# Shared lock: the asset cannot be deleted while its peer is being added.
_SHARE_ASSET = Statement(
    select(_assets.c.id)
    .where(_assets.c.id == bindparam("id"), _assets.c.deleted_at.is_(None))
    .with_for_update(read=True)
)
_CREATE = Statement(
    insert(_peers)
    .values({column: bindparam(column) for column in ("id", "asset_id", *_FIELDS)})
    .returning(*_PEER_COLUMNS)
)
_DELETE = Statement(delete(_peers).where(_peers.c.id == bindparam("id")))
_LOCK = Statement(PEERS.where(_peers.c.id == bindparam("id")).with_for_update())
_UPDATE = Statement(
    update(_peers)
    .where(_peers.c.id == bindparam("id"))
    .values(
        **{field: bindparam(field) for field in _FIELDS},
        liquidity_alert=case(
            (bindparam("forget_alert", type_=Boolean), null()), else_=_peers.c.liquidity_alert
        ),
        updated_at=func.now(),
    )
    .returning(*_PEER_COLUMNS)
)
_DELETE_TOKENS = Statement(delete(_tokens).where(_tokens.c.peer_id == bindparam("peer_id")))
_LOCK_ID = Statement(select(_peers.c.id).where(_peers.c.id == bindparam("id")).with_for_update())
# The initial deposit of a peer has a transfer id derived from the peer's, so it happens once.
_INITIAL_LIQUIDITY = uuid.UUID("3b0f6e2a-5c1d-4e8b-9a7f-2d4c6e8f0a1b")
_MAX_TOKEN = 1024  # peers.http_outgoing_token is a VARCHAR(1024); incoming tokens alike
_MAX_ENDPOINT = 2048
_MAX_NAME = 255


class InvalidPeer(Refusal):
    """The input cannot make or change a peer (the caller's to change)."""


class PeerNotFound(NotFound):
    what = "peer"


class PeerExists(Refusal):
    """The peer, or one of its incoming tokens, would be there twice."""


class PeerInUse(Refusal):
    """The peer cannot be deleted: money or payments still depend on it."""


# -- input checks (each refuses before anything changes) ------------------------------------


def check_address(value: str, field: str) -> str:
    if not is_valid_address(value):
        raise InvalidPeer(f"{field} must be an ILP address such as g.example.peer", field=field)
    return value


def check_routes(routes: list[str] | None) -> list[str]:
    return [check_address(route, "routes") for route in routes or ()]


def check_endpoint(url: str) -> str:
    message = "endpoint must be an http or https URL"
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise InvalidPeer(message, field="endpoint") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(url) > _MAX_ENDPOINT
        or not url.isascii()
        or not url.isprintable()
        or " " in url
    ):
        raise InvalidPeer(message, field="endpoint")
    return url


def _check_token(token: str, name: str) -> None:
    """Tokens, both ways, are 1 to 1024 printable ASCII characters: HTTP implementations agree
    on a header's bytes only within ASCII (Node, so Rafiki, reads and writes other bytes as
    Latin-1, where the digest is of UTF-8), and a control character could end the header."""
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidPeer(f"{name} must be 1 to {_MAX_TOKEN} characters", field=name)
    if not (token.isascii() and token.isprintable()):
        raise InvalidPeer(f"{name} must be printable ASCII", field=name)


def check_outgoing_token(token: str) -> str:
    _check_token(token, "authToken")
    return token


def incoming_token_digests(tokens: list[str] | None) -> list[bytes] | None:
    """The digests of the incoming tokens, or None when they are not given."""
    if tokens is None:
        return None
    for token in tokens:
        _check_token(token, "authTokens")
    digests = [token_hash(token) for token in tokens]
    if len(set(digests)) != len(digests):
        raise PeerExists("an incoming authToken is given twice")
    return digests


def check_max_packet_amount(value: int | None) -> int | None:
    if value == 0:
        raise InvalidPeer("maxPacketAmount must be above zero", field="maxPacketAmount")
    return value


def check_name(value: str | None) -> str | None:
    if value is not None and len(value) > _MAX_NAME:
        raise InvalidPeer(f"name must be at most {_MAX_NAME} characters", field="name")
    return value


def check_thresholds(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and high <= low:
        raise InvalidPeer("liquidityThresholdHigh must be above liquidityThreshold")


@dataclass(frozen=True)
class NewPeer:
    """A peer to create, its fields checked."""

    asset_id: uuid.UUID
    static_ilp_address: str
    routes: list[str]
    http_endpoint: str
    http_outgoing_token: str
    incoming_token_digests: list[bytes]
    max_packet_amount: int | None
    name: str | None
    liquidity_threshold: int | None
    liquidity_threshold_high: int | None


# -- storage ----------------------------------------------------------------------------------


def _exists(exc: asyncpg.UniqueViolationError) -> PeerExists:
    if exc.constraint_name == "uq_peers_address_asset":
        return PeerExists("a peer with this staticIlpAddress and asset already exists")
    return PeerExists("an incoming authToken is already used by a peer")


async def _insert_tokens(
    conn: asyncpg.Connection, peer_id: uuid.UUID, digests: list[bytes]
) -> None:
    await _INSERT_TOKEN.executemany(
        conn, [{"peer_id": peer_id, "token_hash": digest} for digest in digests]
    )


async def announce(backend: Backend) -> None:
    """Tell the connectors; a lost message only delays them until their periodic reload."""
    try:
        await backend.peers_changed()
    except (RedisError, OSError):
        log.warning("could not announce a peer change; connectors reload periodically")


async def load_peer(pool: asyncpg.Pool, peer_id: uuid.UUID) -> asyncpg.Record | None:
    return await _LOAD.fetchrow(pool, id=peer_id)


async def peer_by_address_and_asset(
    pool: asyncpg.Pool, static_ilp_address: str, asset_id: uuid.UUID
) -> asyncpg.Record | None:
    return await _BY_ADDRESS_AND_ASSET.fetchrow(pool, address=static_ilp_address, asset_id=asset_id)


async def peer_asset(pool: asyncpg.Pool, peer_id: uuid.UUID) -> uuid.UUID:
    """The peer's asset; :class:`PeerNotFound` when there is no such peer."""
    asset_id: uuid.UUID | None = await _ASSET.fetchval(pool, id=peer_id)
    if asset_id is None:
        raise PeerNotFound
    return asset_id


async def create_peer(pool: asyncpg.Pool, ledger: Ledger, peer: NewPeer) -> asyncpg.Record:
    """The peer, its incoming tokens and its liquidity account; not announced."""
    peer_id = uuid.uuid4()
    try:
        async with pool.acquire() as conn, conn.transaction():
            asset = await _SHARE_ASSET.fetchval(conn, id=peer.asset_id)
            if asset is None:
                raise AssetNotFound
            row = await _CREATE.fetchrow(
                conn,
                id=peer_id,
                asset_id=peer.asset_id,
                **{field: getattr(peer, field) for field in _FIELDS},
            )
            await _insert_tokens(conn, peer_id, peer.incoming_token_digests)
    except asyncpg.UniqueViolationError as exc:
        raise _exists(exc) from None
    assert row is not None
    await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, peer_id, peer.asset_id)
    return row


def initial_liquidity_transfer(peer_id: uuid.UUID) -> uuid.UUID:
    """The id of the peer's initial deposit."""
    return uuid.uuid5(_INITIAL_LIQUIDITY, str(peer_id))


async def forget_unfunded(
    pool: asyncpg.Pool, ledger: Ledger, peer_id: uuid.UUID, transfer: uuid.UUID
) -> bool:
    """After its initial deposit failed: delete the peer unless the deposit did happen after
    all, so that the caller's retry (same idempotencyKey) finds nothing in its way. Whether it
    was deleted."""
    if await ledger.transfer(transfer) is not None:
        return False
    await _DELETE.execute(pool, id=peer_id)
    return True


def _u64(value: Any) -> int | None:
    return None if value is None else int(value)


async def update_peer(
    pool: asyncpg.Pool,
    peer_id: uuid.UUID,
    changes: dict[str, Any],
    digests: list[bytes] | None,
) -> asyncpg.Record:
    """Set the changed columns (the others kept) and, when ``digests`` is given, replace every
    incoming token; a changed threshold forgets the liquidity alert, so it is checked afresh.
    Not announced."""
    thresholds_changed = bool({"liquidity_threshold", "liquidity_threshold_high"} & changes.keys())
    try:
        async with pool.acquire() as conn, conn.transaction():
            current = await _LOCK.fetchrow(conn, id=peer_id)
            if current is None:
                raise PeerNotFound
            merged = {**dict(current), **changes}
            check_thresholds(
                _u64(merged["liquidity_threshold"]),
                _u64(merged["liquidity_threshold_high"]),
            )
            row = await _UPDATE.fetchrow(
                conn,
                id=peer_id,
                forget_alert=thresholds_changed,
                **{field: merged[field] for field in _FIELDS},
            )
            if digests is not None:
                await _DELETE_TOKENS.execute(conn, peer_id=peer_id)
                await _insert_tokens(conn, peer_id, digests)
    except asyncpg.UniqueViolationError as exc:
        raise _exists(exc) from None
    assert row is not None
    return row


async def delete_peer(pool: asyncpg.Pool, ledger: Ledger, peer_id: uuid.UUID) -> None:
    """Delete the peer and its incoming tokens; :class:`PeerInUse` while its liquidity account
    holds money or has pending withdrawals, or once payments were sent through it. Not
    announced."""
    account = account_id_for(AccountKind.PEER_LIQUIDITY, peer_id)
    try:
        async with pool.acquire() as conn, conn.transaction():
            found = await _LOCK_ID.fetchval(conn, id=peer_id)
            if found is None:
                raise PeerNotFound
            # Locked, so no ledger batch moves the account's money while we decide.
            await ledger.sync_balances(conn, [account])
            if await ledger_reads.account_holds_anything(conn, account):
                raise PeerInUse(
                    "the peer's liquidity account has a balance or pending transfers: "
                    "withdraw its liquidity (and post or void pending withdrawals) first",
                )
            await _DELETE.execute(conn, id=peer_id)
    except asyncpg.ForeignKeyViolationError:
        raise PeerInUse("outgoing payments were sent through the peer") from None
