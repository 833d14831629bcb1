"""Another node's Open Payments servers, played by one real HTTP server: its wallet address
``<url>/bob``, authorization server ``<url>/auth`` and resource server ``<url>``, each step
answering well or misbehaving (garbage, huge, HTML, redirects, other shapes, 401, 404, slow,
interaction) as ``modes`` says, and checking that requests are signed with the paying node's
key and carry the tokens it issued."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from tests.loopback import serve

from kiungo.openpayments.http_signatures import SignatureRejected, verify_request

STEPS = ("wallet", "grant", "create", "public", "read", "complete", "rotate")


def _method(payment_id: str) -> dict[str, str]:
    return {"type": "ilp", "ilpAddress": "test.other.bob",
            "sharedSecret": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}  # fmt: skip


@dataclass
class OtherNode:
    """Another node's wallet address ``<url>/bob``, authorization server ``<url>/auth`` and
    resource server ``<url>``; ``modes[step]`` says how each step answers."""

    url: str = ""
    client: str = ""
    """The wallet address the paying node names itself by; ``jwk`` its key."""
    jwk: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STEPS, "ok"))
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))
    expires_in: int = 600
    tokens: set[str] = field(default_factory=set)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    method: Callable[[str], dict[str, str]] = _method
    """The ``ilp`` payment method of a payment (by its id) while it is open."""
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def wallet(self) -> str:
        return f"{self.url}/bob"

    async def misbehave(self, step: str, good: Response) -> Response:
        self.hits[step] += 1
        match self.modes[step]:
            case "ok":
                return good
            case "garbage":
                return Response(b"\x00{not json", media_type="application/json")
            case "huge":
                return Response(b"[" * (1024 * 1024), media_type="application/json")
            case "html":
                return Response(b"<html>hi</html>", media_type="text/html")
            case "redirect":
                return RedirectResponse(f"{self.url}/elsewhere", 302)
            case "shape":
                return JSONResponse({"id": 5, "value": ["nope"]}, good.status_code)
            case "unauthorized":
                return JSONResponse({"error": {"code": "unauthorized"}}, 401)
            case "missing":
                return JSONResponse({"error": {"code": "not_found"}}, 404)
            case "interact":
                return JSONResponse(
                    {"interact": {"redirect": f"{self.url}/consent"},
                     "continue": {"access_token": {"value": "c"}, "uri": f"{self.url}/c"}}
                )  # fmt: skip
            case "slow":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await self.released.wait()
                return good
        raise AssertionError(self.modes[step])

    def signed(self, request: Request, body: bytes) -> bool:
        try:
            verify_request(
                method=request.method,
                target_uri=str(request.url),
                headers=request.headers.items(),
                body=body,
                jwks=[self.jwk],
                now=int(time.time()),
            )
        except SignatureRejected:
            return False
        return True

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("GNAP ") and header[5:] in self.tokens

    def token(self) -> dict[str, Any]:
        value = uuid.uuid4().hex
        self.tokens.add(value)
        return {"value": value, "manage": f"{self.url}/auth/token/{value}",
                "expires_in": self.expires_in}  # fmt: skip

    async def wallet_document(self, request: Request) -> Response:
        document = {"id": self.wallet, "publicName": "Bob", "assetCode": "USD", "assetScale": 2,
                    "authServer": f"{self.url}/auth", "resourceServer": self.url}  # fmt: skip
        return await self.misbehave("wallet", JSONResponse(document))

    async def grant(self, request: Request) -> Response:
        body = await request.body()
        if not self.signed(request, body):
            return JSONResponse({"error": {"code": "invalid_client"}}, 401)
        request_json = json.loads(body)
        assert request_json["client"] == self.client
        access = request_json["access_token"]["access"]
        token = {**self.token(), "access": access}
        answer = {
            "access_token": token,
            "continue": {"access_token": {"value": "c"}, "uri": f"{self.url}/auth/c/1"},
        }
        return await self.misbehave("grant", JSONResponse(answer))  # fmt: skip

    async def rotate(self, request: Request) -> Response:
        old = request.path_params["token"]
        if not self.authorized(request) or not self.signed(request, b""):
            return JSONResponse({"error": {"code": "invalid_rotation"}}, 404)
        self.tokens.discard(old)
        return await self.misbehave("rotate", JSONResponse({"access_token": self.token()}))

    def payment_json(self, payment: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in payment.items() if value is not None}

    def add_payment(self, incoming: int | None) -> str:
        """A payment made on this node by someone else; its URL."""
        payment_id = str(uuid.uuid4())
        self.payments[payment_id] = {
            "id": f"{self.url}/incoming-payments/{payment_id}",
            "walletAddress": self.wallet,
            "incomingAmount": (
                None
                if incoming is None
                else {"value": str(incoming), "assetCode": "USD", "assetScale": 2}
            ),
            "receivedAmount": {"value": "0", "assetCode": "USD", "assetScale": 2},
            "completed": False,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return f"{self.url}/incoming-payments/{payment_id}"

    async def create(self, request: Request) -> Response:
        body = await request.body()
        if not self.authorized(request) or not self.signed(request, body):
            return await self.misbehave("create", JSONResponse({"error": {}}, 401))
        given = json.loads(body)
        payment_id = str(uuid.uuid4())
        payment = {
            "id": f"{self.url}/incoming-payments/{payment_id}",
            "walletAddress": given["walletAddress"],
            "incomingAmount": given.get("incomingAmount"),
            "receivedAmount": {"value": "0", "assetCode": "USD", "assetScale": 2},
            "completed": False,
            "expiresAt": given.get("expiresAt"),
            "metadata": given.get("metadata"),
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        self.payments[payment_id] = payment
        good = JSONResponse(
            {**self.payment_json(payment), "methods": [self.method(payment_id)]}, 201
        )
        return await self.misbehave("create", good)

    async def one(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["id"])
        if "authorization" not in request.headers:
            if payment is None:
                return await self.misbehave("public", JSONResponse({"error": {}}, 404))
            public = {"receivedAmount": payment["receivedAmount"], "authServer": f"{self.url}/auth"}
            return await self.misbehave("public", JSONResponse(public))
        if not self.authorized(request) or not self.signed(request, b""):
            return await self.misbehave("read", JSONResponse({"error": {}}, 401))
        if payment is None:
            return await self.misbehave("read", JSONResponse({"error": {}}, 404))
        methods = [] if payment["completed"] else [self.method(request.path_params["id"])]
        return await self.misbehave(
            "read", JSONResponse({**self.payment_json(payment), "methods": methods})
        )

    async def complete(self, request: Request) -> Response:
        payment = self.payments.get(request.path_params["id"])
        if not self.authorized(request) or not self.signed(request, b""):
            return await self.misbehave("complete", JSONResponse({"error": {}}, 401))
        if payment is None:
            return await self.misbehave("complete", JSONResponse({"error": {}}, 404))
        payment["completed"] = True
        return await self.misbehave("complete", JSONResponse(self.payment_json(payment)))


@contextlib.asynccontextmanager
async def other_node() -> AsyncIterator[OtherNode]:
    node = OtherNode()
    routes = [
        Route("/bob", node.wallet_document, methods=["GET"]),
        Route("/auth", node.grant, methods=["POST"]),
        Route("/auth/token/{token}", node.rotate, methods=["POST"]),
        Route("/incoming-payments", node.create, methods=["POST"]),
        Route("/incoming-payments/{id}", node.one, methods=["GET"]),
        Route("/incoming-payments/{id}/complete", node.complete, methods=["POST"]),
    ]
    async with serve(Starlette(routes=routes)) as url:
        node.url = url
        try:
            yield node
        finally:
            node.released.set()
