"""A wallet address as Open Payments clients read it: ``GET <wallet address URL>`` with JSON
accepted answers its document, ``GET <wallet address URL>/jwks.json`` its active keys
(:mod:`kiungo.openpayments.wallet_address_keys`; for this node's own WALLET_ADDRESS_URL, its
Open Payments client key, :mod:`kiungo.openpayments.identity`). Anonymous reads, as the wallet
address server API has them: an unknown or inactive wallet address is a 404."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kiungo.connector.node import Node
from kiungo.openpayments.identity import node_identity
from kiungo.openpayments.wallet_address_keys import active_jwks, wallet_address_document

__all__ = ["accepts_json", "jwks_endpoint", "wallet_address_document_response"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "accept",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}
# The document changes rarely (the spec asks servers to let it be cached), but a deactivated
# wallet address must stop being served soon: a minute.
_CACHE = {"Cache-Control": "public, max-age=60"}
_JWKS_SUFFIX = "/jwks.json"


def accepts_json(accept: str | None) -> bool:
    """True when ``Accept`` allows ``application/json``: absent or empty (Rafiki serves the
    document by default), or ``application/json``, ``application/*`` or ``*/*`` not at q=0."""
    if accept is None or not accept.strip():
        return True
    for part in accept.split(","):
        media, *params = part.split(";")
        if media.strip().lower() in ("application/json", "application/*", "*/*") and _q(params):
            return True
    return False


def _q(params: list[str]) -> bool:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) > 0
            except ValueError:
                return False
    return True


def _not_found() -> Response:
    return JSONResponse(
        {"error": {"code": "404", "description": "wallet address not found"}},
        404,
        headers=CORS_HEADERS,
    )


async def wallet_address_document_response(node: Node, url: str) -> Response:
    """The wallet address document of ``url`` (under OPEN_PAYMENTS_URL, no trailing slash)."""
    document = await wallet_address_document(
        node.pool,
        url,
        auth_server=node.settings.auth_server_grant_url,
        resource_server=node.settings.open_payments_url.rstrip("/"),
    )
    if document is None:
        return _not_found()
    return JSONResponse(document, headers={**CORS_HEADERS, **_CACHE})


async def jwks_endpoint(node: Node, request: Request) -> Response:
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=CORS_HEADERS)
    path = request.url.path
    if "\x00" in path or not path.endswith(_JWKS_SUFFIX):
        return _not_found()
    wallet_path = path[: -len(_JWKS_SUFFIX)].rstrip("/")
    if not wallet_path:
        return _not_found()
    url = node.settings.open_payments_url.rstrip("/") + wallet_path
    identity = node_identity(node.settings)
    if url == identity.wallet_address:
        # This node's own wallet address (WALLET_ADDRESS_URL), as its Open Payments client: the
        # key it signs its requests to other nodes with (as Rafiki serves it).
        return JSONResponse(
            {"keys": [identity.jwk()]}, headers={**CORS_HEADERS, "Cache-Control": "no-cache"}
        )
    keys = await active_jwks(node.pool, url)
    if keys is None:
        return _not_found()
    # Not cacheable: a revoked key must stop verifying at once, wherever it is looked up.
    return JSONResponse(
        {"keys": [key.to_json() for key in keys]},
        headers={**CORS_HEADERS, "Cache-Control": "no-cache"},
    )
