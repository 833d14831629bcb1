"""A minimal ILP-over-HTTP server in front of our STREAM receiver, for interop tests.

Only what a test needs to be paid through real HTTP: a bearer token, a maximum packet amount
enforced the way a connector does (F08 with its data), our StreamReceiver with a running total per
connection, and SPSP with receipt headers. The real connector comes with its own issue.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Fulfill, Reject, decode_prepare, encode_packet
from kiungo.spsp import (
    SPSP_CONTENT_TYPE,
    InvalidReceiptHeaders,
    SpspResponse,
    parse_receipt_headers,
)
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, ReceiptSetup, StreamServer

OCTETS = "application/octet-stream"


@dataclass
class ReceiverNode:
    address: str
    asset: Asset
    token: str
    max_packet_amount: int
    server_secret: bytes = field(default_factory=lambda: os.urandom(32))
    totals: dict[str, int] = field(default_factory=dict)
    by_tag: dict[str | None, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.receiver = StreamReceiver(StreamServer(self.server_secret, self.address))

    @property
    def total_received(self) -> int:
        return sum(self.totals.values())

    async def ilp(self, request: Request) -> Response:
        expected = f"Bearer {self.token}".encode()
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            return Response(status_code=401)
        if request.headers.get("content-type") != OCTETS:
            return Response(status_code=400)
        try:
            prepare = decode_prepare(await request.body())
        except DecodeError as exc:
            return self._reply(Reject("F01", self.address, str(exc)[:200], b""))
        if prepare.amount > self.max_packet_amount:
            error = AmountTooLargeError(prepare.amount, self.max_packet_amount)
            return self._reply(error.to_reject(self.address))
        result = self.receiver.receive(prepare)
        if isinstance(result, IncomingMoney):
            total = self.totals.get(result.connection_id, 0) + result.amount
            self.totals[result.connection_id] = total
            self.by_tag[result.payment_tag] = self.by_tag.get(result.payment_tag, 0) + result.amount
            return self._reply(result.accept(total))
        return self._reply(result)

    def _reply(self, packet: Fulfill | Reject) -> Response:
        return Response(encode_packet(packet), media_type=OCTETS)

    async def spsp(self, request: Request) -> Response:
        try:
            receipts = parse_receipt_headers(
                request.headers.get("receipt-nonce"), request.headers.get("receipt-secret")
            )
        except InvalidReceiptHeaders as exc:
            return JSONResponse({"id": "InvalidReceiptSetup", "message": str(exc)}, 400)
        credentials = self.receiver.server.generate_credentials(
            payment_tag=request.path_params["name"],
            receipt_setup=ReceiptSetup(*receipts) if receipts else None,
            asset=self.asset,
        )
        body = SpspResponse(
            credentials.destination_account, credentials.shared_secret, receipts is not None
        )
        return JSONResponse(body.to_json(), media_type=SPSP_CONTENT_TYPE)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/ilp", self.ilp, methods=["POST"]),
                Route("/{name}", self.spsp, methods=["GET"]),
            ]
        )
