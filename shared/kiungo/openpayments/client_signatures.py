"""A GNAP client's request, verified as signed (RFC 9421) by one of its keys: what the
authorization server checks on every grant and token request, and the resource server on every
authorized request. One place, so both servers accept exactly the same signatures.

A client is identified in one of two ways (Open Payments, as Rafiki takes them):

- by its **wallet address** URL: the keys are that address's active keys when it is a wallet
  address of this node (read from Postgres on every request, so a revoked key stops at once), else
  its ``<wallet address>/jwks.json`` read over HTTP (:class:`ClientKeys`) with the bounds every
  fetch of a receiver has (:mod:`kiungo.runtime.receiver_fetch`: total time, bytes, no redirects,
  no private addresses under ``REFUSE_PRIVATE_RECEIVERS``) and kept for :data:`KEY_CACHE_SECONDS`;
  a ``keyid`` not among the kept keys reads them again, once per request (requests arriving
  while a client's keys are being read wait for that read);
- by a **JWK** sent in the grant request (``client: {"jwk": …}``): that key, stored with the
  grant, verifies every later request under it. Its identity is the key's RFC 7638 thumbprint
  as an RFC 9278 URI (:func:`jwk_client_id`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from kiungo.openpayments.http_signatures import (
    DEFAULT_MAX_SKEW_SECONDS,
    Headers,
    SignatureRejected,
    verify_request,
)
from kiungo.openpayments.jwk import InvalidJwk, jwk_to_public_key
from kiungo.openpayments.wallet_address_keys import active_jwks
from kiungo.runtime.receiver_fetch import DEFAULT_TIMEOUT_SECONDS, ReceiverFetchError, fetch

__all__ = [
    "JWK_THUMBPRINT_PREFIX",
    "KEY_CACHE_SECONDS",
    "MAX_JWKS_BYTES",
    "ClientKeys",
    "UnknownClient",
    "addressed_url",
    "jwk_client_id",
    "public_jwk",
]

KEY_CACHE_SECONDS = 300.0
"""How long a remote client's JWKS is used before it is read again."""
MAX_JWKS_BYTES = 32 * 1024
MAX_JWKS_KEYS = 64
MAX_CACHED_CLIENTS = 10_000
MAX_CLIENT_URL = 2048
JWK_THUMBPRINT_PREFIX = "urn:ietf:params:oauth:jwk-thumbprint:sha-256:"


def addressed_url(base: str, scope: Mapping[str, Any]) -> str:
    """The URL an ASGI request was addressed to under the server's public ``base`` URL, as the
    client wrote it (percent-encoding kept, from ``raw_path`` and ``query_string``): what its
    signature's ``@target-uri`` covers."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return base.rstrip("/") + path + (f"?{query}" if query else "")


class UnknownClient(Exception):
    """The client's keys cannot be had: no wallet address here or at its URL answers them (its
    message says why and is safe to show the client)."""


def public_jwk(jwk: object) -> dict[str, str]:
    """The Ed25519 public JWK a client sent as its identity, checked
    (:func:`kiungo.openpayments.jwk.jwk_to_public_key`) and reduced to the members that define
    it; :class:`~kiungo.openpayments.jwk.InvalidJwk` otherwise."""
    if not isinstance(jwk, Mapping):
        raise InvalidJwk("a JWK must be a JSON object")
    jwk_to_public_key(jwk)
    kept = {name: str(jwk[name]) for name in ("kid", "kty", "crv", "x", "alg") if name in jwk}
    if "use" in jwk:
        kept["use"] = str(jwk["use"])
    return kept


def jwk_client_id(jwk: Mapping[str, str]) -> str:
    """The identity of a client known by its key: the RFC 7638 SHA-256 thumbprint of the OKP
    key (``crv``, ``kty``, ``x``), as an RFC 9278 URI. One key is one client, whatever its kid."""
    members = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return JWK_THUMBPRINT_PREFIX + digest


def _remote_url(client: str) -> str:
    """``<client>/jwks.json`` for a client URL that may be read; :class:`UnknownClient` else."""
    if len(client) > MAX_CLIENT_URL or not client.isascii() or not client.isprintable():
        raise UnknownClient("client must be a wallet address URL")
    try:
        parts = urlsplit(client)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise UnknownClient("client must be a wallet address URL") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
    ):
        raise UnknownClient("client must be an http(s) wallet address URL")
    return client.rstrip("/") + "/jwks.json"


def _parse_jwks(body: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnknownClient("the client's jwks.json is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or len(keys) > MAX_JWKS_KEYS:
        raise UnknownClient("the client's jwks.json is not a key set")
    return [key for key in keys if isinstance(key, dict) and isinstance(key.get("kid"), str)]


class ClientKeys:
    """Where clients' keys come from: this node's wallet addresses (``pool``), other nodes'
    ``jwks.json`` (read with ``http``, a :func:`kiungo.runtime.receiver_fetch.receiver_client`,
    each read within ``max_seconds``), and the JWK a grant stored. Remote key sets are kept in
    this process for ``ttl`` seconds (at most :data:`MAX_CACHED_CLIENTS` of them)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        *,
        max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        ttl: float = KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.http = http
        self.max_seconds = max_seconds
        self.ttl = ttl
        self.clock = clock
        self._remote: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._reading: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}

    async def _fetch(self, client: str) -> list[dict[str, Any]]:
        """The client's key set read now; requests that need it while it is being read wait
        for that one read (a client's many requests make one fetch, not one each). The read
        runs on if a waiter goes away, bounded by ``max_seconds``."""
        task = self._reading.get(client)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(client))
            self._reading[client] = task
            task.add_done_callback(lambda done: self._done_reading(client, done))
        return await asyncio.shield(task)

    def _done_reading(self, client: str, task: asyncio.Task[list[dict[str, Any]]]) -> None:
        if self._reading.get(client) is task:
            del self._reading[client]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    async def _read(self, client: str) -> list[dict[str, Any]]:
        url = _remote_url(client)
        try:
            reply = await fetch(
                self.http,
                url,
                accept="application/json",
                max_bytes=MAX_JWKS_BYTES,
                max_seconds=self.max_seconds,
            )
        except ReceiverFetchError as exc:
            raise UnknownClient(f"the client's jwks.json {exc}") from None
        if reply.status_code != 200:
            raise UnknownClient(f"the client's jwks.json answered HTTP {reply.status_code}")
        if not reply.is_json:
            raise UnknownClient("the client's jwks.json is not application/json")
        keys = _parse_jwks(reply.body)
        self._remote[client] = (self.clock() + self.ttl, keys)
        self._remote.move_to_end(client)
        while len(self._remote) > MAX_CACHED_CLIENTS:
            self._remote.popitem(last=False)
        return keys

    def _cached(self, client: str) -> list[dict[str, Any]] | None:
        entry = self._remote.get(client)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._remote[client]
            return None
        return entry[1]

    async def verify(
        self,
        client: str,
        client_jwk: Mapping[str, Any] | None,
        *,
        method: str,
        targets: Sequence[str],
        headers: Headers,
        body: bytes | None,
        now: int,
        max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
    ) -> None:
        """Return when the request is signed by a key of the client (``client_jwk`` when the
        client is known by its key, else the keys of the wallet address ``client``) for one of
        ``targets`` (the URLs the request may have been addressed as). Raise
        :class:`UnknownClient` when the client's keys cannot be had, and
        :class:`~kiungo.openpayments.http_signatures.SignatureRejected` (the last target's
        reason) when no target verifies."""
        if client_jwk is not None:
            _verify([dict(client_jwk)], method, targets, headers, body or None, now, max_skew)
            return
        local = await active_jwks(self.pool, client)
        if local is not None:
            keys = [key.to_json() for key in local]
            _verify(keys, method, targets, headers, body or None, now, max_skew)
            return
        # With the kept keys (or none): a request refused for anything but its keyid (unsigned,
        # malformed, outside the skew) is refused without reading anything over the network.
        try:
            _verify(
                self._cached(client) or [], method, targets, headers, body or None, now, max_skew
            )
            return
        except SignatureRejected as exc:
            if exc.reason != "unknown keyid":
                raise
        # Not read yet, or a key the kept set lacks (the client may have added it): read.
        keys = await self._fetch(client)
        _verify(keys, method, targets, headers, body or None, now, max_skew)


def _verify(
    keys: list[dict[str, Any]],
    method: str,
    targets: Sequence[str],
    headers: Headers,
    body: bytes | None,
    now: int,
    max_skew: int,
) -> None:
    reason = "no target"
    for target in targets:
        try:
            verify_request(
                method=method,
                target_uri=target,
                headers=headers,
                body=body,
                jwks=keys,
                now=now,
                max_skew=max_skew,
            )
            return
        except SignatureRejected as exc:
            reason = exc.reason
    raise SignatureRejected(reason)
