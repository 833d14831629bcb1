"""``createOrUpdatePeerByUrl``: peering with another node through its auto-peering endpoint
(:mod:`kiungo.backend.auto_peering` does the exchange and makes the peer)."""

from __future__ import annotations

import uuid
from typing import Any

import strawberry

from kiungo.backend import auto_peering
from kiungo.backend import peers as domain
from kiungo.backend.api.common import UInt64, parse_uuid
from kiungo.backend.api.peers import Peer
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, NotFound, Refusal, refusals_as

__all__ = [
    "AutoPeeringMutation",
    "CreateOrUpdatePeerByUrlInput",
    "CreateOrUpdatePeerByUrlMutationResponse",
]

_ERROR = auto_peering.AutoPeeringError
# Rafiki's codes for its auto-peering errors.
_CODES = {
    _ERROR.INVALID_ILP_CONFIGURATION: ErrorCode.BAD_USER_INPUT,
    _ERROR.INVALID_PEER_ILP_CONFIGURATION: ErrorCode.INTERNAL_SERVER_ERROR,
    _ERROR.UNKNOWN_ASSET: ErrorCode.NOT_FOUND,
    _ERROR.PEER_UNSUPPORTED_ASSET: ErrorCode.BAD_USER_INPUT,
    _ERROR.INVALID_PEER_URL: ErrorCode.NOT_FOUND,
    _ERROR.INVALID_PEERING_REQUEST: ErrorCode.BAD_USER_INPUT,
    _ERROR.LIQUIDITY_ERROR: ErrorCode.INTERNAL_SERVER_ERROR,
}
_REFUSALS: tuple[tuple[type[Refusal], ErrorCode], ...] = (
    (domain.InvalidPeer, ErrorCode.BAD_USER_INPUT),
    (NotFound, ErrorCode.NOT_FOUND),
    (domain.PeerExists, ErrorCode.DUPLICATE),
)


@strawberry.input
class CreateOrUpdatePeerByUrlInput:
    max_packet_amount: UInt64 | None = strawberry.field(
        default=None, description="Maximum packet amount that the peer accepts."
    )
    asset_id: str = strawberry.field(
        description="Unique identifier of the asset associated with the peering relationship."
    )
    peer_url: str = strawberry.field(
        description="Peer's URL address, where auto-peering requests are accepted."
    )
    name: str | None = strawberry.field(
        default=None,
        description="Internal name for the peer, used to override auto-peering default names.",
    )
    liquidity_threshold: UInt64 | None = strawberry.field(
        default=None,
        description=(
            "A webhook event will notify the Account Servicing Entity if peer liquidity falls "
            "below this value."
        ),
    )
    liquidity_to_deposit: UInt64 | None = strawberry.field(
        default=None, description="Amount of liquidity to deposit for the peer."
    )
    idempotency_key: str | None = None


@strawberry.type
class CreateOrUpdatePeerByUrlMutationResponse:
    peer: Peer | None = strawberry.field(description="The peer created or updated based on a URL.")


@strawberry.type
class AutoPeeringMutation:
    @strawberry.mutation(
        description=(
            "Create or update a peer using a URL: the node there (its auto-peering endpoint) "
            "makes us its peer and answers with its ILP address, connector URL and a fresh "
            "token; our peer is made or updated with them."
        )
    )
    async def create_or_update_peer_by_url(
        self, info: strawberry.Info[Context, None], input: CreateOrUpdatePeerByUrlInput
    ) -> CreateOrUpdatePeerByUrlMutationResponse:
        ctx = info.context
        asset_id = parse_uuid(input.asset_id, "assetId")
        deposit_id = uuid.uuid4()

        async def run() -> tuple[dict[str, Any], CreateOrUpdatePeerByUrlMutationResponse]:
            with refusals_as(_REFUSALS):
                try:
                    row = await auto_peering.initiate_peering(
                        ctx.backend,
                        peer_url=input.peer_url,
                        asset_id=asset_id,
                        max_packet_amount=input.max_packet_amount,
                        name=input.name,
                        liquidity_threshold=input.liquidity_threshold,
                        liquidity_to_deposit=input.liquidity_to_deposit,
                        deposit_id=deposit_id,
                    )
                except auto_peering.AutoPeeringRefusal as refusal:
                    code = _CODES[refusal.kind]
                    raise ApiError(code, refusal.message, **refusal.details) from None
            return {"id": str(row["id"])}, CreateOrUpdatePeerByUrlMutationResponse(
                peer=Peer.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> CreateOrUpdatePeerByUrlMutationResponse:
            row = await domain.load_peer(ctx.pool, uuid.UUID(record["id"]))
            return CreateOrUpdatePeerByUrlMutationResponse(
                peer=None if row is None else Peer.from_row(row)
            )

        return await ctx.idempotent(
            "createOrUpdatePeerByUrl", input.idempotency_key, input, run, replay
        )
