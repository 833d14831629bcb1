"""Peers: the nodes we exchange ILP packets with, their tokens, routes and liquidity.

A peer's incoming tokens are kept only as their SHA-256 (the connector looks them up by digest);
its outgoing token is stored, because the connector sends it, but the API never returns it in
full. Every change to a peer is announced on Redis so that each connector reloads its routing
table (connectors also reload periodically, should an announcement be lost).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import strawberry
from redis.exceptions import RedisError

from kiungo.backend.api.assets import Asset, load_asset
from kiungo.backend.api.common import PageInfo, SortOrder, UInt64, iso, parse_uuid
from kiungo.backend.api.liquidity import (
    LiquidityMutationResponse,
    deposit,
    replay_success,
    success_response,
    transfer_id,
    withdraw,
)
from kiungo.backend.api.pagination import PageRequest, fetch_page
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input, not_found
from kiungo.ilp.address import is_valid_address
from kiungo.ledger import AccountKind, account_id_for

__all__ = ["Peer", "PeerMutation", "PeerQuery", "mask_token", "token_hash"]

log = logging.getLogger(__name__)

_PEER_COLUMNS = (
    "id, asset_id, name, static_ilp_address, http_endpoint, http_outgoing_token, "
    "max_packet_amount, liquidity_threshold, liquidity_threshold_high, routes, created_at"
)
# The initial deposit of a peer has a transfer id derived from the peer's, so it happens once.
_INITIAL_LIQUIDITY = uuid.UUID("3b0f6e2a-5c1d-4e8b-9a7f-2d4c6e8f0a1b")
_MAX_TOKEN = 1024  # peers.http_outgoing_token is a VARCHAR(1024); incoming tokens alike
_MAX_ENDPOINT = 2048
_MAX_NAME = 255
_MASK_SHOWN = 4
_MASK_MIN_LENGTH = 16


def token_hash(token: str) -> bytes:
    """What ``peer_incoming_tokens.token_hash`` holds: the SHA-256 of the token's bytes as a
    peer sends them (the connector hashes the header's bytes)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


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


async def _load_peer(ctx: Context, peer_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await ctx.pool.fetchrow(
        f"SELECT {_PEER_COLUMNS} FROM peers WHERE id = $1", peer_id
    )
    return row


@strawberry.type
class PeerQuery:
    @strawberry.field(description="Fetch a peer by its id.")
    async def peer(self, info: strawberry.Info[Context, None], id: str) -> Peer | None:
        row = await _load_peer(info.context, parse_uuid(id, "id"))
        if row is None:
            raise not_found("peer")
        return Peer.from_row(row)

    @strawberry.field(description="The peer with this static ILP address and asset, if any.")
    async def peer_by_address_and_asset(
        self, info: strawberry.Info[Context, None], static_ilp_address: str, asset_id: str
    ) -> Peer | None:
        row = await info.context.pool.fetchrow(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE static_ilp_address = $1 AND asset_id = $2",
            static_ilp_address,
            parse_uuid(asset_id, "assetId"),
        )
        return None if row is None else Peer.from_row(row)

    @strawberry.field(description="A page of peers, newest first unless sortOrder says ASC.")
    async def peers(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
    ) -> PeersConnection:
        rows, page_info, cursors = await fetch_page(
            info.context.pool,
            f"SELECT {_PEER_COLUMNS} FROM peers",
            [],
            [],
            PageRequest(first, last, after, before, sort_order),
        )
        return PeersConnection(
            page_info=page_info,
            edges=[
                PeerEdge(node=Peer.from_row(r), cursor=c)
                for r, c in zip(rows, cursors, strict=True)
            ],
        )


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


@strawberry.input
class DepositPeerLiquidityInput:
    peer_id: str
    amount: UInt64
    id: str
    idempotency_key: str


@strawberry.input
class CreatePeerLiquidityWithdrawalInput:
    peer_id: str
    amount: UInt64
    id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.type
class CreatePeerMutationResponse:
    peer: Peer | None


@strawberry.type
class UpdatePeerMutationResponse:
    peer: Peer | None


@strawberry.type
class DeletePeerMutationResponse:
    success: bool


# -- input checks (each a BAD_USER_INPUT or DUPLICATE before anything changes) ----------------


def _address(value: str, field: str) -> str:
    if not is_valid_address(value):
        raise bad_input(f"{field} must be an ILP address such as g.example.peer", field=field)
    return value


def _routes(routes: list[str] | None) -> list[str]:
    return [_address(route, "routes") for route in routes or ()]


def _endpoint(url: str) -> str:
    message = "endpoint must be an http or https URL"
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise bad_input(message, field="endpoint") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(url) > _MAX_ENDPOINT
        or not url.isascii()
        or not url.isprintable()
        or " " in url
    ):
        raise bad_input(message, field="endpoint")
    return url


def _check_token(token: str, name: str) -> None:
    """Tokens, both ways, are 1 to 1024 printable ASCII characters: HTTP implementations agree
    on a header's bytes only within ASCII (Node, so Rafiki, reads and writes other bytes as
    Latin-1, where the digest is of UTF-8), and a control character could end the header."""
    if not token or len(token) > _MAX_TOKEN:
        raise bad_input(f"{name} must be 1 to {_MAX_TOKEN} characters", field=name)
    if not (token.isascii() and token.isprintable()):
        raise bad_input(f"{name} must be printable ASCII", field=name)


def _outgoing_token(token: str) -> str:
    _check_token(token, "authToken")
    return token


def _incoming_tokens(incoming: HttpIncomingInput | None) -> list[bytes] | None:
    """The digests of the incoming tokens, or None when they are not given."""
    if incoming is None:
        return None
    for token in incoming.auth_tokens:
        _check_token(token, "authTokens")
    digests = [token_hash(token) for token in incoming.auth_tokens]
    if len(set(digests)) != len(digests):
        raise ApiError(ErrorCode.DUPLICATE, "an incoming authToken is given twice")
    return digests


def _max_packet_amount(value: int | None) -> int | None:
    if value == 0:
        raise bad_input("maxPacketAmount must be above zero", field="maxPacketAmount")
    return value


def _name(value: str | None) -> str | None:
    if value is not None and len(value) > _MAX_NAME:
        raise bad_input(f"name must be at most {_MAX_NAME} characters", field="name")
    return value


def _thresholds(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and high <= low:
        raise bad_input("liquidityThresholdHigh must be above liquidityThreshold")


def _duplicate(exc: asyncpg.UniqueViolationError) -> ApiError:
    if exc.constraint_name == "uq_peers_address_asset":
        return ApiError(
            ErrorCode.DUPLICATE, "a peer with this staticIlpAddress and asset already exists"
        )
    return ApiError(ErrorCode.DUPLICATE, "an incoming authToken is already used by a peer")


async def _insert_tokens(
    conn: asyncpg.Connection, peer_id: uuid.UUID, digests: list[bytes]
) -> None:
    await conn.executemany(
        "INSERT INTO peer_incoming_tokens (id, peer_id, token_hash) VALUES ($1, $2, $3)",
        [(uuid.uuid4(), peer_id, digest) for digest in digests],
    )


async def _announce(ctx: Context) -> None:
    """Tell the connectors; a lost message only delays them until their periodic reload."""
    try:
        await ctx.backend.peers_changed()
    except (RedisError, OSError):
        log.warning("could not announce a peer change; connectors reload periodically")


async def _peer_by_id(ctx: Context, record: dict[str, Any]) -> Peer | None:
    row = await _load_peer(ctx, uuid.UUID(record["id"]))
    return None if row is None else Peer.from_row(row)


async def _peer_asset(ctx: Context, peer_id: uuid.UUID) -> uuid.UUID:
    asset_id: uuid.UUID | None = await ctx.pool.fetchval(
        "SELECT asset_id FROM peers WHERE id = $1", peer_id
    )
    if asset_id is None:
        raise not_found("peer")
    return asset_id


@strawberry.type
class PeerMutation:
    @strawberry.mutation(
        description="Create a peer with its incoming tokens and liquidity account."
    )
    async def create_peer(
        self, info: strawberry.Info[Context, None], input: CreatePeerInput
    ) -> CreatePeerMutationResponse:
        ctx = info.context
        asset_id = parse_uuid(input.asset_id, "assetId")
        address = _address(input.static_ilp_address, "staticIlpAddress")
        routes = _routes(input.routes)
        endpoint = _endpoint(input.http.outgoing.endpoint)
        outgoing = _outgoing_token(input.http.outgoing.auth_token)
        digests = _incoming_tokens(input.http.incoming) or []
        max_packet = _max_packet_amount(input.max_packet_amount)
        name = _name(input.name)
        _thresholds(input.liquidity_threshold, input.liquidity_threshold_high)

        async def run() -> tuple[dict[str, Any], CreatePeerMutationResponse]:
            peer_id = uuid.uuid4()
            try:
                async with ctx.pool.acquire() as conn, conn.transaction():
                    # Shared lock: the asset cannot be deleted while its peer is being added.
                    asset = await conn.fetchval(
                        "SELECT id FROM assets WHERE id = $1 AND deleted_at IS NULL FOR SHARE",
                        asset_id,
                    )
                    if asset is None:
                        raise not_found("asset")
                    row = await conn.fetchrow(
                        "INSERT INTO peers (id, asset_id, name, static_ilp_address, http_endpoint, "
                        "http_outgoing_token, max_packet_amount, liquidity_threshold, "
                        "liquidity_threshold_high, routes) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                        f"RETURNING {_PEER_COLUMNS}",
                        peer_id,
                        asset_id,
                        name,
                        address,
                        endpoint,
                        outgoing,
                        max_packet,
                        input.liquidity_threshold,
                        input.liquidity_threshold_high,
                        routes,
                    )
                    await _insert_tokens(conn, peer_id, digests)
            except asyncpg.UniqueViolationError as exc:
                raise _duplicate(exc) from None
            assert row is not None
            await ctx.ledger.ensure_account(AccountKind.PEER_LIQUIDITY, peer_id, asset_id)
            if input.initial_liquidity:
                transfer = uuid.uuid5(_INITIAL_LIQUIDITY, str(peer_id))
                try:
                    await deposit(
                        ctx,
                        AccountKind.PEER_LIQUIDITY,
                        peer_id,
                        asset_id,
                        transfer,
                        input.initial_liquidity,
                    )
                except ApiError:
                    # Undo the peer unless the deposit did happen after all, so that the
                    # caller's retry (same idempotencyKey) finds nothing in its way.
                    if await ctx.ledger.transfer(transfer) is None:
                        await ctx.pool.execute("DELETE FROM peers WHERE id = $1", peer_id)
                        await _announce(ctx)
                        raise
            await _announce(ctx)
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
        changes: dict[str, Any] = {}
        if input.static_ilp_address is None:
            raise bad_input("staticIlpAddress cannot be null", field="staticIlpAddress")
        if input.static_ilp_address is not strawberry.UNSET:
            changes["static_ilp_address"] = _address(input.static_ilp_address, "staticIlpAddress")
        if input.max_packet_amount is not strawberry.UNSET:
            changes["max_packet_amount"] = _max_packet_amount(input.max_packet_amount)
        if input.name is not strawberry.UNSET:
            changes["name"] = _name(input.name)
        if input.liquidity_threshold is not strawberry.UNSET:
            changes["liquidity_threshold"] = input.liquidity_threshold
        if input.liquidity_threshold_high is not strawberry.UNSET:
            changes["liquidity_threshold_high"] = input.liquidity_threshold_high
        if input.routes is not strawberry.UNSET:
            changes["routes"] = _routes(input.routes)
        if input.http is None:
            raise bad_input("http cannot be null", field="http")
        digests: list[bytes] | None = None
        if input.http is not strawberry.UNSET:
            changes["http_endpoint"] = _endpoint(input.http.outgoing.endpoint)
            changes["http_outgoing_token"] = _outgoing_token(input.http.outgoing.auth_token)
            digests = _incoming_tokens(input.http.incoming)
        thresholds_changed = bool(
            {"liquidity_threshold", "liquidity_threshold_high"} & changes.keys()
        )

        async def run() -> tuple[dict[str, Any], UpdatePeerMutationResponse]:
            try:
                async with ctx.pool.acquire() as conn, conn.transaction():
                    current = await conn.fetchrow(
                        f"SELECT {_PEER_COLUMNS} FROM peers WHERE id = $1 FOR UPDATE", peer_id
                    )
                    if current is None:
                        raise not_found("peer")
                    merged = {**dict(current), **changes}
                    _thresholds(
                        _u64(merged["liquidity_threshold"]),
                        _u64(merged["liquidity_threshold_high"]),
                    )
                    row = await conn.fetchrow(
                        "UPDATE peers SET name = $2, static_ilp_address = $3, http_endpoint = $4, "
                        "http_outgoing_token = $5, max_packet_amount = $6, "
                        "liquidity_threshold = $7, liquidity_threshold_high = $8, routes = $9, "
                        "liquidity_alert = CASE WHEN $10 THEN NULL ELSE liquidity_alert END, "
                        f"updated_at = now() WHERE id = $1 RETURNING {_PEER_COLUMNS}",
                        peer_id,
                        merged["name"],
                        merged["static_ilp_address"],
                        merged["http_endpoint"],
                        merged["http_outgoing_token"],
                        merged["max_packet_amount"],
                        merged["liquidity_threshold"],
                        merged["liquidity_threshold_high"],
                        merged["routes"],
                        thresholds_changed,
                    )
                    if digests is not None:
                        await conn.execute(
                            "DELETE FROM peer_incoming_tokens WHERE peer_id = $1", peer_id
                        )
                        await _insert_tokens(conn, peer_id, digests)
            except asyncpg.UniqueViolationError as exc:
                raise _duplicate(exc) from None
            assert row is not None
            await _announce(ctx)
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
        account = account_id_for(AccountKind.PEER_LIQUIDITY, peer_id)

        async def run() -> tuple[dict[str, Any], DeletePeerMutationResponse]:
            try:
                async with ctx.pool.acquire() as conn, conn.transaction():
                    found = await conn.fetchval(
                        "SELECT id FROM peers WHERE id = $1 FOR UPDATE", peer_id
                    )
                    if found is None:
                        raise not_found("peer")
                    # Locked, so no ledger batch moves the account's money while we decide.
                    await ctx.ledger.sync_balances(conn, [account])
                    busy = await conn.fetchval(
                        "SELECT credits_posted <> debits_posted OR debits_pending <> 0 "
                        "OR credits_pending <> 0 FROM ledger_accounts WHERE id = $1 FOR UPDATE",
                        account,
                    )
                    if busy:
                        raise ApiError(
                            ErrorCode.FORBIDDEN,
                            "the peer's liquidity account has a balance or pending transfers: "
                            "withdraw its liquidity (and post or void pending withdrawals) first",
                        )
                    await conn.execute("DELETE FROM peers WHERE id = $1", peer_id)
            except asyncpg.ForeignKeyViolationError:
                raise ApiError(
                    ErrorCode.FORBIDDEN, "outgoing payments were sent through the peer"
                ) from None
            await _announce(ctx)
            return {"id": str(peer_id)}, DeletePeerMutationResponse(success=True)

        async def replay(_record: dict[str, Any]) -> DeletePeerMutationResponse:
            return DeletePeerMutationResponse(success=True)

        return await ctx.idempotent("deletePeer", input.idempotency_key, input, run, replay)

    @strawberry.mutation(description="Deposit liquidity into a peer (settlement → liquidity).")
    async def deposit_peer_liquidity(
        self, info: strawberry.Info[Context, None], input: DepositPeerLiquidityInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        peer_id = parse_uuid(input.peer_id, "peerId")
        transfer = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            asset_id = await _peer_asset(ctx, peer_id)
            await deposit(
                ctx, AccountKind.PEER_LIQUIDITY, peer_id, asset_id, transfer, input.amount
            )
            return success_response()

        return await ctx.idempotent(
            "depositPeerLiquidity", input.idempotency_key, input, run, replay_success
        )

    @strawberry.mutation(
        description="Withdraw peer liquidity; with timeoutSeconds > 0 it waits to be posted."
    )
    async def create_peer_liquidity_withdrawal(
        self, info: strawberry.Info[Context, None], input: CreatePeerLiquidityWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        peer_id = parse_uuid(input.peer_id, "peerId")
        transfer = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            asset_id = await _peer_asset(ctx, peer_id)
            await withdraw(
                ctx,
                AccountKind.PEER_LIQUIDITY,
                peer_id,
                asset_id,
                transfer,
                input.amount,
                input.timeout_seconds,
            )
            return success_response()

        return await ctx.idempotent(
            "createPeerLiquidityWithdrawal", input.idempotency_key, input, run, replay_success
        )
