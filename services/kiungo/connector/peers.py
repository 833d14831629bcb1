"""The peers this node exchanges packets with, and the routing table they make.

A packet's source is a :class:`PeerInfo`: a peer, or an internal source of this node (an
outgoing payment's packets, a quote's probes; see :func:`internal_source`) that enters the
packet path in-process, debits its own account (or none) and is never a route.

Loaded from Postgres and held in memory for the packet path; every replica reloads when a peer
changes (a message on a Redis channel, with a periodic reload as a fallback). Incoming tokens are
looked up by their SHA-256: the table never holds a token, and a lookup by digest reveals
nothing about the token through its timing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy import select

from kiungo.ledger import AccountKind, account_id_for
from kiungo.models import Asset, Peer, PeerIncomingToken
from kiungo.models.peer import token_hash
from kiungo.models.sql import Statement, table

__all__ = ["PeerInfo", "PeerRegistry", "internal_source"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    id: uuid.UUID
    name: str | None
    static_ilp_address: str
    asset_id: uuid.UUID
    asset_code: str
    asset_scale: int
    http_endpoint: str
    outgoing_token: str
    max_packet_amount: int | None
    routes: tuple[str, ...]
    # The ledger account packets from this source debit (the owner is ``id``); None for a
    # source without money, whose packets must be unfulfillable (a rate probe).
    account_kind: AccountKind | None = AccountKind.PEER_LIQUIDITY
    # This node's own source (not a peer): no per-peer limits, no peer protocols.
    internal: bool = False

    @property
    def account_id(self) -> uuid.UUID | None:
        if self.account_kind is None:
            return None
        return account_id_for(self.account_kind, self.id)


def internal_source(
    owner_id: uuid.UUID,
    asset_id: uuid.UUID,
    asset_code: str,
    asset_scale: int,
    *,
    address: str,
    account_kind: AccountKind | None,
    name: str,
) -> PeerInfo:
    """A source of packets inside this node: ``account_kind`` of ``owner_id`` pays for them
    (an outgoing payment's account), or nothing does (``None``: probes that move no money)."""
    return PeerInfo(
        id=owner_id,
        name=name,
        static_ilp_address=address,
        asset_id=asset_id,
        asset_code=asset_code,
        asset_scale=asset_scale,
        http_endpoint="",
        outgoing_token="",
        max_packet_amount=None,
        routes=(),
        account_kind=account_kind,
        internal=True,
    )


_p = table(Peer).alias("p")
_a = table(Asset).alias("a")
_tokens = table(PeerIncomingToken)
_LOAD_PEERS = Statement(
    select(
        _p.c.id,
        _p.c.name,
        _p.c.static_ilp_address,
        _p.c.asset_id,
        _a.c.code.label("asset_code"),
        _a.c.scale.label("asset_scale"),
        _p.c.http_endpoint,
        _p.c.http_outgoing_token,
        _p.c.max_packet_amount,
        _p.c.routes,
    )
    .select_from(_p.join(_a, _a.c.id == _p.c.asset_id))
    .where(_a.c.deleted_at.is_(None))
)

_LOAD_TOKENS = Statement(select(_tokens.c.peer_id, _tokens.c.token_hash))


class PeerRegistry:
    """Peers by incoming token and by ILP address prefix (longest prefix wins)."""

    def __init__(self) -> None:
        self._by_token: dict[bytes, PeerInfo] = {}
        self._by_prefix: dict[str, PeerInfo] = {}
        self.by_id: dict[uuid.UUID, PeerInfo] = {}

    async def load(self, conn: asyncpg.Connection) -> None:
        peers = {}
        for row in await _LOAD_PEERS.fetch(conn):
            peers[row["id"]] = PeerInfo(
                id=row["id"],
                name=row["name"],
                static_ilp_address=row["static_ilp_address"],
                asset_id=row["asset_id"],
                asset_code=row["asset_code"],
                asset_scale=row["asset_scale"],
                http_endpoint=row["http_endpoint"],
                outgoing_token=row["http_outgoing_token"],
                max_packet_amount=(
                    None if row["max_packet_amount"] is None else int(row["max_packet_amount"])
                ),
                routes=tuple(row["routes"] or ()),
            )
        by_token = {
            bytes(row["token_hash"]): peers[row["peer_id"]]
            for row in await _LOAD_TOKENS.fetch(conn)
            if row["peer_id"] in peers
        }
        by_prefix: dict[str, PeerInfo] = {}
        for peer in peers.values():
            for prefix in (peer.static_ilp_address, *peer.routes):
                by_prefix.setdefault(prefix, peer)
        # Swap whole tables, so a packet never sees half a reload.
        self.by_id, self._by_token, self._by_prefix = peers, by_token, by_prefix

    def authenticate(self, token: bytes) -> PeerInfo | None:
        return self._by_token.get(token_hash(token))

    def route(self, destination: str) -> PeerInfo | None:
        """The peer whose address or route is the longest prefix of ``destination``."""
        candidate = destination
        while True:
            peer = self._by_prefix.get(candidate)
            if peer is not None:
                return peer
            cut = candidate.rfind(".")
            if cut <= 0:
                return None
            candidate = candidate[:cut]
