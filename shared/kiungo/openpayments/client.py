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
no private addresses. Every answer is checked against the shape Open Payments gives it (the
documents and their parsers are :mod:`kiungo.openpayments.client_answers`); what does not fit
is an :class:`OpenPaymentsError`, never anything else.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from redis.asyncio import Redis

from kiungo.openpayments.client_answers import (
    Grant,
    NeedsInteraction,
    PublicIncomingPayment,
    RemoteIncomingPayment,
    WalletAddressDocument,
    error_description,
    http_url,
    parse_grant,
    parse_incoming_payment,
    parse_wallet_address,
)
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.identity import ClientIdentity
from kiungo.openpayments.remote import _amount, _same_payment
from kiungo.runtime.receiver_fetch import DEFAULT_TIMEOUT_SECONDS, ReceiverFetchError, exchange

__all__ = ["GRANT_ACTIONS", "MAX_BODY", "OpenPaymentsClient", "OpenPaymentsError"]

MAX_BODY = 64 * 1024
"""The most any answer may be (an incoming payment with 16 KiB of metadata fits)."""
GRANT_ACTIONS = ("create", "read-all", "complete")
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


def _json(body: Mapping[str, Any]) -> bytes:
    # Compact, as JSON.stringify writes it: what a verifier re-serializing the body digests.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


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
            return parse_wallet_address(document, url)
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

    async def _kept(self, auth_server: str) -> Grant | None:
        raw = await self.redis.get(self._key(auth_server))
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            return Grant(kept["value"], kept["manage"], kept["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None

    async def _keep(self, auth_server: str, grant: Grant) -> None:
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

    async def _rotate(self, kept: Grant) -> Grant | None:
        try:
            status, document, _ = await self.send(
                "POST", kept.manage, token=kept.value, what="rotating a token"
            )
            if status != 200:
                return None
            return parse_grant(document, self.clock())
        except (OpenPaymentsError, ValueError):
            return None

    async def _request_grant(self, auth_server: str) -> Grant:
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
                f"{error_description(raw)}",
            )
        try:
            return parse_grant(document, self.clock())
        except NeedsInteraction as exc:
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
                "InvalidRequest", f"{what} answered HTTP {status}{error_description(raw)}"
            )
        try:
            return parse_incoming_payment(document)
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
            auth_server = http_url(document.get("authServer"), "authServer")
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
