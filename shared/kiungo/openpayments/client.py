"""An Open Payments client: this node creating, reading and completing incoming payments on
other nodes, as Rafiki's remote incoming payment service does.

The node is the client (:mod:`kiungo.openpayments.identity`): each grant request names its
wallet address and every request is signed (RFC 9421, ``content-digest`` for bodies) with its
key. The flow, as Rafiki's:

- **create**: read the receiver's wallet address document (``authServer``, ``resourceServer``),
  get a grant for ``incoming-payment`` from that authorization server, ``POST
  <resourceServer>/incoming-payments`` with it;
- **read** and **complete**: read the payment's public form (``GET <url>`` without a token)
  for its ``authServer``, get a grant there, then ``GET <url>`` or ``POST <url>/complete``
  with it. :meth:`OpenPaymentsClient.public_incoming_payment` is the public form alone.

**Grants.** One non-interactive grant per authorization server, for ``incoming-payment`` with
``create``, ``read-all`` and ``complete`` (what the three operations need between them, so one
grant serves all of them), kept in **Redis** under the node's key prefix, shared by every
process of the node, until its token expires. An expired token is rotated (``POST`` to its
``manage`` URL); if rotation fails a new grant is requested. A 401 or 403 from a resource
server drops the kept grant and the request is made once more with a new one (as Rafiki).

**Bounds.** Every exchange is one :func:`kiungo.runtime.receiver_fetch.exchange`: within
RECEIVER_FETCH_TIMEOUT_MS in total however the server trickles, at most :data:`MAX_BODY` bytes,
no redirects followed (a 3xx is an error), no content coding, and with REFUSE_PRIVATE_RECEIVERS
no private addresses. Every answer is checked against the shape Open Payments gives it; what
does not fit is an :class:`OpenPaymentsError`, never anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis

from kiungo.ilp.address import is_valid_address
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.identity import ClientIdentity
from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    IncomingPaymentView,
    _amount,
    _same_payment,
)
from kiungo.runtime.receiver_fetch import DEFAULT_TIMEOUT_SECONDS, ReceiverFetchError, exchange

__all__ = [
    "GRANT_ACTIONS",
    "MAX_BODY",
    "OpenPaymentsClient",
    "OpenPaymentsError",
    "PublicIncomingPayment",
    "RemoteIncomingPayment",
    "WalletAddressDocument",
]

MAX_BODY = 64 * 1024
"""The most any answer may be (an incoming payment with 16 KiB of metadata fits)."""
GRANT_ACTIONS = ("create", "read-all", "complete")
_MAX_URL = 2048
# A token this close to its expiry is rotated before use: the request must arrive in time.
_EXPIRY_MARGIN_SECONDS = 5.0
# How long a grant is kept past its token's expiry, to be rotated rather than requested anew.
_ROTATION_WINDOW_SECONDS = 3600
_REDIS_KEY = "op:grant:"


class OpenPaymentsError(Exception):
    """An Open Payments exchange failed. ``kind`` is Rafiki's RemoteIncomingPaymentError:
    ``NotFound`` (the server answered 404), ``UnknownWalletAddress`` (no wallet address document
    could be read), ``InvalidGrant`` (no grant could be had) or ``InvalidRequest`` (anything
    else: unreachable, too slow, too large, the wrong shape, refused). The message is safe to
    show whoever asked."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class WalletAddressDocument:
    id: str
    asset_code: str
    asset_scale: int
    auth_server: str
    resource_server: str


@dataclass(frozen=True, slots=True)
class PublicIncomingPayment:
    auth_server: str
    received_amount: tuple[int, str, int] | None
    """(value, asset code, asset scale), when the server tells it."""


@dataclass(frozen=True, slots=True)
class RemoteIncomingPayment(IncomingPaymentView):
    """Another node's incoming payment as its resource server shows it to a grant: the view
    that its public read gives, with when it was created (always told here), its metadata and
    its payment methods."""

    created_at: datetime
    metadata: dict[str, Any] | None
    methods: list[tuple[str, bytes]] = field(default_factory=list)
    """The ``ilp`` payment methods: (ILP address, 32-byte STREAM shared secret)."""


@dataclass(frozen=True, slots=True)
class _Grant:
    value: str
    manage: str
    expires_at: float | None

    def usable(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at - _EXPIRY_MARGIN_SECONDS > now


def _http_url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_URL or not value.isascii():
        raise ValueError(f"{what} must be a URL")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(f"{what} must be a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(f"{what} must be an http(s) URL")
    return value


def _parse_wallet_address(body: Any, url: str) -> WalletAddressDocument:
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    code, scale = body.get("assetCode"), body.get("assetScale")
    if not isinstance(code, str) or not code or len(code) > 32:
        raise ValueError("assetCode must be a string")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        raise ValueError("assetScale must be 0-255")
    document_id = _http_url(body.get("id"), "id")
    if document_id.rstrip("/") != url.rstrip("/"):
        raise ValueError("it is the document of another wallet address")
    resource = body.get("resourceServer")
    return WalletAddressDocument(
        id=document_id.rstrip("/"),
        asset_code=code,
        asset_scale=scale,
        auth_server=_http_url(body.get("authServer"), "authServer"),
        resource_server=(
            _http_url(resource, "resourceServer")
            if resource is not None
            else f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        ),
    )


def _shared_secret(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("sharedSecret must be base64url")
    text = value.replace("-", "+").replace("_", "/")
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("sharedSecret must be base64url") from None
    if len(secret) != 32:
        raise ValueError("sharedSecret must be 32 bytes")
    return secret


def _methods(value: Any) -> list[tuple[str, bytes]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 16:
        raise ValueError("methods must be a list")
    found = []
    for method in value:
        if not isinstance(method, dict):
            raise ValueError("a payment method must be an object")
        if method.get("type") != "ilp":
            continue  # other methods are for other senders
        address = method.get("ilpAddress")
        if not isinstance(address, str) or not is_valid_address(address):
            raise ValueError("ilpAddress must be an ILP address")
        found.append((address, _shared_secret(method.get("sharedSecret"))))
    return found


def _parse_incoming_payment(body: Any) -> RemoteIncomingPayment:
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    payment_id = _http_url(body.get("id"), "id")
    if INCOMING_PAYMENT_PATH.match(payment_id) is None:
        raise ValueError("id is not an incoming payment URL")
    wallet = _http_url(body.get("walletAddress"), "walletAddress")
    view = IncomingPaymentView.from_json(body)
    if view.created_at is None:
        raise ValueError("createdAt is required")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    return RemoteIncomingPayment(
        id=payment_id,
        wallet_address=wallet.rstrip("/"),
        asset_code=view.asset_code,
        asset_scale=view.asset_scale,
        incoming_amount=view.incoming_amount,
        received_amount=view.received_amount,
        completed=view.completed,
        expires_at=view.expires_at,
        created_at=view.created_at,
        metadata=metadata,
        methods=_methods(body.get("methods")),
    )


class _NeedsInteraction(ValueError):
    """The authorization server answered with an interaction instead of a token."""


def _parse_grant(body: Any, now: float) -> _Grant:
    """The access token of a grant or rotation answer (ValueError for anything else,
    :class:`_NeedsInteraction` for a grant that needs the account holder)."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    token = body.get("access_token")
    if isinstance(token, list) and len(token) == 1:
        token = token[0]
    if not isinstance(token, dict):
        if "interact" in body:
            raise _NeedsInteraction("the grant needs interaction, which this node cannot give")
        raise ValueError("no access_token")
    value = token.get("value")
    if not isinstance(value, str) or not value or len(value) > 1024 or not value.isascii():
        raise ValueError("access_token.value must be a string")
    if not value.isprintable():
        raise ValueError("access_token.value must be printable")
    manage = _http_url(token.get("manage"), "access_token.manage")
    expires_in = token.get("expires_in")
    expires_at = None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise ValueError("access_token.expires_in must be a positive integer")
        expires_at = now + min(expires_in, 10**9)
    return _Grant(value, manage, expires_at)


def _json(body: Mapping[str, Any]) -> bytes:
    # Compact, as JSON.stringify writes it: what a verifier re-serializing the body digests.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _error_description(reply_body: bytes) -> str:
    try:
        document = json.loads(reply_body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        error = error.get("description") or error.get("code")
    if isinstance(error, str) and error.isprintable():
        return f": {error[:200]}"
    return ""


class OpenPaymentsClient:
    """This node as an Open Payments client (see the module docstring). ``http`` is a
    :func:`kiungo.runtime.receiver_fetch.receiver_client`; grants are kept in ``redis`` under
    ``prefix``."""

    def __init__(
        self,
        identity: ClientIdentity,
        http: httpx.AsyncClient,
        redis: Redis,
        prefix: str,
        *,
        max_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.http = http
        self.redis = redis
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.clock = clock

    # -- the exchange -------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
        sign: bool = True,
        what: str,
    ) -> tuple[int, Any, bytes]:
        """(status, JSON body or None, raw body) of one bounded exchange as this client: with
        ``token`` as ``Authorization: GNAP``, RFC 9421-signed with the identity's key unless
        ``sign`` is false. ``what`` names the exchange in an :class:`OpenPaymentsError`
        (``InvalidRequest``) when it fails. Any Open Payments request an app makes (grants,
        continuation, quotes, outgoing payments) goes through here."""
        headers = {"Accept": "application/json"}
        content = None if body is None else _json(body)
        if content is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"GNAP {token}"
        if sign:
            try:
                headers.update(
                    sign_request(
                        method=method,
                        target_uri=url,
                        headers=headers,
                        body=content,
                        private_key=self.identity.private_key,
                        key_id=self.identity.key_id,
                        created=int(self.clock()),
                    )
                )
            except ValueError as exc:
                raise OpenPaymentsError("InvalidRequest", f"{what}: {exc}") from None
        try:
            reply = await exchange(
                self.http,
                method,
                url,
                headers=headers,
                content=content,
                max_bytes=MAX_BODY,
                max_seconds=self.max_seconds,
            )
        except ReceiverFetchError as exc:
            raise OpenPaymentsError("InvalidRequest", f"{what} {exc}") from None
        document = None
        if reply.is_json and reply.body:
            try:
                document = json.loads(reply.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                document = None
        return reply.status_code, document, reply.body

    # -- wallet addresses ---------------------------------------------------------------------

    async def wallet_address(self, url: str) -> WalletAddressDocument:
        """The wallet address document at ``url``; ``UnknownWalletAddress`` otherwise."""
        try:
            status, document, _ = await self.send(
                "GET", url, sign=False, what=f"the wallet address {url}"
            )
        except OpenPaymentsError as exc:
            raise OpenPaymentsError("UnknownWalletAddress", exc.message) from None
        if status != 200:
            raise OpenPaymentsError(
                "UnknownWalletAddress", f"the wallet address {url} answered HTTP {status}"
            )
        try:
            return _parse_wallet_address(document, url)
        except ValueError as exc:
            raise OpenPaymentsError(
                "UnknownWalletAddress", f"{url} is not a wallet address document: {exc}"
            ) from None

    # -- grants -------------------------------------------------------------------------------

    def _key(self, auth_server: str) -> str:
        digest = hashlib.sha256(
            json.dumps([self.identity.wallet_address, auth_server, GRANT_ACTIONS]).encode()
        ).hexdigest()
        return f"{self.prefix}{_REDIS_KEY}{digest}"

    async def _kept(self, auth_server: str) -> _Grant | None:
        raw = await self.redis.get(self._key(auth_server))
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            return _Grant(kept["value"], kept["manage"], kept["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None

    async def _keep(self, auth_server: str, grant: _Grant) -> None:
        lifetime = _ROTATION_WINDOW_SECONDS
        if grant.expires_at is not None:
            lifetime += max(int(grant.expires_at - self.clock()), 0)
        record = {"value": grant.value, "manage": grant.manage, "expires_at": grant.expires_at}
        await self.redis.set(self._key(auth_server), json.dumps(record), ex=lifetime)

    async def forget_grant(self, auth_server: str) -> None:
        await self.redis.delete(self._key(auth_server))

    async def grant(self, auth_server: str) -> str:
        """An access token for ``incoming-payment`` (:data:`GRANT_ACTIONS`) at
        ``auth_server``: the kept one while it lasts, else the kept one rotated, else a new
        grant. ``InvalidGrant`` when none can be had."""
        kept = await self._kept(auth_server)
        if kept is not None:
            if kept.usable(self.clock()):
                return kept.value
            rotated = await self._rotate(kept)
            if rotated is not None:
                await self._keep(auth_server, rotated)
                return rotated.value
        fresh = await self._request_grant(auth_server)
        await self._keep(auth_server, fresh)
        return fresh.value

    async def _rotate(self, kept: _Grant) -> _Grant | None:
        try:
            status, document, _ = await self.send(
                "POST", kept.manage, token=kept.value, what="rotating a token"
            )
            if status != 200:
                return None
            return _parse_grant(document, self.clock())
        except (OpenPaymentsError, ValueError):
            return None

    async def _request_grant(self, auth_server: str) -> _Grant:
        request = {
            "access_token": {
                "access": [{"type": "incoming-payment", "actions": list(GRANT_ACTIONS)}]
            },
            "client": self.identity.wallet_address,
            "interact": {"start": ["redirect"]},
        }
        try:
            status, document, raw = await self.send(
                "POST", auth_server, body=request, what=f"the authorization server {auth_server}"
            )
        except OpenPaymentsError as exc:
            raise OpenPaymentsError("InvalidGrant", exc.message) from None
        if status != 200:
            raise OpenPaymentsError(
                "InvalidGrant",
                f"the authorization server {auth_server} refused a grant: HTTP {status}"
                f"{_error_description(raw)}",
            )
        try:
            return _parse_grant(document, self.clock())
        except _NeedsInteraction as exc:
            raise OpenPaymentsError("InvalidGrant", f"{auth_server}: {exc}") from None
        except ValueError as exc:
            raise OpenPaymentsError(
                "InvalidGrant", f"the authorization server {auth_server} answered no grant: {exc}"
            ) from None

    async def _authorized(
        self,
        auth_server: str,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        what: str,
    ) -> tuple[int, Any, bytes]:
        """One request with a token of ``auth_server``; once more with a new grant after a
        401 or 403 (the kept grant may have been revoked)."""
        for attempt in (1, 2):
            token = await self.grant(auth_server)
            status, document, raw = await self.send(method, url, body=body, token=token, what=what)
            if status in (401, 403) and attempt == 1:
                await self.forget_grant(auth_server)
                continue
            return status, document, raw
        raise AssertionError("unreachable")

    # -- incoming payments --------------------------------------------------------------------

    def _answer(
        self, status: int, document: Any, raw: bytes, expected: int, what: str
    ) -> RemoteIncomingPayment:
        if status == 404:
            raise OpenPaymentsError("NotFound", f"{what}: no such incoming payment")
        if status != expected:
            raise OpenPaymentsError(
                "InvalidRequest", f"{what} answered HTTP {status}{_error_description(raw)}"
            )
        try:
            return _parse_incoming_payment(document)
        except ValueError as exc:
            raise OpenPaymentsError(
                "InvalidRequest", f"{what} did not answer an incoming payment: {exc}"
            ) from None

    async def create_incoming_payment(
        self,
        wallet_address_url: str,
        *,
        incoming_amount: tuple[int, str, int] | None = None,
        expires_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[WalletAddressDocument, RemoteIncomingPayment]:
        """Create an incoming payment on another node's wallet address, as Rafiki's
        ``remoteIncomingPaymentService.create`` does. ``incoming_amount`` is (value, asset
        code, asset scale) and must be in the wallet address's asset (``InvalidRequest``
        otherwise, before the grant is asked for)."""
        wallet = await self.wallet_address(wallet_address_url)
        body: dict[str, Any] = {"walletAddress": wallet.id}
        if incoming_amount is not None:
            value, code, scale = incoming_amount
            if (code, scale) != (wallet.asset_code, wallet.asset_scale):
                raise OpenPaymentsError(
                    "InvalidRequest",
                    f"incomingAmount must be in the wallet address's asset, {wallet.asset_code}"
                    f" at scale {wallet.asset_scale}",
                )
            body["incomingAmount"] = {"value": str(value), "assetCode": code, "assetScale": scale}
        if expires_at is not None:
            body["expiresAt"] = (
                expires_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
        if metadata is not None:
            body["metadata"] = dict(metadata)
        url = wallet.resource_server.rstrip("/") + "/incoming-payments"
        what = f"creating an incoming payment at {url}"
        status, document, raw = await self._authorized(wallet.auth_server, "POST", url, body, what)
        payment = self._answer(status, document, raw, 201, what)
        if payment.wallet_address != wallet.id:
            raise OpenPaymentsError("InvalidRequest", f"{what}: made for another wallet address")
        if (payment.asset_code, payment.asset_scale) != (wallet.asset_code, wallet.asset_scale):
            raise OpenPaymentsError("InvalidRequest", f"{what}: not in the wallet's asset")
        return wallet, payment

    async def public_incoming_payment(self, url: str) -> PublicIncomingPayment:
        """The public form of the incoming payment at ``url`` (no token, unsigned)."""
        what = f"the incoming payment {url}"
        status, document, _ = await self.send("GET", url, sign=False, what=what)
        if status == 404:
            raise OpenPaymentsError("NotFound", f"{what}: no such incoming payment")
        if status != 200 or not isinstance(document, dict):
            raise OpenPaymentsError(
                "InvalidRequest", f"{what} answered no public incoming payment (HTTP {status})"
            )
        try:
            auth_server = _http_url(document.get("authServer"), "authServer")
            received = document.get("receivedAmount")
            amount = None if received is None else _amount(received, "receivedAmount")
        except ValueError as exc:
            raise OpenPaymentsError(
                "InvalidRequest", f"{what} answered no public incoming payment: {exc}"
            ) from None
        return PublicIncomingPayment(auth_server, amount)

    async def incoming_payment(self, url: str) -> RemoteIncomingPayment:
        """The incoming payment at ``url`` in full (with its ``methods`` while it is open),
        read with a grant of the authorization server its public form names."""
        public = await self.public_incoming_payment(url)
        what = f"reading the incoming payment {url}"
        status, document, raw = await self._authorized(public.auth_server, "GET", url, None, what)
        payment = self._answer(status, document, raw, 200, what)
        if not _same_payment(payment.id, url):
            raise OpenPaymentsError("InvalidRequest", f"{what}: answered for another payment")
        return payment

    async def complete_incoming_payment(self, url: str) -> RemoteIncomingPayment:
        """Complete the incoming payment at ``url`` (one this node created)."""
        public = await self.public_incoming_payment(url)
        what = f"completing the incoming payment {url}"
        target = url.rstrip("/") + "/complete"
        status, document, raw = await self._authorized(
            public.auth_server, "POST", target, None, what
        )
        payment = self._answer(status, document, raw, 200, what)
        if not _same_payment(payment.id, url):
            raise OpenPaymentsError("InvalidRequest", f"{what}: answered for another payment")
        return payment
