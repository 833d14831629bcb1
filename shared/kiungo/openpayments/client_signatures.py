"""A GNAP client's request, verified as signed (RFC 9421) by one of its wallet address's active
keys: what the authorization server checks on every grant and token request, and the resource
server on every authorized request. One place, so both servers accept exactly the same
signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from kiungo.openpayments.http_signatures import (
    DEFAULT_MAX_SKEW_SECONDS,
    Headers,
    SignatureRejected,
    verify_request,
)
from kiungo.openpayments.wallet_address_keys import active_jwks

__all__ = ["UnknownClient", "addressed_url", "verify_client_request"]


def addressed_url(base: str, scope: Mapping[str, Any]) -> str:
    """The URL an ASGI request was addressed to under the server's public ``base`` URL, as the
    client wrote it (percent-encoding kept, from ``raw_path`` and ``query_string``): what its
    signature's ``@target-uri`` covers."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return base.rstrip("/") + path + (f"?{query}" if query else "")


class UnknownClient(Exception):
    """The client names no active wallet address of this node."""


async def verify_client_request(
    pool: asyncpg.Pool,
    client: str,
    *,
    method: str,
    targets: Sequence[str],
    headers: Headers,
    body: bytes | None,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
) -> None:
    """Return when the request is signed by an active key of ``client`` (a wallet address URL)
    for one of ``targets`` (the URLs the request may have been addressed as); raise
    :class:`UnknownClient` when ``client`` is no active wallet address here, and
    :class:`~kiungo.openpayments.http_signatures.SignatureRejected` (the last target's reason)
    when no target verifies."""
    jwks = await active_jwks(pool, client)
    if jwks is None:
        raise UnknownClient(client)
    keys = [key.to_json() for key in jwks]
    reason = "no target"
    for target in targets:
        try:
            verify_request(
                method=method,
                target_uri=target,
                headers=headers,
                body=body or None,
                jwks=keys,
                now=now,
                max_skew=max_skew,
            )
            return
        except SignatureRejected as exc:
            reason = exc.reason
    raise SignatureRejected(reason)
