"""A minimal consent page standing in for the operator's identity provider, for development
(``kiungo up`` without IDENTITY_SERVER_URL): it shows the grant's client and access and lets
whoever holds the browser accept or reject it. It authenticates no one — an operator's real
identity provider logs the account holder in first — so ``kiungo auth`` never serves it.

- ``GET /consent?interactId=…&nonce=…`` (where the interaction start sends the browser) goes on
  to ``GET /interact/{id}/{nonce}/consent``, under the interaction's cookie path, so the page
  and its form are bound to the browser that started the interaction.
- ``POST /interact/{id}/{nonce}/consent`` with ``choice=accept|reject`` records the answer as
  the identity provider's API would, then sends the browser to the interaction's finish.
"""

from __future__ import annotations

import html
import json
import uuid
from urllib.parse import parse_qs

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kiungo.auth.interaction import SESSION_COOKIE
from kiungo.models.sql import stored_json
from kiungo.openpayments import interactions

__all__ = ["consent_routes"]

_MAX_FORM = 1024
_MAX_NONCE = 64


def _page(status: int, title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status,
    )


def _address(id_text: str | None, nonce: str | None) -> tuple[uuid.UUID, str] | None:
    if id_text is None or nonce is None or not 0 < len(nonce) <= _MAX_NONCE:
        return None
    try:
        return uuid.UUID(id_text), nonce
    except ValueError:
        return None


def consent_routes(pool: asyncpg.Pool, base: str) -> list[Route]:
    """The consent page of the authorization server at ``base`` (no trailing slash)."""

    async def pending(request: Request) -> tuple[tuple[uuid.UUID, str], asyncpg.Record] | Response:
        address = _address(request.path_params["id"], request.path_params["nonce"])
        grant = None if address is None else await interactions.find(pool, *address)
        if grant is None or address is None or interactions.revoked(grant):
            return _page(404, "Unknown request", "<p>There is no such request.</p>")
        session = request.cookies.get(SESSION_COOKIE)
        if session is None or not interactions.same_session(grant, session):
            return _page(401, "Not your request", "<p>Start again from the application.</p>")
        if grant["interact_state"] != interactions.I_PENDING or grant["expired"]:
            return _page(400, "Request no longer open", "<p>It was answered or has expired.</p>")
        return address, grant

    async def landing(request: Request) -> Response:
        address = _address(
            request.query_params.get("interactId"), request.query_params.get("nonce")
        )
        if address is None:
            return _page(400, "Bad request", "<p>interactId and nonce are required.</p>")
        return RedirectResponse(f"{base}/interact/{address[0]}/{address[1]}/consent", 303)

    async def show(request: Request) -> Response:
        found = await pending(request)
        if isinstance(found, Response):
            return found
        _, grant = found
        access = json.dumps(stored_json(grant["access"]), indent=2)
        form = (
            f"<p><b>{html.escape(grant['client'])}</b> asks for:</p>"
            f"<pre>{html.escape(access)}</pre>"
            "<form method='post'>"
            "<button name='choice' value='accept'>Accept</button> "
            "<button name='choice' value='reject'>Reject</button></form>"
            "<p><small>Development consent page: it does not check who you are.</small></p>"
        )
        return _page(200, "Allow this payment access?", form)

    async def answer(request: Request) -> Response:
        found = await pending(request)
        if isinstance(found, Response):
            return found
        address, _ = found
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > _MAX_FORM:
                    return _page(400, "Bad request", "<p>Form too large.</p>")
        except ClientDisconnect:
            return _page(400, "Bad request", "<p>The form did not arrive.</p>")
        choice = parse_qs(body.decode("latin-1")).get("choice", [""])[0]
        if choice not in ("accept", "reject"):
            return _page(400, "Bad request", "<p>Choose accept or reject.</p>")
        if not await interactions.choose(pool, *address, choice == "accept"):
            return _page(400, "Request no longer open", "<p>It was answered or has expired.</p>")
        finish = f"{base}/interact/{address[0]}/{address[1]}/finish"
        return RedirectResponse(finish, 303)

    return [
        Route("/consent", landing, methods=["GET"]),
        Route("/interact/{id}/{nonce}/consent", show, methods=["GET"]),
        Route("/interact/{id}/{nonce}/consent", answer, methods=["POST"]),
    ]
