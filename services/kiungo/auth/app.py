"""The Open Payments authorization server over HTTP (GNAP, RFC 9635, as Open Payments'
auth-server.yaml has it), served at the root of its public URL (AUTH_SERVER_GRANT_URL):

- ``POST /``: a grant request. The client is a wallet address (``client`` as its URL, or
  ``{"walletAddress": URL}``), of this node or of another one (its ``jwks.json`` read over HTTP,
  bounded and kept a few minutes), or is known by an Ed25519 JWK it sends
  (``{"jwk": {...}}``, as Rafiki accepts for non-interactive grants; the key is stored with the
  grant). The request must be signed (RFC 9421) with one of the client's keys
  (:class:`kiungo.openpayments.client_signatures.ClientKeys`); keys that cannot be had are a 400
  ``invalid_client``. Access to ``incoming-payment`` and ``quote`` is granted at once (200 with
  ``access_token`` and ``continue``); ``outgoing-payment`` needs interaction, which is not offered
  yet (400 ``invalid_request``).
- ``POST /token/{id}`` rotates, ``DELETE /token/{id}`` revokes an access token, authorized by
  ``Authorization: GNAP <that token>`` and signed by the grant's client.
- ``GET /livez`` and ``GET /readyz`` (Postgres answers), as the other services have them.
- ``POST /continue/{id}`` (no grant is ever pending, so 401 ``request_denied``) and
  ``DELETE /continue/{id}`` (cancel: the grant and its tokens end), authorized by the
  continuation token and signed by the client.

Every refusal is ``{"error": {"code", "description"}}`` and changes nothing. State is only in
Postgres (:mod:`kiungo.openpayments.grants`), so any number of these processes can serve.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.openpayments import grants
from kiungo.openpayments.client_signatures import (
    ClientKeys,
    UnknownClient,
    addressed_url,
    jwk_client_id,
    public_jwk,
)
from kiungo.openpayments.http_signatures import DEFAULT_MAX_SKEW_SECONDS, SignatureRejected
from kiungo.openpayments.jwk import InvalidJwk
from kiungo.runtime.health import health_routes

__all__ = ["MAX_BODY_BYTES", "auth_app"]

MAX_BODY_BYTES = 64 * 1024
_GNAP = "gnap "


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "description": description}}, status)


class _Refused(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.response = _error(status, code, description)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _Refused(400, "invalid_request", "body too large or bad Content-Length")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _Refused(400, "invalid_request", "body too large")
    except ClientDisconnect as exc:
        raise _Refused(400, "invalid_request", "the client went away") from exc
    return body


def _gnap_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header[: len(_GNAP)].lower() != _GNAP or not header[len(_GNAP) :].strip():
        raise _Refused(401, "invalid_client", "Authorization: GNAP <token> is required")
    return header[len(_GNAP) :].strip()


def _id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.path_params["id"])
    except ValueError:
        return None


def _access_json(raw: Any) -> list[dict[str, Any]]:
    return list(grants.stored_json(raw))


def _client(document: Mapping[str, Any]) -> tuple[str, dict[str, str] | None]:
    """Who the grant request says its client is: a wallet address URL, or a key (its
    thumbprint URI and the checked JWK)."""
    client = document.get("client")
    if isinstance(client, Mapping) and set(client) == {"walletAddress"}:
        client = client["walletAddress"]
    if isinstance(client, Mapping) and set(client) == {"jwk"}:
        try:
            jwk = public_jwk(client["jwk"])
        except InvalidJwk as exc:
            raise _Refused(400, "invalid_client", f"client jwk: {exc}") from None
        return jwk_client_id(jwk), jwk
    if not isinstance(client, str) or not client or len(client) > 2048:
        raise _Refused(
            400, "invalid_client", 'client must be a wallet address URL or {"jwk": <JWK>}'
        )
    return client, None


def auth_app(
    pool: asyncpg.Pool,
    public_url: str,
    *,
    client_keys: ClientKeys,
    expires_in: int = grants.ACCESS_TOKEN_EXPIRY_SECONDS,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The authorization server answering at ``public_url`` (what clients address: the URL
    signatures cover, and the base of the ``manage`` and ``continue`` URLs it hands out),
    verifying clients with ``client_keys``."""
    base = public_url.rstrip("/")

    async def verify(
        request: Request,
        client: str,
        client_jwk: Mapping[str, Any] | None,
        body: bytes,
        targets: Sequence[str],
    ) -> None:
        try:
            await client_keys.verify(
                client,
                client_jwk,
                method=request.method,
                targets=targets,
                headers=request.headers.items(),
                body=body,
                now=int(clock()),
                max_skew=max_skew,
            )
        except UnknownClient as exc:
            raise _Refused(400, "invalid_client", f"unknown client: {exc}") from None
        except SignatureRejected as exc:
            raise _Refused(401, "invalid_client", f"invalid signature: {exc.reason}") from None

    def target(request: Request) -> str:
        return addressed_url(base, request.scope)

    def token_json(token: grants.IssuedToken, access: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "value": token.value,
            "manage": f"{base}/token/{token.id}",
            "expires_in": token.expires_in,
            "access": access,
        }

    async def grant_request(request: Request) -> Response:
        try:
            body = await _body(request)
            try:
                document = json.loads(body)
            except (ValueError, RecursionError):
                # RecursionError: a body of nested arrays deeper than the decoder's stack.
                raise _Refused(400, "invalid_request", "body must be JSON") from None
            if not isinstance(document, dict):
                raise _Refused(400, "invalid_request", "body must be a JSON object")
            client, client_jwk = _client(document)
            # The grant URL may be addressed with or without its trailing slash.
            path_targets = [target(request)]
            if request.url.path == "/" and not request.url.query:
                path_targets.append(base)
            await verify(request, client, client_jwk, body, path_targets)
            access_token = document.get("access_token")
            if not isinstance(access_token, Mapping):
                raise _Refused(400, "invalid_request", "access_token is required")
            try:
                access = grants.parse_access(access_token.get("access"))
            except grants.AccessRefused as exc:
                raise _Refused(400, exc.code, exc.description) from None
        except _Refused as refused:
            return refused.response
        grant_id, token, continue_value = await grants.create_grant(
            pool, client, access, expires_in, client_jwk
        )
        return JSONResponse(
            {
                "access_token": token_json(token, access),
                "continue": {
                    "access_token": {"value": continue_value},
                    "uri": f"{base}/continue/{grant_id}",
                },
            }
        )

    async def token(request: Request) -> Response:
        rotating = request.method == "POST"
        try:
            body = await _body(request)
            value = _gnap_token(request)
            token_id = _id(request)
            holder = None if token_id is None else await grants.token_holder(pool, token_id, value)
            if holder is None or token_id is None:
                if rotating:
                    raise _Refused(404, "invalid_rotation", "unknown or revoked token")
                raise _Refused(401, "invalid_client", "unknown or revoked token")
            await verify(
                request,
                holder["client"],
                grants.stored_json(holder["client_jwk"]),
                body,
                [target(request)],
            )
        except _Refused as refused:
            return refused.response
        if not rotating:
            await grants.revoke_token(pool, token_id, value)
            return Response(status_code=204)
        issued = await grants.rotate_token(pool, token_id, value, expires_in)
        if issued is None:  # a concurrent rotation or revocation won
            return _error(404, "invalid_rotation", "unknown or revoked token")
        return JSONResponse({"access_token": token_json(issued, _access_json(holder["access"]))})

    async def continuation(request: Request) -> Response:
        try:
            body = await _body(request)
            value = _gnap_token(request)
            grant_id = _id(request)
            grant = (
                None
                if grant_id is None
                else await grants.grant_for_continuation(pool, grant_id, value)
            )
            if grant is None or grant_id is None:
                raise _Refused(401, "invalid_continuation", "unknown grant or continuation token")
            await verify(
                request,
                grant["client"],
                grants.stored_json(grant["client_jwk"]),
                body,
                [target(request)],
            )
        except _Refused as refused:
            return refused.response
        if request.method == "DELETE":
            await grants.cancel_grant(pool, grant_id, value)
            return Response(status_code=204)
        # Grants are approved when requested; there is never an interaction to continue.
        return _error(401, "request_denied", "grant cannot be continued")

    return Starlette(
        routes=[
            *health_routes(pool, None),
            Route("/", grant_request, methods=["POST"]),
            Route("/token/{id}", token, methods=["POST", "DELETE"]),
            Route("/continue/{id}", continuation, methods=["POST", "DELETE"]),
        ]
    )
