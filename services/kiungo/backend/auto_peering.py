"""Auto-peering as Rafiki has it: two nodes become each other's peers with one request.

The node asked to peer serves ``POST /`` on ``AUTO_PEERING_SERVER_PORT`` (with
``ENABLE_AUTO_PEERING``; :func:`auto_peering_app`). The asking node
(:func:`initiate_peering`, the admin API's ``createOrUpdatePeerByUrl``) sends::

    {"staticIlpAddress": "g.alpha", "ilpConnectorUrl": "https://alpha.example/ilp",
     "asset": {"code": "USD", "scale": 2}, "httpToken": "<the token it will send>",
     "maxPacketAmount": 1000, "name": "alpha"}

and the asked node makes (or, when it has one with that address and asset, updates) its peer
for the asker: the asker's token is the peer's only incoming token, a fresh token of its own
the outgoing one, and it answers with them::

    {"staticIlpAddress": "g.beta", "ilpConnectorUrl": "https://beta.example/ilp",
     "httpToken": "<the token it will send>"}

(plus ``name`` when it has one to give). The asker then makes or updates its own peer with
that answer. A peer made this way by the asked node starts with Rafiki's credit of 2^53 - 1
(``Number.MAX_SAFE_INTEGER``) of liquidity, so the asker can send at once. A refusal is
``{"error": {"code": <HTTP status>, "message", "type"}}`` with Rafiki's types
(:class:`AutoPeeringError`) and statuses.

Every byte the endpoint reads, and every byte a peer answers, is hostile: bodies are bounded,
the JSON's shape and every field are checked (ILP addresses, http(s) URLs, printable ASCII
tokens) before anything is written, and peers are made and changed only through
:mod:`kiungo.backend.peers`.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.backend import peers
from kiungo.backend.assets import AssetNotFound, asset_by_code_and_scale, load_asset
from kiungo.backend.context import Backend
from kiungo.backend.peering_messages import (
    MAX_BODY_BYTES,
    AutoPeeringError,
    AutoPeeringRefusal,
    PeeringDetails,
    PeeringRequest,
    parse_peering_details,
    parse_peering_request,
)
from kiungo.ledger import AccountKind, LedgerError
from kiungo.runtime.receiver_fetch import (
    ReceiverFetchError,
    Unreachable,
    post,
    receiver_client,
)

__all__ = [
    "INITIAL_CREDIT",
    "MAX_BODY_BYTES",
    "AutoPeeringError",
    "AutoPeeringRefusal",
    "PeeringDetails",
    "PeeringRequest",
    "accept_peering",
    "auto_peering_app",
    "connector_endpoint",
    "initiate_peering",
    "parse_peering_details",
    "parse_peering_request",
]

log = logging.getLogger("kiungo.backend.auto_peering")

INITIAL_CREDIT = 2**53 - 1
"""The liquidity a peer made by a peering request starts with (Rafiki's)."""


def connector_endpoint(backend: Backend) -> str:
    """Where peers send us ILP packets: ILP_CONNECTOR_URL's ``/ilp``."""
    return backend.settings.ilp_connector_url.rstrip("/") + "/ilp"


def _fresh_token() -> str:
    return secrets.token_urlsafe(32)


async def _create_or_update(
    backend: Backend,
    asset_id: uuid.UUID,
    address: str,
    endpoint: str,
    outgoing_token: str,
    incoming_token: str,
    max_packet_amount: int | None,
    name: str | None,
    liquidity_threshold: int | None,
) -> tuple[asyncpg.Record, bool]:
    """The peer with ``address`` and asset made, or changed when there is one (its endpoint and
    tokens replaced; its limit, name and threshold when given); whether it was made. Not
    announced."""
    digests = peers.incoming_token_digests([incoming_token])
    assert digests is not None
    for _ in range(2):  # a peer made by a concurrent request between the look-up and the insert
        current = await peers.peer_by_address_and_asset(backend.pool, address, asset_id)
        if current is not None:
            changes: dict[str, Any] = {
                "http_endpoint": endpoint,
                "http_outgoing_token": outgoing_token,
            }
            if max_packet_amount is not None:
                changes["max_packet_amount"] = max_packet_amount
            if name is not None:
                changes["name"] = name
            if liquidity_threshold is not None:
                changes["liquidity_threshold"] = liquidity_threshold
            return await peers.update_peer(backend.pool, current["id"], changes, digests), False
        new = peers.NewPeer(
            asset_id=asset_id,
            static_ilp_address=address,
            routes=[],
            http_endpoint=endpoint,
            http_outgoing_token=outgoing_token,
            incoming_token_digests=digests,
            max_packet_amount=max_packet_amount,
            name=name,
            liquidity_threshold=liquidity_threshold,
            liquidity_threshold_high=None,
        )
        try:
            return await peers.create_peer(backend.pool, backend.ledger, new), True
        except peers.PeerExists:
            if await peers.peer_by_address_and_asset(backend.pool, address, asset_id) is None:
                raise  # the token, not the address, is taken
    raise peers.PeerExists("the peer changed while it was being made; try again")


async def _deposit(
    backend: Backend, peer_id: uuid.UUID, asset_id: uuid.UUID, transfer: uuid.UUID, amount: int
) -> None:
    account = await backend.ledger.ensure_account(AccountKind.PEER_LIQUIDITY, peer_id, asset_id)
    await backend.ledger.deposit(transfer, account, amount)


async def accept_peering(backend: Backend, request: PeeringRequest) -> dict[str, Any]:
    """Make or update our peer for the node that asked; the answer it is sent."""
    asset = await asset_by_code_and_scale(backend.pool, request.asset_code, request.asset_scale)
    if asset is None:
        raise AutoPeeringRefusal(AutoPeeringError.UNKNOWN_ASSET)
    outgoing = _fresh_token()
    try:
        row, created = await _create_or_update(
            backend,
            asset["id"],
            request.static_ilp_address,
            request.ilp_connector_url,
            outgoing,
            request.http_token,
            request.max_packet_amount,
            request.name,
            None,
        )
    except peers.PeerNotFound:  # deleted between the look-up and the update
        raise AutoPeeringRefusal(AutoPeeringError.INVALID_PEERING_REQUEST) from None
    except peers.PeerExists:
        raise AutoPeeringRefusal(
            AutoPeeringError.INVALID_PEERING_REQUEST, "httpToken is already used by a peer"
        ) from None
    except (peers.InvalidPeer, AssetNotFound):
        raise AutoPeeringRefusal(AutoPeeringError.INVALID_PEERING_REQUEST) from None
    if created:
        transfer = peers.initial_liquidity_transfer(row["id"])
        try:
            await _deposit(backend, row["id"], asset["id"], transfer, INITIAL_CREDIT)
        except LedgerError:
            log.exception("could not give a new auto-peered peer its initial liquidity")
            await peers.forget_unfunded(backend.pool, backend.ledger, row["id"], transfer)
            await peers.announce(backend)
            raise AutoPeeringRefusal(AutoPeeringError.INVALID_PEERING_REQUEST) from None
    await peers.announce(backend)
    log.info(
        "auto-peering: %s peer %s (%s)",
        "made" if created else "updated",
        request.static_ilp_address,
        row["id"],
    )
    answer: dict[str, Any] = {
        "staticIlpAddress": backend.settings.ilp_address,
        "ilpConnectorUrl": connector_endpoint(backend),
        "httpToken": outgoing,
    }
    return answer


async def initiate_peering(
    backend: Backend,
    *,
    peer_url: str,
    asset_id: uuid.UUID,
    max_packet_amount: int | None,
    name: str | None,
    liquidity_threshold: int | None,
    liquidity_to_deposit: int | None,
    deposit_id: uuid.UUID,
) -> asyncpg.Record:
    """Ask the node at ``peer_url`` to peer with us, then make or update our peer with its
    answer (and deposit ``liquidity_to_deposit`` into it, as transfer ``deposit_id``); the
    peer's row. Refused (:class:`AutoPeeringRefusal`, or the peer domain's refusals) before
    anything of ours changes, except for a failed deposit (``LiquidityError``), which leaves
    the peer made, as Rafiki does."""
    try:
        peers.check_endpoint(peer_url)
    except peers.InvalidPeer:
        raise AutoPeeringRefusal(
            AutoPeeringError.INVALID_PEER_URL, "peerUrl must be an http or https URL"
        ) from None
    peers.check_max_packet_amount(max_packet_amount)
    name = peers.check_name(name)
    if name is not None and not name.isprintable():
        raise peers.InvalidPeer("name must be printable text", field="name")
    asset = await load_asset(backend.pool, asset_id)
    if asset is None or asset["deleted_at"] is not None:
        raise AutoPeeringRefusal(AutoPeeringError.UNKNOWN_ASSET)
    token = _fresh_token()
    request: dict[str, Any] = {
        "staticIlpAddress": backend.settings.ilp_address,
        "ilpConnectorUrl": connector_endpoint(backend),
        "asset": {"code": asset["code"], "scale": asset["scale"]},
        "httpToken": token,
    }
    if max_packet_amount is not None:
        request["maxPacketAmount"] = max_packet_amount
    details = await _ask(backend, peer_url, json.dumps(request).encode())
    row, _created = await _create_or_update(
        backend,
        asset_id,
        details.static_ilp_address,
        details.ilp_connector_url,
        token,
        details.http_token,
        max_packet_amount,
        name if name is not None else details.name,
        liquidity_threshold,
    )
    await peers.announce(backend)
    if liquidity_to_deposit:
        try:
            await _deposit(backend, row["id"], asset_id, deposit_id, liquidity_to_deposit)
        except LedgerError as error:
            raise AutoPeeringRefusal(AutoPeeringError.LIQUIDITY_ERROR, str(error)) from None
    return row


async def _ask(backend: Backend, peer_url: str, body: bytes) -> PeeringDetails:
    """POST our request to the peer, bounded in time and bytes; its answer, checked."""
    seconds = backend.settings.receiver_fetch_timeout_ms / 1000
    # The operator names the peer, so a peer on a private network is allowed.
    async with receiver_client(refuse_private=False) as client:
        try:
            reply = await post(
                client,
                peer_url,
                body,
                content_type="application/json",
                accept="application/json",
                max_bytes=MAX_BODY_BYTES,
                max_seconds=seconds,
            )
        except Unreachable:
            raise AutoPeeringRefusal(
                AutoPeeringError.INVALID_PEER_URL, "the peer could not be reached"
            ) from None
        except ReceiverFetchError as error:
            raise AutoPeeringRefusal(
                AutoPeeringError.INVALID_PEERING_REQUEST, f"the peer {error}"
            ) from None
    if reply.status_code != 200:
        kind = _refusal_type(reply.body)
        if kind == AutoPeeringError.INVALID_PEER_ILP_CONFIGURATION.value:
            # The peer found our address or connector URL wrong.
            raise AutoPeeringRefusal(AutoPeeringError.INVALID_ILP_CONFIGURATION)
        if kind == AutoPeeringError.UNKNOWN_ASSET.value:
            raise AutoPeeringRefusal(AutoPeeringError.PEER_UNSUPPORTED_ASSET)
        if reply.status_code in (404, 405):
            raise AutoPeeringRefusal(AutoPeeringError.INVALID_PEER_URL)
        raise AutoPeeringRefusal(
            AutoPeeringError.INVALID_PEERING_REQUEST,
            f"the peer answered HTTP {reply.status_code}",
        )
    return parse_peering_details(reply.body)


def _refusal_type(body: bytes) -> str | None:
    """``error.type`` of a refusal's JSON body, if it has one."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    error = value.get("error") if isinstance(value, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


# -- the endpoint -----------------------------------------------------------------------------


def _refuse(
    kind: AutoPeeringError, detail: str | None = None, status: int | None = None
) -> Response:
    code = kind.status if status is None else status
    message = kind.message if detail is None else f"{kind.message}: {detail}"
    return JSONResponse({"error": {"code": code, "message": message, "type": kind.value}}, code)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def auto_peering_app(backend: Backend) -> Starlette:
    """The auto-peering endpoint: ``POST /``, a peering request in, our details out."""

    async def accept(request: Request) -> Response:
        body = await _read_body(request)
        invalid = AutoPeeringError.INVALID_PEERING_REQUEST
        if body is None:
            return _refuse(invalid, f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        try:
            answer = await accept_peering(backend, parse_peering_request(body))
        except AutoPeeringRefusal as refusal:
            return _refuse(refusal.kind, refusal.detail)
        return JSONResponse(answer)

    return Starlette(routes=[Route("/", accept, methods=["POST"])])
