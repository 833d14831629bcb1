"""The Open Payments authorization server over HTTP (GNAP, RFC 9635, as Open Payments'
auth-server.yaml has it), served at the root of its public URL (AUTH_SERVER_GRANT_URL):

- ``POST /``: a grant request. The client is a wallet address (``client`` as its URL, or
  ``{"walletAddress": URL}``), of this node or of another one (its ``jwks.json`` read over HTTP,
  bounded and kept a few minutes), or is known by an Ed25519 JWK it sends
  (``{"jwk": {...}}``, as Rafiki accepts for non-interactive grants; the key is stored with the
  grant). The request must be signed (RFC 9421) with one of the client's keys
  (:class:`kiungo.openpayments.client_signatures.ClientKeys`); keys that cannot be had are a 400
  ``invalid_client``. Access to ``incoming-payment`` and ``quote`` is granted at once (200 with
  ``access_token`` and ``continue``); ``outgoing-payment`` needs the account holder's consent:
  the request must carry ``interact: {start: ["redirect"], finish: {method: "redirect", uri,
  nonce}}`` and is answered with ``interact.redirect`` (where the client sends the browser:
  :mod:`kiungo.auth.interaction`) and ``continue``, with no token yet.
- ``POST /token/{id}`` rotates, ``DELETE /token/{id}`` revokes an access token, authorized by
  ``Authorization: GNAP <that token>`` and signed by the grant's client.
- ``GET /livez`` and ``GET /readyz`` (Postgres answers), as the other services have them.
- ``POST /continue/{id}`` with ``{"interact_ref": …}`` once consent was given: the access
  token (the reference is used once; without it, or before consent, 401 ``request_denied``),
  and ``DELETE /continue/{id}`` (cancel: the grant and its tokens end), authorized by the
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
from urllib.parse import urlsplit

import asyncpg
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.auth.consent import consent_routes
from kiungo.auth.interaction import interaction_routes
from kiungo.models.sql import stored_json
from kiungo.openpayments import grants, interactions
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
_MAX_NONCE = 256
_MAX_REF = 64
# Seconds a client is asked to wait between continuation requests (Rafiki's WAIT_SECONDS).
_WAIT_SECONDS = 5


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


def _interact_ref(body: bytes) -> str | None:
    """The ``interact_ref`` of a continuation request's body, if it has one."""
    try:
        document = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    ref = document.get("interact_ref") if isinstance(document, dict) else None
    return ref if isinstance(ref, str) and 0 < len(ref) <= _MAX_REF else None


def _access_json(raw: Any) -> list[dict[str, Any]]:
    return list(stored_json(raw))


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


def _interact(document: Mapping[str, Any]) -> tuple[str, str]:
    """The client's redirect finish (its nonce and URI) from a grant request's ``interact``."""
    interact = document.get("interact")
    if not isinstance(interact, Mapping):
        raise _Refused(400, "invalid_request", "outgoing-payment access requires interact")
    start = interact.get("start")
    finish = interact.get("finish")
    if not isinstance(start, list) or "redirect" not in start:
        raise _Refused(400, "invalid_request", 'interact.start must include "redirect"')
    if (
        not isinstance(finish, Mapping)
        or finish.get("method") != "redirect"
        or not isinstance(finish.get("nonce"), str)
        or not 0 < len(finish["nonce"]) <= _MAX_NONCE
        or not isinstance(finish.get("uri"), str)
    ):
        raise _Refused(
            400, "invalid_request", 'interact.finish must be {"method": "redirect", uri, nonce}'
        )
    uri = finish["uri"]
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(uri) > 2048
    ):
        raise _Refused(400, "invalid_request", "interact.finish.uri must be an http(s) URL")
    return finish["nonce"], uri


def auth_app(
    pool: asyncpg.Pool,
    public_url: str,
    *,
    client_keys: ClientKeys,
    expires_in: int = grants.ACCESS_TOKEN_EXPIRY_SECONDS,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
    clock: Callable[[], float] = time.time,
    identity_server_url: str | None = None,
    identity_server_secret: str | None = None,
    interaction_expires_in: int = interactions.INTERACTION_EXPIRY_SECONDS,
    consent_page: bool = False,
) -> Starlette:
    """The authorization server answering at ``public_url`` (what clients address: the URL
    signatures cover, and the base of the ``manage``, ``continue`` and interaction URLs it
    hands out), verifying clients with ``client_keys``; consent to interactive grants is asked
    of the identity provider at ``identity_server_url`` (none: they are refused), which
    authenticates to the interaction API with ``identity_server_secret``. With
    ``consent_page`` (development: ``kiungo up``), the server's own consent page
    (:mod:`kiungo.auth.consent`) stands in for an identity provider that is not given."""
    base = public_url.rstrip("/")
    if consent_page and identity_server_url is None:
        identity_server_url = f"{base}/consent"

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
            finish = _interact(document) if grants.needs_interaction(access) else None
            if finish is not None and identity_server_url is None:
                raise _Refused(400, "invalid_interaction", "interaction is not offered here")
        except _Refused as refused:
            return refused.response
        if finish is not None:
            created = await interactions.create_interactive_grant(
                pool, client, access, client_jwk, *finish, interaction_expires_in
            )
            return JSONResponse(
                {
                    "interact": {
                        "redirect": f"{base}/interact/{created.interact_id}/"
                        f"{created.interact_nonce}",
                        "finish": created.interact_nonce,
                    },
                    "continue": {
                        "access_token": {"value": created.continue_value},
                        "uri": f"{base}/continue/{created.grant_id}",
                        "wait": _WAIT_SECONDS,
                    },
                }
            )
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
                stored_json(holder["client_jwk"]),
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
                stored_json(grant["client_jwk"]),
                body,
                [target(request)],
            )
        except _Refused as refused:
            return refused.response
        if request.method == "DELETE":
            await grants.cancel_grant(pool, grant_id, value)
            return Response(status_code=204)
        interact_ref = _interact_ref(body)
        issued = (
            None
            if interact_ref is None or grant["interact_id"] is None
            else await interactions.continue_grant(pool, grant_id, value, interact_ref, expires_in)
        )
        if issued is None:
            return _error(401, "request_denied", "grant cannot be continued")
        access = _access_json(grant["access"])
        return JSONResponse(
            {
                "access_token": token_json(issued, access),
                "continue": {
                    "access_token": {"value": value},
                    "uri": f"{base}/continue/{grant_id}",
                },
            }
        )

    return Starlette(
        routes=[
            *health_routes(pool, None),
            Route("/", grant_request, methods=["POST"]),
            Route("/token/{id}", token, methods=["POST", "DELETE"]),
            Route("/continue/{id}", continuation, methods=["POST", "DELETE"]),
            *(consent_routes(pool, base) if consent_page else []),
            *interaction_routes(
                pool,
                base,
                identity_server_url=identity_server_url,
                identity_server_secret=identity_server_secret,
            ),
        ]
    )
