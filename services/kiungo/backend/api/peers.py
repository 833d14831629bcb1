"""Peers in the admin API: the GraphQL types and inputs; the rules and storage (tokens, routes,
the announcement to the connectors) are :mod:`kiungo.backend.peers`. The outgoing token is never
returned in full.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import strawberry

from kiungo.backend import peers as domain
from kiungo.backend.api.assets import Asset, load_asset
from kiungo.backend.api.common import PageInfo, UInt64, iso, parse_uuid
from kiungo.backend.api.liquidity import deposit
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, paged
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.backend.errors import (
    ApiError,
    ErrorCode,
    NotFound,
    Refusal,
    bad_input,
    not_found,
    refusals_as,
)
from kiungo.ledger import AccountKind

__all__ = ["Peer", "PeerMutation", "PeerQuery", "mask_token"]

# What each refusal of the peer domain is in the API.
_REFUSALS: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.InvalidPeer, ErrorCode.BAD_USER_INPUT),
    (NotFound, ErrorCode.NOT_FOUND),
    (domain.PeerExists, ErrorCode.DUPLICATE),
    (domain.PeerInUse, ErrorCode.FORBIDDEN),
)
_MASK_SHOWN = 4
_MASK_MIN_LENGTH = 16
_PEERS = Listing(domain.PEERS)


def mask_token(token: str) -> str:
    """The outgoing token as the API shows it: its first 4 characters and "…" when it has 16 or
    more, otherwise one "*" per character. Never the token itself."""
    if len(token) >= _MASK_MIN_LENGTH:
        return token[:_MASK_SHOWN] + "…"
    return "*" * len(token)


def _u64(value: Any) -> int | None:
    return None if value is None else int(value)


@strawberry.type
class HttpOutgoing:
    auth_token: str = strawberry.field(
        description=(
            "The token we send to the peer, masked: its first 4 characters and '…' when it has "
            "16 or more characters, otherwise one '*' per character. It is never returned in full."
        )
    )
    endpoint: str = strawberry.field(description="The peer's ILP-over-HTTP URL.")


@strawberry.type
class Http:
    outgoing: HttpOutgoing


@strawberry.type
class Peer:
    id: strawberry.ID
    max_packet_amount: UInt64 | None = strawberry.field(
        description="The largest packet amount the peer accepts; none when unlimited."
    )
    http: Http
    static_ilp_address: str
    name: str | None
    liquidity_threshold: UInt64 | None = strawberry.field(
        description="A webhook event (peer.liquidity_low) fires when liquidity falls below this."
    )
    liquidity_threshold_high: UInt64 | None = strawberry.field(
        description="A webhook event (peer.liquidity_high) fires when liquidity rises above this."
    )
    routes: list[str] = strawberry.field(
        description="ILP address prefixes routed to the peer besides its static address."
    )
    created_at: str
    _uuid: strawberry.Private[uuid.UUID]
    _asset_id: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Peer:
        return cls(
            id=strawberry.ID(str(row["id"])),
            max_packet_amount=_u64(row["max_packet_amount"]),
            http=Http(
                outgoing=HttpOutgoing(
                    auth_token=mask_token(row["http_outgoing_token"]),
                    endpoint=row["http_endpoint"],
                )
            ),
            static_ilp_address=row["static_ilp_address"],
            name=row["name"],
            liquidity_threshold=_u64(row["liquidity_threshold"]),
            liquidity_threshold_high=_u64(row["liquidity_threshold_high"]),
            routes=list(row["routes"] or ()),
            created_at=iso(row["created_at"]),
            _uuid=row["id"],
            _asset_id=row["asset_id"],
        )

    @strawberry.field(description="The asset the peer is settled in.")
    async def asset(self, info: strawberry.Info[Context, None]) -> Asset:
        return Asset.from_row(await load_asset(info.context, self._asset_id, deleted=True))

    @strawberry.field(description="Liquidity available to send to the peer.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        return await info.context.backend.available(AccountKind.PEER_LIQUIDITY, self._uuid)


@strawberry.type
class PeerEdge:
    node: Peer
    cursor: str


@strawberry.type
class PeersConnection:
    page_info: PageInfo
    edges: list[PeerEdge]


@strawberry.type
class PeerQuery:
    @strawberry.field(description="Fetch a peer by its id.")
    async def peer(self, info: strawberry.Info[Context, None], id: str) -> Peer | None:
        row = await domain.load_peer(info.context.pool, parse_uuid(id, "id"))
        if row is None:
            raise not_found("peer")
        return Peer.from_row(row)

    @strawberry.field(description="The peer with this static ILP address and asset, if any.")
    async def peer_by_address_and_asset(
        self, info: strawberry.Info[Context, None], static_ilp_address: str, asset_id: str
    ) -> Peer | None:
        row = await domain.peer_by_address_and_asset(
            info.context.pool, static_ilp_address, parse_uuid(asset_id, "assetId")
        )
        return None if row is None else Peer.from_row(row)

    @strawberry.field(description="A page of peers, newest first unless sortOrder says ASC.")
    @paged
    async def peers(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        tenant_id: strawberry.ID | None = None,
    ) -> PeersConnection:
        check_tenant(info.context, tenant_id)
        rows, page_info, cursors = await fetch_listing(info.context.pool, _PEERS, page)
        return connection(PeersConnection, PeerEdge, Peer.from_row, rows, page_info, cursors)


@strawberry.input
class HttpIncomingInput:
    auth_tokens: list[str] = strawberry.field(
        description=(
            "The tokens the peer may send us (1 to 1024 printable ASCII characters each); kept "
            "only as their SHA-256."
        )
    )


@strawberry.input
class HttpOutgoingInput:
    auth_token: str = strawberry.field(
        description="The token we send to the peer (1 to 1024 printable ASCII characters)."
    )
    endpoint: str = strawberry.field(description="The peer's ILP-over-HTTP URL (http or https).")


@strawberry.input
class HttpInput:
    incoming: HttpIncomingInput | None = None
    outgoing: HttpOutgoingInput


@strawberry.input
class CreatePeerInput:
    max_packet_amount: UInt64 | None = None
    http: HttpInput
    asset_id: str
    static_ilp_address: str
    name: str | None = None
    liquidity_threshold: UInt64 | None = None
    liquidity_threshold_high: UInt64 | None = None
    routes: list[str] | None = None
    initial_liquidity: UInt64 | None = strawberry.field(
        default=None, description="Deposited into the peer's liquidity once it exists."
    )
    idempotency_key: str | None = None


@strawberry.input
class UpdatePeerInput:
    id: str
    max_packet_amount: UInt64 | None = strawberry.UNSET
    http: HttpInput | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "Replaces the outgoing token and endpoint and, when incoming is given, every "
            "incoming token."
        ),
    )
    static_ilp_address: str | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    liquidity_threshold: UInt64 | None = strawberry.UNSET
    liquidity_threshold_high: UInt64 | None = strawberry.UNSET
    routes: list[str] | None = strawberry.UNSET
    idempotency_key: str | None = None


@strawberry.input
class DeletePeerInput:
    id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.type
class CreatePeerMutationResponse:
    peer: Peer | None


@strawberry.type
class UpdatePeerMutationResponse:
    peer: Peer | None


@strawberry.type
class DeletePeerMutationResponse:
    success: bool


async def _peer_by_id(ctx: Context, record: dict[str, Any]) -> Peer | None:
    row = await domain.load_peer(ctx.pool, uuid.UUID(record["id"]))
    return None if row is None else Peer.from_row(row)


def _new_peer(input: CreatePeerInput) -> domain.NewPeer:
    incoming = input.http.incoming
    return domain.NewPeer(
        asset_id=parse_uuid(input.asset_id, "assetId"),
        static_ilp_address=domain.check_address(input.static_ilp_address, "staticIlpAddress"),
        routes=domain.check_routes(input.routes),
        http_endpoint=domain.check_endpoint(input.http.outgoing.endpoint),
        http_outgoing_token=domain.check_outgoing_token(input.http.outgoing.auth_token),
        incoming_token_digests=domain.incoming_token_digests(
            None if incoming is None else incoming.auth_tokens
        )
        or [],
        max_packet_amount=domain.check_max_packet_amount(input.max_packet_amount),
        name=domain.check_name(input.name),
        liquidity_threshold=input.liquidity_threshold,
        liquidity_threshold_high=input.liquidity_threshold_high,
    )


def _changes(input: UpdatePeerInput) -> tuple[dict[str, Any], list[bytes] | None]:
    """The columns the update sets (an omitted field is not among them) and, when http is given,
    the digests of the incoming tokens that replace the peer's."""
    changes: dict[str, Any] = {}
    if input.static_ilp_address is None:
        raise bad_input("staticIlpAddress cannot be null", field="staticIlpAddress")
    if input.static_ilp_address is not strawberry.UNSET:
        changes["static_ilp_address"] = domain.check_address(
            input.static_ilp_address, "staticIlpAddress"
        )
    if input.max_packet_amount is not strawberry.UNSET:
        changes["max_packet_amount"] = domain.check_max_packet_amount(input.max_packet_amount)
    if input.name is not strawberry.UNSET:
        changes["name"] = domain.check_name(input.name)
    if input.liquidity_threshold is not strawberry.UNSET:
        changes["liquidity_threshold"] = input.liquidity_threshold
    if input.liquidity_threshold_high is not strawberry.UNSET:
        changes["liquidity_threshold_high"] = input.liquidity_threshold_high
    if input.routes is not strawberry.UNSET:
        changes["routes"] = domain.check_routes(input.routes)
    if input.http is None:
        raise bad_input("http cannot be null", field="http")
    digests: list[bytes] | None = None
    if input.http is not strawberry.UNSET:
        changes["http_endpoint"] = domain.check_endpoint(input.http.outgoing.endpoint)
        changes["http_outgoing_token"] = domain.check_outgoing_token(input.http.outgoing.auth_token)
        incoming = input.http.incoming
        digests = domain.incoming_token_digests(None if incoming is None else incoming.auth_tokens)
    return changes, digests


@strawberry.type
class PeerMutation:
    @strawberry.mutation(
        description="Create a peer with its incoming tokens and liquidity account."
    )
    async def create_peer(
        self, info: strawberry.Info[Context, None], input: CreatePeerInput
    ) -> CreatePeerMutationResponse:
        ctx = info.context
        with refusals_as(_REFUSALS):
            peer = _new_peer(input)
            domain.check_thresholds(peer.liquidity_threshold, peer.liquidity_threshold_high)

        async def run() -> tuple[dict[str, Any], CreatePeerMutationResponse]:
            with refusals_as(_REFUSALS):
                row = await domain.create_peer(ctx.pool, ctx.ledger, peer)
            peer_id: uuid.UUID = row["id"]
            if input.initial_liquidity:
                transfer = domain.initial_liquidity_transfer(peer_id)
                try:
                    await deposit(
                        ctx,
                        AccountKind.PEER_LIQUIDITY,
                        peer_id,
                        peer.asset_id,
                        transfer,
                        input.initial_liquidity,
                    )
                except ApiError:
                    if await domain.forget_unfunded(ctx.pool, ctx.ledger, peer_id, transfer):
                        await domain.announce(ctx.backend)
                        raise
            await domain.announce(ctx.backend)
            return {"id": str(peer_id)}, CreatePeerMutationResponse(peer=Peer.from_row(row))

        async def replay(record: dict[str, Any]) -> CreatePeerMutationResponse:
            return CreatePeerMutationResponse(peer=await _peer_by_id(ctx, record))

        return await ctx.idempotent("createPeer", input.idempotency_key, input, run, replay)

    @strawberry.mutation(
        description="Change a peer: an omitted field is kept, null clears a nullable one."
    )
    async def update_peer(
        self, info: strawberry.Info[Context, None], input: UpdatePeerInput
    ) -> UpdatePeerMutationResponse:
        ctx = info.context
        peer_id = parse_uuid(input.id, "id")
        with refusals_as(_REFUSALS):
            changes, digests = _changes(input)

        async def run() -> tuple[dict[str, Any], UpdatePeerMutationResponse]:
            with refusals_as(_REFUSALS):
                row = await domain.update_peer(ctx.pool, peer_id, changes, digests)
            await domain.announce(ctx.backend)
            return {"id": str(peer_id)}, UpdatePeerMutationResponse(peer=Peer.from_row(row))

        async def replay(record: dict[str, Any]) -> UpdatePeerMutationResponse:
            return UpdatePeerMutationResponse(peer=await _peer_by_id(ctx, record))

        return await ctx.idempotent("updatePeer", input.idempotency_key, input, run, replay)

    @strawberry.mutation(
        description=(
            "Delete a peer and its incoming tokens; refused while its liquidity account holds "
            "money or has pending withdrawals."
        )
    )
    async def delete_peer(
        self, info: strawberry.Info[Context, None], input: DeletePeerInput
    ) -> DeletePeerMutationResponse:
        ctx = info.context
        peer_id = parse_uuid(str(input.id), "id")

        async def run() -> tuple[dict[str, Any], DeletePeerMutationResponse]:
            with refusals_as(_REFUSALS):
                await domain.delete_peer(ctx.pool, ctx.ledger, peer_id)
            await domain.announce(ctx.backend)
            return {"id": str(peer_id)}, DeletePeerMutationResponse(success=True)

        async def replay(_record: dict[str, Any]) -> DeletePeerMutationResponse:
            return DeletePeerMutationResponse(success=True)

        return await ctx.idempotent("deletePeer", input.idempotency_key, input, run, replay)
