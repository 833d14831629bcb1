"""The authorization server's interaction endpoints for grants that need the account holder's
consent (Rafiki's auth service shape; state in :mod:`kiungo.openpayments.interactions`):

- ``GET /interact/{id}/{nonce}``: the browser starts the interaction (the ``interact.redirect``
  a grant answered); the grant goes PENDING, a session cookie is set, and the browser is sent
  to IDENTITY_SERVER_URL with ``interactId``, ``nonce``, ``clientName`` and ``clientUri``.
- ``GET /grant/{id}/{nonce}``: the identity provider reads the grant (``{access, state}``).
- ``POST /grant/{id}/{nonce}/accept`` and ``/reject``: the identity provider records the
  answer (202). Both are authorized by ``x-idp-secret: IDENTITY_SERVER_SECRET``.
- ``GET /interact/{id}/{nonce}/finish``: the browser returns (with the session cookie); it is
  sent to the client's ``finish.uri`` with ``hash`` and ``interact_ref`` when accepted, or
  ``result=grant_rejected`` / ``result=grant_invalid``.

Refusals are GNAP's ``{"error": {"code", "description"}}`` and change nothing.
"""

from __future__ import annotations

import hmac
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kiungo.models import GrantState
from kiungo.models.sql import stored_json
from kiungo.openpayments import interactions
from kiungo.openpayments.grants import PENDING

__all__ = ["SESSION_COOKIE", "interaction_routes", "with_query"]

SESSION_COOKIE = "kiungo_interaction"
_MAX_NONCE = 64


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "description": description}}, status)


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query (what it had kept)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _address(request: Request) -> tuple[uuid.UUID, str] | None:
    nonce = request.path_params["nonce"]
    try:
        interact_id = uuid.UUID(request.path_params["id"])
    except ValueError:
        return None
    if not 0 < len(nonce) <= _MAX_NONCE:
        return None
    return interact_id, nonce


def interaction_routes(
    pool: asyncpg.Pool,
    base: str,
    *,
    identity_server_url: str | None,
    identity_server_secret: str | None,
) -> list[Route]:
    """The interaction routes of the authorization server at ``base`` (its public URL, without
    trailing slash; the grant endpoint is ``base + "/"``)."""
    grant_url = f"{base}/"

    def cookie_path(interact_id: uuid.UUID) -> str:
        return f"{urlsplit(base).path.rstrip('/')}/interact/{interact_id}/"

    def idp_refusal(request: Request) -> Response | None:
        presented = request.headers.get("x-idp-secret")
        if (
            identity_server_secret is None
            or presented is None
            or not hmac.compare_digest(presented.encode(), identity_server_secret.encode())
        ):
            return _error(401, "invalid_request", "invalid x-idp-secret")
        return None

    async def start(request: Request) -> Response:
        address = _address(request)
        if identity_server_url is None:
            return _error(401, "unknown_interaction", "no identity provider is configured")
        session = interactions.new_session()
        if address is None or not await interactions.start(pool, *address, session):
            return _error(401, "unknown_interaction", "unknown interaction")
        params = {"interactId": str(address[0]), "nonce": address[1]}
        for name in ("clientName", "clientUri"):
            value = request.query_params.get(name)
            if value is not None:
                params[name] = value
        response = RedirectResponse(with_query(identity_server_url, params), 302)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=interactions.INTERACTION_EXPIRY_SECONDS,
            path=cookie_path(address[0]),
            httponly=True,
            samesite="lax",
            secure=base.startswith("https:"),
        )
        return response

    async def details(request: Request) -> Response:
        refusal = idp_refusal(request)
        if refusal is not None:
            return refusal
        address = _address(request)
        grant = None if address is None else await interactions.find(pool, *address)
        if grant is None or interactions.revoked(grant):
            return _error(404, "unknown_interaction", "unknown interaction")
        return JSONResponse(
            {"access": stored_json(grant["access"]), "state": grant["interact_state"]}
        )

    async def choose(request: Request) -> Response:
        refusal = idp_refusal(request)
        if refusal is not None:
            return refusal
        choice = request.path_params["choice"]
        address = _address(request)
        grant = None if address is None else await interactions.find(pool, *address)
        if grant is None or address is None:
            return _error(404, "unknown_interaction", "unknown interaction")
        if interactions.revoked(grant):
            return _error(401, "user_denied", "user denied interaction")
        if choice not in ("accept", "reject"):
            return _error(400, "invalid_request", "invalid interaction choice")
        if not await interactions.choose(pool, *address, choice == "accept"):
            return _error(400, "invalid_interaction", "invalid interaction")
        return Response(status_code=202)

    async def finish(request: Request) -> Response:
        address = _address(request)
        session = request.cookies.get(SESSION_COOKIE)
        grant = None if address is None else await interactions.find(pool, *address)
        if grant is None or address is None or interactions.revoked(grant):
            return _error(404, "unknown_interaction", "unknown interaction")
        if session is None or not interactions.same_session(grant, session):
            return _error(401, "invalid_request", "invalid session")
        if grant["state"] not in (GrantState.PROCESSING.value, PENDING):
            return _error(401, "invalid_interaction", "interaction already finished")
        await interactions.finish(pool, *address, grant["interact_state"])
        if grant["interact_state"] == interactions.I_APPROVED:
            params = {
                "hash": interactions.interaction_hash(
                    grant["client_nonce"], address[1], grant["interact_ref"], grant_url
                ),
                "interact_ref": grant["interact_ref"],
            }
        elif grant["interact_state"] == interactions.I_DENIED:
            params = {"result": "grant_rejected"}
        else:
            params = {"result": "grant_invalid"}
        response = RedirectResponse(with_query(grant["finish_uri"], params), 302)
        response.delete_cookie(SESSION_COOKIE, path=cookie_path(address[0]))
        return response

    return [
        Route("/interact/{id}/{nonce}", start, methods=["GET"]),
        Route("/interact/{id}/{nonce}/finish", finish, methods=["GET"]),
        Route("/grant/{id}/{nonce}", details, methods=["GET"]),
        Route("/grant/{id}/{nonce}/{choice}", choose, methods=["POST"]),
    ]
