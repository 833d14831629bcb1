"""SPSP on every wallet address and incoming payment URL (RFC 9).

``GET <wallet address URL>`` (and ``/.well-known/pay`` for the host's own pointer),
``GET <wallet address URL>/incoming-payments/<id>`` or the incoming payment's Open Payments URL
``GET <OPEN_PAYMENTS_URL>/incoming-payments/<id>`` (:func:`incoming_payment_spsp`, called by the
resource server for requests without ``Authorization``) with ``Accept: application/spsp4+json``
answers a STREAM destination and shared secret whose payment tag names that receiver, so a
sender on any node can pay it. The incoming payment URL with ``Accept: application/json``
answers how far it has got (:mod:`kiungo.openpayments.remote`), completed or expired too; the wallet
address URL with JSON accepted (or no ``Accept``) answers its Open Payments document
(:mod:`kiungo.connector.wallet_address`).
``Receipt-Nonce``/``Receipt-Secret`` put receipts in the connection;
CORS headers let Web Monetization agents in browsers ask.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kiungo.connector.node import Node
from kiungo.connector.receivers import Receiver, ReceiverKind
from kiungo.connector.wallet_address import accepts_json, wallet_address_document_response
from kiungo.connector.wallet_not_found import report_unknown_wallet_address
from kiungo.ledger import UnknownAccount
from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    IncomingPaymentView,
    wants_json,
)
from kiungo.payments.incoming import States
from kiungo.payments.receivers import incoming_payment_url
from kiungo.spsp import (
    SPSP_CONTENT_TYPE,
    InvalidReceiptHeaders,
    SpspResponse,
    accepts_spsp,
    parse_receipt_headers,
)
from kiungo.stream.server import Asset, ReceiptSetup

__all__ = ["CORS_HEADERS", "find_receiver", "incoming_payment_spsp", "spsp_endpoint"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "web-monetization-id, receipt-nonce, receipt-secret",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}


def _error(status: int, error_id: str, message: str) -> Response:
    return JSONResponse({"id": error_id, "message": message}, status, headers=CORS_HEADERS)


async def spsp_endpoint(node: Node, request: Request) -> Response:
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CORS_HEADERS)
    base = node.settings.open_payments_url.rstrip("/")
    url = base + request.url.path.rstrip("/")
    receiver = await find_receiver(node, url)
    if receiver is None and url != base and INCOMING_PAYMENT_PATH.match(url) is None:
        await report_unknown_wallet_address(node, url)
    accept = request.headers.get("accept")
    if (
        receiver is not None
        and receiver.kind is ReceiverKind.INCOMING_PAYMENT
        and wants_json(accept)
        and not accepts_spsp(accept)
    ):
        return await _incoming_payment_view(node, receiver)
    if (
        receiver is not None
        and receiver.kind is ReceiverKind.WALLET_ADDRESS
        and not accepts_spsp(accept)
        and accepts_json(accept)
    ):
        return await wallet_address_document_response(node, receiver.url)
    return _spsp_answer(request, node, receiver)


async def incoming_payment_spsp(node: Node, request: Request, payment_id: uuid.UUID) -> Response:
    """SPSP for the incoming payment ``payment_id`` (a GET that accepts
    ``application/spsp4+json``, or its CORS preflight), as on its wallet address URL: the same
    credentials, 404 once it is closed or when it is unknown."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CORS_HEADERS)
    return _spsp_answer(request, node, await node.receivers.incoming_payment(payment_id))


def _spsp_answer(request: Request, node: Node, receiver: Receiver | None) -> Response:
    accept = request.headers.get("accept")
    if receiver is None or not receiver.open_at(datetime.now(UTC)):
        return _error(404, "InvalidReceiverError", "Invalid receiver ID")
    if not accepts_spsp(accept):
        return _error(406, "NotAcceptable", "this endpoint serves application/spsp4+json")
    try:
        receipts = parse_receipt_headers(
            request.headers.get("receipt-nonce"), request.headers.get("receipt-secret")
        )
    except InvalidReceiptHeaders as exc:
        return _error(400, "InvalidReceiptSetup", str(exc))
    credentials = node.stream_server.generate_credentials(
        payment_tag=receiver.tag,
        receipt_setup=ReceiptSetup(*receipts) if receipts else None,
        asset=Asset(receiver.asset_code, receiver.asset_scale),
    )
    body = SpspResponse(
        credentials.destination_account, credentials.shared_secret, receipts is not None
    )
    return JSONResponse(
        body.to_json(),
        media_type=SPSP_CONTENT_TYPE,
        headers={**CORS_HEADERS, "Cache-Control": "no-cache"},
    )


async def _incoming_payment_view(node: Node, receiver: Receiver) -> Response:
    """The incoming payment as another node reads it (:mod:`kiungo.openpayments.remote`), open or
    not: what it expects, what it has received, whether it still accepts money."""
    try:
        received = (await node.ledger.balance(receiver.account_id)).credits_posted
    except UnknownAccount:
        received = 0
    view = IncomingPaymentView(
        id=incoming_payment_url(receiver.url, receiver.id),
        wallet_address=receiver.url,
        asset_code=receiver.asset_code,
        asset_scale=receiver.asset_scale,
        incoming_amount=receiver.incoming_amount,
        received_amount=received,
        completed=receiver.state == States.COMPLETED,
        expires_at=receiver.expires_at,
        created_at=receiver.created_at,
    )
    return JSONResponse(view.to_json(), headers={**CORS_HEADERS, "Cache-Control": "no-cache"})


async def find_receiver(node: Node, url: str) -> Receiver | None:
    """The wallet address or incoming payment of this node at ``url`` (under
    OPEN_PAYMENTS_URL, without a trailing slash), open or not."""
    if "\x00" in url:
        return None  # no URL we store holds a NUL (and Postgres text cannot)
    match = INCOMING_PAYMENT_PATH.match(url)
    if match is not None:
        try:
            payment_id = uuid.UUID(match["id"])
        except ValueError:
            return None
        payment = await node.receivers.incoming_payment(payment_id)
        if payment is None or payment.url != match["wallet"]:
            return None
        return payment
    return await node.receivers.wallet_address_by_url(url)
