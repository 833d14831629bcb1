"""The Open Payments resource server's sending side (Open Payments resource-server.yaml), beside
:mod:`kiungo.connector.resource_server` and with its authorization (token introspection and the
client's signature) and refusal shapes:

- ``POST /quotes`` (``walletAddress``, ``receiver``, ``method: "ilp"``, ``debitAmount`` or
  ``receiveAmount`` or neither) and ``GET /quotes/{id}``: quotes made by
  :func:`kiungo.payments.quotes.create_quote`, as the admin API makes them. Receivers are this
  node's incoming payments (their Open Payments id or wallet-address form) and wallet
  addresses, and other nodes' incoming payments, read over Open Payments under the node's own
  identity and probed as the admin API's ``createQuote`` does
  (:func:`kiungo.connector.quote.probe`, in this process, within its bounds: a receiver that
  cannot be read or probed is a 400 ``invalid_receiver``).
- ``POST /outgoing-payments`` (``walletAddress``, ``quoteId``, ``metadata``; or
  ``incomingPayment`` and ``debitAmount`` instead of ``quoteId``: quoted here as ``POST
  /quotes`` would, the quote stored with the payment or not at all): the admin API's outgoing
  payment (:func:`kiungo.payments.outgoing.service.create`, FUNDING, with its
  ``outgoing_payment.created`` webhook: the operator funds it), made under the grant, whose
  limits are checked atomically (:mod:`kiungo.payments.outgoing.limits`). ``sentAmount`` is
  what it has sent so far (:mod:`kiungo.payments.outgoing.sent`).
- ``GET /outgoing-payments/{id}``, ``GET /outgoing-payments?wallet-address=…`` (a page:
  ``first``/``last``, ``cursor``), ``GET /outgoing-payment-grant`` (what the grant has spent
  in its current interval).

``read`` and ``list`` reach what the grant's own client created; ``read-all`` and ``list-all``
everything of the wallet address.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.connector.quote import probe as probe_receiver
from kiungo.connector.resource_inputs import (
    Refused,
    bad,
    check_fields,
    parse_fields,
    parse_json_object,
    parse_listing,
    parse_metadata,
    parse_quote_amount,
    parse_wallet_url,
    quote_refused,
    storable,
)
from kiungo.events import amount_json
from kiungo.openpayments import incoming_payments
from kiungo.openpayments import outgoing_payments as resources
from kiungo.openpayments.grants import GrantInfo
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH
from kiungo.payments.outgoing import limits as grant_limits
from kiungo.payments.outgoing import service as outgoing
from kiungo.payments.outgoing.sent import sent_amounts
from kiungo.payments.quotes import errors as quote_errors
from kiungo.payments.quotes.quoting import Quoting
from kiungo.payments.quotes.service import create_quote, load_quote
from kiungo.payments.receivers import (
    InvalidReceiverUrl,
    local_receiver_url,
    open_payments_receiver,
    stored_receiver,
)
from kiungo.stream.server import Asset

if TYPE_CHECKING:
    from kiungo.connector.resource_server import _ResourceServer

__all__ = ["sending_routes"]

Handler = Callable[[Request], Awaitable[Response]]

OUTGOING = "outgoing-payment"
QUOTE = "quote"
_QUOTE_FIELDS = frozenset({"walletAddress", "receiver", "method", "debitAmount", "receiveAmount"})
_PAYMENT_FIELDS = frozenset({"walletAddress", "quoteId", "metadata"})
_FROM_INCOMING_FIELDS = frozenset({"walletAddress", "incomingPayment", "debitAmount", "metadata"})
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_MAX_URL = 2048


class _Sending:
    def __init__(self, server: _ResourceServer) -> None:
        self.server = server
        node = server.node

        async def probe(receiver: str, sender: tuple[str, int]) -> tuple[int, Any]:
            return await probe_receiver(node, receiver, Asset(*sender))

        self.quoting = Quoting(
            node.settings, node.pool, node.ledger, node.rates, node.http, probe=probe
        )
        self.base = server.base
        self.quote_path = re.compile(rf"^{re.escape(self.base)}/quotes/(?P<id>{_UUID})$")
        self.incoming_path = re.compile(
            rf"^{re.escape(self.base)}/incoming-payments/(?P<id>{_UUID})$"
        )

    @property
    def pool(self) -> asyncpg.Pool:
        return self.server.pool

    # -- receivers ------------------------------------------------------------------------

    async def local_receiver(self, receiver: object) -> str:
        """The receiver as the quote takes it: this node's incoming payment (its Open Payments
        id becomes its wallet-address form) or wallet address, or another node's incoming
        payment URL; 400 otherwise."""
        if not isinstance(receiver, str) or not receiver or len(receiver) > _MAX_URL:
            raise bad("receiver must be an incoming payment URL")
        if not storable(receiver):
            raise bad("receiver must be an incoming payment URL")
        match = self.incoming_path.match(receiver)
        if match is not None:
            row = await self.server_payment_wallet(uuid.UUID(match["id"]))
            if row is None:
                raise Refused(400, "invalid_receiver", "no such incoming payment here")
            return f"{row}/incoming-payments/{match['id']}"
        try:
            local = local_receiver_url(self.node_settings_url, receiver)
        except InvalidReceiverUrl as exc:
            raise Refused(400, "invalid_receiver", str(exc)) from None
        if local is None and (
            not receiver.startswith(("http://", "https://"))
            or INCOMING_PAYMENT_PATH.match(receiver) is None
        ):
            raise Refused(400, "invalid_receiver", "receiver must be an incoming payment URL")
        # Another node's incoming payment is read over Open Payments by the quote's probe.
        return receiver

    async def incoming_receiver(self, incoming_payment: object) -> str:
        """An ``incomingPayment`` field as the quote takes it (:meth:`local_receiver`): an
        incoming payment's URL, not a wallet address's."""
        if not isinstance(incoming_payment, str) or not INCOMING_PAYMENT_PATH.match(
            incoming_payment.strip()
        ):
            raise Refused(
                400, "invalid_receiver", "incomingPayment must be an incoming payment URL"
            )
        return await self.local_receiver(incoming_payment)

    async def stored_receiver(self, receiver: str) -> str:
        """``receiver`` as a quote stores it (:func:`kiungo.payments.receivers.stored_receiver`:
        this node's incoming payment by its Open Payments id in its wallet-address form)."""
        return await stored_receiver(self.pool, self.node_settings_url, receiver)

    @property
    def node_settings_url(self) -> str:
        return str(self.server.node.settings.open_payments_url)

    async def server_payment_wallet(self, payment_id: uuid.UUID) -> str | None:
        row = await incoming_payments.by_id(self.pool, payment_id)
        return None if row is None else str(row["url"])

    def receiver_json(self, receiver: str) -> str:
        """The receiver as Open Payments names it: this node's incoming payments by their
        resource server id."""
        return open_payments_receiver(self.base, receiver)

    # -- JSON -----------------------------------------------------------------------------

    def quote_json(self, row: Mapping[str, Any], wallet_url: str) -> dict[str, Any]:
        return resources.quote_json(row, self.base, wallet_url, self.receiver_json(row["receiver"]))

    def payment_json(self, row: Mapping[str, Any], wallet_url: str) -> dict[str, Any]:
        return resources.payment_json(
            row, self.base, wallet_url, self.receiver_json(row["receiver"])
        )

    async def payments_json(
        self, rows: Sequence[Mapping[str, Any]], wallet_url: str
    ) -> list[dict[str, Any]]:
        """Payments as :meth:`payment_json`, each with what it has sent so far
        (:func:`kiungo.payments.outgoing.sent.sent_amounts`, as the admin API shows it)."""
        sent = await sent_amounts(self.server.node.ledger, rows)
        return [
            self.payment_json({**dict(row), "sent_amount": value}, wallet_url)
            for row, value in zip(rows, sent, strict=True)
        ]

    # -- quotes ---------------------------------------------------------------------------

    async def create_quote(self, request: Request) -> Response:
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        document = parse_fields(body, _QUOTE_FIELDS)
        if "create" not in resources.actions(grant.access, QUOTE, None):
            raise Refused(403, "insufficient_grant", "the grant does not allow creating quotes")
        if document.get("method") != "ilp":
            raise bad('method must be "ilp"')
        wallet = await self.server.wallet(document.get("walletAddress"))
        debit = parse_quote_amount(document.get("debitAmount"), "debitAmount")
        receive = parse_quote_amount(document.get("receiveAmount"), "receiveAmount")
        receiver = await self.local_receiver(document.get("receiver"))
        try:
            row = await create_quote(self.quoting, wallet["id"], receiver, debit, receive)
        except quote_errors.QuoteError as exc:
            raise quote_refused(exc) from None
        await resources.set_quote_client(self.pool, row["id"], grant.client)
        return JSONResponse(self.quote_json(row, wallet["url"]), 201)

    async def get_quote(self, request: Request) -> Response:
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        allowed = resources.actions(grant.access, QUOTE, None)
        if "read" not in allowed and "read-all" not in allowed:
            raise Refused(403, "insufficient_grant", "the grant does not allow reading quotes")
        not_found = Refused(404, "not_found", "quote not found")
        try:
            quote_id = uuid.UUID(request.path_params["id"])
        except ValueError:
            raise not_found from None
        owner = await resources.quote_owner(self.pool, quote_id)
        if owner is None or ("read-all" not in allowed and owner["client"] != grant.client):
            raise not_found
        try:
            row = await load_quote(self.pool, quote_id)
        except quote_errors.QuoteNotFound:
            raise not_found from None
        return JSONResponse(self.quote_json(row, owner["url"]))

    # -- outgoing payments ----------------------------------------------------------------

    async def spent_json(self, grant: GrantInfo, item: Mapping[str, Any] | None) -> dict[str, Any]:
        """The grant's spent amounts in its current interval (null before any payment)."""
        nothing: dict[str, Any] = {"spentDebitAmount": None, "spentReceiveAmount": None}
        if item is None:
            return nothing
        limits = grant_limits.GrantLimits.of(grant.grant_id, item.get("limits"))
        bounds = grant_limits.window(limits, datetime.now(UTC))
        if bounds is None:
            return nothing
        used = await grant_limits.spent(self.pool, grant.grant_id, bounds)
        if used.debit_asset is None or used.receive_asset is None:
            return nothing
        return {
            "spentDebitAmount": amount_json(used.debit, *used.debit_asset),
            "spentReceiveAmount": amount_json(used.receive, *used.receive_asset),
        }

    async def create_payment(self, request: Request) -> Response:
        """From a quote (``quoteId``), or from an incoming payment and a debit amount
        (``incomingPayment``, ``debitAmount``: quoted here, the quote stored with the payment)."""
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        document = parse_json_object(body)
        from_incoming = "incomingPayment" in document
        check_fields(document, _FROM_INCOMING_FIELDS if from_incoming else _PAYMENT_FIELDS)
        wallet_url = parse_wallet_url(document.get("walletAddress"))
        if "create" not in resources.actions(grant.access, OUTGOING, wallet_url):
            raise Refused(403, "insufficient_grant", "the grant does not allow create here")
        wallet = await self.server.wallet(wallet_url)
        quote_id = None
        if not from_incoming:
            quote_ref = document.get("quoteId")
            match = self.quote_path.match(quote_ref) if isinstance(quote_ref, str) else None
            if match is None:
                raise bad(
                    f"quoteId must be a quote URL of this resource server ({self.base}/quotes/…)"
                )
            quote_id = uuid.UUID(match["id"])
        metadata = parse_metadata(document.get("metadata"))
        stored_metadata = None if metadata is None else json.dumps(metadata)
        item = resources.outgoing_item(grant.access, wallet["url"])
        limits = grant_limits.GrantLimits.of(
            grant.grant_id, None if item is None else item.get("limits")
        )
        if limits.receiver is not None:
            # The quote holds this node's incoming payments in their wallet-address form.
            limits = replace(limits, receiver=await self.stored_receiver(limits.receiver))
        try:
            if quote_id is not None:
                payment_id = await outgoing.create(
                    self.pool,
                    self.server.node.ledger,
                    wallet["id"],
                    quote_id,
                    stored_metadata,
                    client=grant.client,
                    grant=limits,
                )
            else:
                debit = parse_quote_amount(document.get("debitAmount"), "debitAmount")
                if debit is None:
                    raise bad("debitAmount is required with incomingPayment")
                payment_id = await outgoing.create_from_incoming_payment(
                    self.quoting,
                    self.server.node.ledger,
                    wallet["id"],
                    await self.incoming_receiver(document["incomingPayment"]),
                    debit,
                    stored_metadata,
                    client=grant.client,
                    grant=limits,
                )
        except outgoing.InsufficientGrant as exc:
            raise Refused(403, "insufficient_grant", exc.message) from None
        except (outgoing.OutgoingPaymentError, quote_errors.QuoteError) as exc:
            raise quote_refused(exc) from None
        row = await outgoing.load(self.pool, payment_id)
        spent = await self.spent_json(grant, item)
        return JSONResponse(
            {
                **self.payment_json(row, wallet["url"]),
                **{f"grant{k[0].upper()}{k[1:]}": v for k, v in spent.items() if v is not None},
            },
            201,
        )

    async def get_payment(self, request: Request) -> Response:
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        if not {"read", "read-all"} & resources.actions(grant.access, OUTGOING, None):
            raise Refused(403, "insufficient_grant", "the grant does not allow read")
        not_found = Refused(404, "not_found", "outgoing payment not found")
        try:
            payment_id = uuid.UUID(request.path_params["id"])
        except ValueError:
            raise not_found from None
        row = await resources.payment_by_id(self.pool, payment_id)
        if row is None:
            raise not_found
        wallet_url = await resources.wallet_url(self.pool, row["wallet_address_id"])
        if wallet_url is None:
            raise not_found
        allowed = resources.actions(grant.access, OUTGOING, wallet_url)
        if "read-all" not in allowed and ("read" not in allowed or row["client"] != grant.client):
            raise not_found
        [payment] = await self.payments_json([row], wallet_url)
        return JSONResponse(payment)

    async def list_payments(self, request: Request) -> Response:
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        params = request.query_params
        wallet_url = params.get("wallet-address")
        if wallet_url is None or not storable(wallet_url):
            raise bad("wallet-address is required")
        allowed = resources.actions(grant.access, OUTGOING, wallet_url)
        first, last, client = parse_listing(params, allowed, grant.client)
        wallet = await self.server.wallet(wallet_url)
        raw_cursor = params.get("cursor")
        cursor = None
        if raw_cursor is not None:
            try:
                cursor_id = uuid.UUID(raw_cursor)
            except ValueError:
                raise bad("cursor must be an outgoing payment id") from None
            cursor = await resources.payment_by_id(self.pool, cursor_id)
            if (
                cursor is None
                or cursor["wallet_address_id"] != wallet["id"]
                or (client is not None and cursor["client"] != client)
            ):
                raise bad("cursor names no outgoing payment of this listing")
        backward = last is not None
        size = (last if backward else first) or resources.DEFAULT_PAGE
        rows, more = await resources.page(self.pool, wallet["id"], client, size, cursor, backward)
        pagination: dict[str, Any] = {
            "hasNextPage": cursor is not None if backward else more,
            "hasPreviousPage": more if backward else cursor is not None,
        }
        if rows:
            pagination["startCursor"] = str(rows[0]["id"])
            pagination["endCursor"] = str(rows[-1]["id"])
        return JSONResponse(
            {
                "pagination": pagination,
                "result": await self.payments_json(rows, wallet["url"]),
            }
        )

    async def grant_spent(self, request: Request) -> Response:
        body = await self.server.body(request)
        grant = await self.server.authorize(request, body)
        item = resources.outgoing_item(grant.access, None)
        if item is None:
            raise Refused(403, "insufficient_grant", "the grant has no outgoing-payment access")
        return JSONResponse(await self.spent_json(grant, item))


def sending_routes(
    server: _ResourceServer, guarded: Callable[[Handler], Handler], fallback: Handler
) -> list[Route]:
    """The sending side's routes, each refusal answered by ``guarded``. A ``GET`` without
    ``Authorization`` is no Open Payments request (every one of these needs a token): it goes
    to ``fallback`` (SPSP and wallet address documents), for a wallet address whose path these
    routes would shadow (``/quotes``, ``/outgoing-payments/…``)."""
    sending = _Sending(server)

    def authorized_get(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            if request.method == "GET" and "authorization" not in request.headers:
                return await fallback(request)
            return await guarded(handler)(request)

        return run

    async def payments(request: Request) -> Response:
        if request.method == "POST":
            return await sending.create_payment(request)
        return await sending.list_payments(request)

    return [
        Route("/quotes", guarded(sending.create_quote), methods=["POST"]),
        Route("/quotes/{id}", authorized_get(sending.get_quote), methods=["GET"]),
        Route("/outgoing-payments", authorized_get(payments), methods=["GET", "POST"]),
        Route("/outgoing-payments/{id}", authorized_get(sending.get_payment), methods=["GET"]),
        Route("/outgoing-payment-grant", authorized_get(sending.grant_spent), methods=["GET"]),
    ]
