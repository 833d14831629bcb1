"""The Open Payments resource server for incoming payments (Open Payments resource-server.yaml),
on the connector at OPEN_PAYMENTS_URL, the ``resourceServer`` wallet address documents name:

- ``POST /incoming-payments``: create one on a wallet address (201, with ``methods``: the ILP
  address and shared secret of a STREAM connection that pays into it, as SPSP on its
  ``<wallet address>/incoming-payments/<id>`` URL gives them).
- ``GET /incoming-payments/{id}``: with a token the payment (``methods`` while it is open);
  without ``Authorization`` its public form, ``receivedAmount`` and ``authServer``, or SPSP
  when the request accepts ``application/spsp4+json`` (an SPSP-only sender given this URL).
- ``GET /incoming-payments?wallet-address=…``: a page (``first``/``last``, ``cursor``).
- ``POST /incoming-payments/{id}/complete``.

Every authorized request carries ``Authorization: GNAP <token>``, a token of this node's
authorization server (:func:`kiungo.openpayments.grants.introspect`), and is signed (RFC 9421)
by a key of the grant's client (:class:`kiungo.openpayments.client_signatures.ClientKeys`, what
the authorization server checks too: a wallet address of this node or another, or the JWK the
grant stored). Access is per action on a
wallet address (the access item's ``identifier``); ``read``, ``list`` and ``complete`` reach only
what the grant's own client created, ``read-all`` and ``list-all`` everything.

Refusals are the spec's ``{"error": {"code", "description"}}``: 401 (with ``WWW-Authenticate:
GNAP as_uri=<authorization server>``) for a missing, unknown, expired or revoked token or a bad
signature; 403 for access the grant lacks; 404 for a payment it cannot see; 400 for bad input.
They change nothing. The rows are the admin API's (:mod:`kiungo.openpayments.incoming_payments`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.connector.node import Node
from kiungo.connector.resource_inputs import (
    MAX_METADATA_BYTES,
    Refused,
    b64url,
    bad,
    is_uuid,
    not_found,
    parse_amount,
    parse_fields,
    parse_listing,
    parse_metadata,
    parse_wallet_url,
    storable,
)
from kiungo.connector.resource_sending import sending_routes
from kiungo.connector.spsp import incoming_payment_spsp
from kiungo.ledger import AccountKind, UnknownAccount, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import WalletAddressStatus
from kiungo.openpayments import incoming_payments as resources
from kiungo.openpayments.client_signatures import ClientKeys, UnknownClient, addressed_url
from kiungo.openpayments.grants import GrantInfo, introspect
from kiungo.openpayments.http_signatures import SignatureRejected
from kiungo.payments.incoming import InvalidExpiry, States, expiry, store
from kiungo.payments.receivers import incoming_payment_tag
from kiungo.spsp import accepts_spsp
from kiungo.store.channels import RECEIVERS_CHANGED_CHANNEL
from kiungo.stream.server import Asset

__all__ = ["MAX_BODY_BYTES", "MAX_METADATA_BYTES", "resource_routes"]

log = logging.getLogger("kiungo.connector.resource_server")

MAX_BODY_BYTES = 64 * 1024
_MAX_URL = 2048
_GNAP = "gnap "
_CREATE_FIELDS = frozenset({"walletAddress", "incomingAmount", "expiresAt", "metadata"})


class _ResourceServer:
    def __init__(self, node: Node, clock: Callable[[], float]) -> None:
        self.node = node
        self.clock = clock
        self.base = node.settings.open_payments_url.rstrip("/")
        self.auth_server = node.settings.auth_server_grant_url
        self.challenge = f"GNAP as_uri={self.auth_server}"
        self.client_keys = ClientKeys(
            node.pool,
            node.receiver_http,
            max_seconds=node.settings.receiver_fetch_timeout_ms / 1000,
        )

    @property
    def pool(self) -> asyncpg.Pool:
        return self.node.pool

    # -- the request ------------------------------------------------------------------------

    async def body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not declared.isascii() or not declared.isdigit() or int(declared) > MAX_BODY_BYTES
        ):
            raise bad("body too large or bad Content-Length")
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise bad("body too large")
        except ClientDisconnect as exc:
            raise bad("the client went away") from exc
        return body

    def unauthorized(self, description: str) -> Refused:
        return Refused(401, "unauthorized", description, self.challenge)

    async def authorize(self, request: Request, body: bytes) -> GrantInfo:
        """The grant of the request's active token, its signature verified with a key of the
        grant's client; 401 otherwise."""
        header = request.headers.get("authorization", "")
        if header[: len(_GNAP)].lower() != _GNAP or not header[len(_GNAP) :].strip():
            raise self.unauthorized("Authorization: GNAP <access token> is required")
        value = header[len(_GNAP) :].strip()
        if len(value) > 1024 or not storable(value):
            raise self.unauthorized("invalid access token")
        grant = await introspect(self.pool, value)
        if grant is None:
            raise self.unauthorized("invalid, expired or revoked access token")
        try:
            await self.client_keys.verify(
                grant.client,
                grant.client_jwk,
                method=request.method,
                targets=[addressed_url(self.base, request.scope)],
                headers=request.headers.items(),
                body=body,
                now=int(self.clock()),
            )
        except UnknownClient as exc:
            raise self.unauthorized(f"the grant's client has no usable keys: {exc}") from None
        except SignatureRejected as exc:
            raise self.unauthorized(f"invalid signature: {exc.reason}") from None
        return grant

    async def received(self, row: Mapping[str, Any]) -> int:
        """What the payment has received: its ledger account's posted credits (the row's
        figure until its first packet makes the account)."""
        try:
            balance = await self.node.ledger.balance(
                account_id_for(AccountKind.INCOMING_PAYMENT, row["id"])
            )
        except UnknownAccount:
            return int(row["received_amount"])
        return int(balance.credits_posted)

    def methods(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        """The STREAM credentials paying into this payment, while it is open."""
        if not resources.is_open(row, datetime.now(UTC)):
            return []
        credentials = self.node.stream_server.generate_credentials(
            payment_tag=incoming_payment_tag(row["id"]),
            asset=Asset(row["asset_code"], row["asset_scale"]),
        )
        secret = credentials.shared_secret
        return [
            {
                "type": "ilp",
                "ilpAddress": credentials.destination_account,
                "sharedSecret": b64url(secret),
            }
        ]

    async def full(self, row: Mapping[str, Any], *, with_methods: bool) -> dict[str, Any]:
        methods = self.methods(row) if with_methods else None
        return resources.payment_json(row, self.base, await self.received(row), methods)

    async def visible(self, grant: GrantInfo, payment_id: str, all_action: str, action: str) -> Any:
        """The payment ``payment_id`` if the grant may ``action`` it (any client's with
        ``all_action``); 403 when the grant has neither action on any wallet address, 404 when
        the payment is unknown or not one it can see."""
        everywhere = resources.any_actions(grant.access)
        if all_action not in everywhere and action not in everywhere:
            raise Refused(403, "insufficient_grant", f"the grant does not allow {action}")
        row = await self.payment(payment_id)
        allowed = resources.granted_actions(grant.access, row["url"])
        if all_action in allowed or (action in allowed and row["client"] == grant.client):
            return row
        raise not_found()

    async def payment(self, payment_id: str) -> asyncpg.Record:
        try:
            parsed = uuid.UUID(payment_id)
        except ValueError:
            raise not_found() from None
        row = await resources.by_id(self.pool, parsed)
        if row is None:
            raise not_found()
        return row

    async def wallet(self, url: object) -> Mapping[str, Any]:
        """The active wallet address of this node at ``url`` (as store.create takes it)."""
        if not isinstance(url, str) or not url or len(url) > _MAX_URL or not storable(url):
            raise bad("walletAddress must be a wallet address URL")
        found = await self.node.receivers.wallet_address_by_url(url.rstrip("/"))
        if found is None or found.state != WalletAddressStatus.ACTIVE:
            raise Refused(404, "not_found", "wallet address not found")
        return {
            "id": found.id,
            "url": found.url,
            "asset_id": found.asset_id,
            "asset_code": found.asset_code,
            "asset_scale": found.asset_scale,
            "status": found.state,
        }

    # -- the routes -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = await self.body(request)
        grant = await self.authorize(request, body)
        document = parse_fields(body, _CREATE_FIELDS)
        wallet_url = parse_wallet_url(document.get("walletAddress"))
        if "create" not in resources.granted_actions(grant.access, wallet_url.rstrip("/")):
            raise Refused(403, "insufficient_grant", "the grant does not allow create here")
        wallet = await self.wallet(wallet_url)
        if "create" not in resources.granted_actions(grant.access, wallet["url"]):
            raise Refused(403, "insufficient_grant", "the grant does not allow create here")
        amount = parse_amount(document.get("incomingAmount"), wallet)
        now = datetime.now(UTC)
        requested = document.get("expiresAt")
        if requested is not None and (not isinstance(requested, str) or len(requested) > 64):
            raise bad("expiresAt must be an ISO 8601 date-time string")
        longest = timedelta(milliseconds=self.node.settings.incoming_payment_expiry_max_ms)
        try:
            expires_at = expiry(requested, now, longest)
        except (InvalidExpiry, OverflowError) as exc:
            raise bad(str(exc)) from None
        metadata = parse_metadata(document.get("metadata"))
        # One statement: the payment, its client and its created event (with the client).
        row = await store.create(
            self.pool,
            wallet,
            incoming_amount=amount,
            expires_at=expires_at,
            metadata=metadata,
            created_at=now,
            client=grant.client,
        )
        # The response is built from what was written: a payment whose credentials are only
        # now handed out has received nothing, so neither a re-read nor the ledger is asked.
        created = {**row, "url": wallet["url"]}
        return JSONResponse(
            resources.payment_json(created, self.base, 0, self.methods(created)), 201
        )

    async def get(self, request: Request) -> Response:
        payment_id = request.path_params["id"]
        if "authorization" not in request.headers:
            row = await self.payment(payment_id)
            return JSONResponse(
                {
                    "receivedAmount": resources.payment_json(
                        row, self.base, await self.received(row)
                    )["receivedAmount"],
                    "authServer": self.auth_server,
                }
            )
        body = await self.body(request)
        grant = await self.authorize(request, body)
        row = await self.visible(grant, payment_id, "read-all", "read")
        return JSONResponse(await self.full(row, with_methods=True))

    async def list(self, request: Request) -> Response:
        body = await self.body(request)
        grant = await self.authorize(request, body)
        params = request.query_params
        wallet_url = params.get("wallet-address")
        if wallet_url is None:
            raise bad("wallet-address is required")
        if not storable(wallet_url):
            raise bad("wallet-address must be a wallet address URL")
        allowed = resources.granted_actions(grant.access, wallet_url.rstrip("/"))
        first, last, client = parse_listing(params, allowed, grant.client)
        wallet = await self.wallet(wallet_url)
        cursor = None
        raw_cursor = params.get("cursor")
        if raw_cursor is not None:
            try:
                cursor_id = uuid.UUID(raw_cursor)
            except ValueError:
                raise bad("cursor must be an incoming payment id") from None
            at = await resources.cursor_position(self.pool, cursor_id, wallet["id"], client)
            if at is None:
                raise bad("cursor names no incoming payment of this listing")
            cursor = (cursor_id, at)
        found = await resources.page(
            self.pool, wallet["id"], client, first=first, last=last, cursor=cursor
        )
        received = await self.node.ledger.balances(
            [account_id_for(AccountKind.INCOMING_PAYMENT, r["id"]) for r in found.rows]
        )
        result = [
            resources.payment_json(
                row,
                self.base,
                int(row["received_amount"]) if balance is None else int(balance.credits_posted),
            )
            for row, balance in zip(found.rows, received, strict=True)
        ]
        pagination: dict[str, Any] = {
            "hasNextPage": found.has_next,
            "hasPreviousPage": found.has_previous,
        }
        if found.rows:
            pagination["startCursor"] = str(found.rows[0]["id"])
            pagination["endCursor"] = str(found.rows[-1]["id"])
        return JSONResponse({"pagination": pagination, "result": result})

    async def complete(self, request: Request) -> Response:
        body = await self.body(request)
        grant = await self.authorize(request, body)
        payment_id = request.path_params["id"]
        # There is no complete-all: only the payments of the grant's own client.
        row = await self.visible(grant, payment_id, "", "complete")
        if row["state"] == States.EXPIRED or (
            row["state"] != States.COMPLETED and not resources.is_open(row, datetime.now(UTC))
        ):
            raise bad("the incoming payment has expired")
        if row["state"] != States.COMPLETED:
            await self.finish(row)
            reread = await resources.by_id(self.pool, row["id"])
            if reread is None:
                raise not_found()
            row = reread
            if row["state"] != States.COMPLETED:  # expired meanwhile
                raise bad("the incoming payment has expired")
        return JSONResponse(await self.full(row, with_methods=False))

    async def finish(self, row: Mapping[str, Any]) -> None:
        """Complete the payment with what its account has received (the expiry worker's lock
        on the account, so no packet posts between reading and recording it)."""
        payment_id = row["id"]
        async with self.pool.acquire() as conn, conn.transaction():
            await self.node.ledger.sync_balances(
                conn, [account_id_for(AccountKind.INCOMING_PAYMENT, payment_id)]
            )
            accounts = await ledger_reads.lock_incoming_payment_accounts(conn, [payment_id])
            account = accounts.get(payment_id)
            received = 0 if account is None else account.posted
            await store.complete(
                conn, payment_id, received, (row["asset_code"], row["asset_scale"])
            )
        self.node.receivers.forget_owner(payment_id)
        try:
            await self.node.redis.publish(
                self.node.settings.redis_key_prefix + RECEIVERS_CHANGED_CHANNEL, str(payment_id)
            )
        except Exception:  # best effort: the other replicas' caches last a second
            log.warning("could not publish a receiver change for %s", payment_id)


Handler = Callable[[Request], Awaitable[Response]]


def resource_routes(
    node: Node, fallback: Handler, clock: Callable[[], float] = time.time
) -> list[Route]:
    """The resource server's routes, to be placed before the connector's catch-all.
    ``fallback`` (SPSP and wallet address documents) answers what these paths meant before
    them: ``GET /incoming-payments…`` that is no Open Payments request (no ``Authorization``
    and no ``wallet-address``, or an id that is no UUID) may name a wallet address there."""
    server = _ResourceServer(node, clock)

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as refused:
                return refused.response()

        return run

    async def collection(request: Request) -> Response:
        if request.method == "POST":
            return await server.create(request)
        if "authorization" not in request.headers and "wallet-address" not in request.query_params:
            return await fallback(request)
        return await server.list(request)

    async def one(request: Request) -> Response:
        payment_id = request.path_params["id"]
        if not is_uuid(payment_id):
            return await fallback(request)
        # An SPSP sender given the payment's Open Payments URL: SPSP, as on its wallet
        # address URL. A request with a token is always the resource server's.
        if "authorization" not in request.headers and (
            request.method == "OPTIONS" or accepts_spsp(request.headers.get("accept"))
        ):
            return await incoming_payment_spsp(node, request, uuid.UUID(payment_id))
        return await server.get(request)

    return [
        Route("/incoming-payments", guarded(collection), methods=["GET", "POST"]),
        Route("/incoming-payments/{id}", guarded(one), methods=["GET", "OPTIONS"]),
        Route("/incoming-payments/{id}/complete", guarded(server.complete), methods=["POST"]),
        *sending_routes(server, guarded, fallback),
    ]
