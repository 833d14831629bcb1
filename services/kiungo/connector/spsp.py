"""SPSP on every wallet address and incoming payment URL (RFC 9).

``GET <wallet address URL>`` (and ``/.well-known/pay`` for the host's own pointer) or
``GET <wallet address URL>/incoming-payments/<id>`` with ``Accept: application/spsp4+json``
answers a STREAM destination and shared secret whose payment tag names that receiver, so a
sender on any node can pay it. ``Receipt-Nonce``/``Receipt-Secret`` put receipts in the
connection; CORS headers let Web Monetization agents in browsers ask.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kiungo.connector.node import Node
from kiungo.connector.receivers import Receiver
from kiungo.spsp import (
    SPSP_CONTENT_TYPE,
    InvalidReceiptHeaders,
    SpspResponse,
    accepts_spsp,
    parse_receipt_headers,
)
from kiungo.stream.server import Asset, ReceiptSetup

__all__ = ["CORS_HEADERS", "find_receiver", "spsp_endpoint"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "web-monetization-id, receipt-nonce, receipt-secret",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}
_INCOMING_PAYMENT_PATH = re.compile(
    r"^(?P<wallet>.*)/incoming-payments/(?P<id>[0-9a-fA-F-]{32,36})$"
)


def _error(status: int, error_id: str, message: str) -> Response:
    return JSONResponse({"id": error_id, "message": message}, status, headers=CORS_HEADERS)


async def spsp_endpoint(node: Node, request: Request) -> Response:
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CORS_HEADERS)
    base = node.settings.open_payments_url.rstrip("/")
    receiver = await find_receiver(node, base + request.url.path.rstrip("/"))
    if receiver is None or not receiver.open_at(datetime.now(UTC)):
        return _error(404, "InvalidReceiverError", "Invalid receiver ID")
    if not accepts_spsp(request.headers.get("accept")):
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


async def find_receiver(node: Node, url: str) -> Receiver | None:
    """The wallet address or incoming payment of this node at ``url`` (under
    OPEN_PAYMENTS_URL, without a trailing slash), open or not."""
    match = _INCOMING_PAYMENT_PATH.match(url)
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
