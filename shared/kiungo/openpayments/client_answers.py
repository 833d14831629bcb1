"""What other nodes' Open Payments servers answer this node's client
(:class:`kiungo.openpayments.client.OpenPaymentsClient`), and how each answer is checked.

The documents: a wallet address's (:class:`WalletAddressDocument`), an incoming payment's public
form (:class:`PublicIncomingPayment`) and its full form as a grant reads it
(:class:`RemoteIncomingPayment`, with its ``ilp`` payment methods), and a grant's access token
(:class:`Grant`). Each parser takes the decoded JSON and raises ValueError (its message safe to
show) for anything that does not have the shape Open Payments gives it;
:class:`NeedsInteraction` is a grant answer that wants the account holder. URLs must be http(s)
(:func:`http_url`); :func:`error_description` is what a refusal's ``error`` says, as the tail
of a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from kiungo.ilp.address import is_valid_address
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH, IncomingPaymentView

__all__ = [
    "Grant",
    "NeedsInteraction",
    "PublicIncomingPayment",
    "RemoteIncomingPayment",
    "WalletAddressDocument",
    "error_description",
    "http_url",
    "parse_grant",
    "parse_incoming_payment",
    "parse_wallet_address",
]

_MAX_URL = 2048
# A token this close to its expiry is rotated before use: the request must arrive in time.
_EXPIRY_MARGIN_SECONDS = 5.0


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
class Grant:
    value: str
    manage: str
    expires_at: float | None

    def usable(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at - _EXPIRY_MARGIN_SECONDS > now


def http_url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_URL or not value.isascii():
        raise ValueError(f"{what} must be a URL")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(f"{what} must be a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(f"{what} must be an http(s) URL")
    return value


def parse_wallet_address(body: Any, url: str) -> WalletAddressDocument:
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    code, scale = body.get("assetCode"), body.get("assetScale")
    if not isinstance(code, str) or not code or len(code) > 32:
        raise ValueError("assetCode must be a string")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        raise ValueError("assetScale must be 0-255")
    document_id = http_url(body.get("id"), "id")
    if document_id.rstrip("/") != url.rstrip("/"):
        raise ValueError("it is the document of another wallet address")
    resource = body.get("resourceServer")
    return WalletAddressDocument(
        id=document_id.rstrip("/"),
        asset_code=code,
        asset_scale=scale,
        auth_server=http_url(body.get("authServer"), "authServer"),
        resource_server=(
            http_url(resource, "resourceServer")
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


def parse_incoming_payment(body: Any) -> RemoteIncomingPayment:
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    payment_id = http_url(body.get("id"), "id")
    if INCOMING_PAYMENT_PATH.match(payment_id) is None:
        raise ValueError("id is not an incoming payment URL")
    wallet = http_url(body.get("walletAddress"), "walletAddress")
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


class NeedsInteraction(ValueError):
    """The authorization server answered with an interaction instead of a token."""


def parse_grant(body: Any, now: float) -> Grant:
    """The access token of a grant or rotation answer (ValueError for anything else,
    :class:`NeedsInteraction` for a grant that needs the account holder)."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    token = body.get("access_token")
    if isinstance(token, list) and len(token) == 1:
        token = token[0]
    if not isinstance(token, dict):
        if "interact" in body:
            raise NeedsInteraction("the grant needs interaction, which this node cannot give")
        raise ValueError("no access_token")
    value = token.get("value")
    if not isinstance(value, str) or not value or len(value) > 1024 or not value.isascii():
        raise ValueError("access_token.value must be a string")
    if not value.isprintable():
        raise ValueError("access_token.value must be printable")
    manage = http_url(token.get("manage"), "access_token.manage")
    expires_in = token.get("expires_in")
    expires_at = None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise ValueError("access_token.expires_in must be a positive integer")
        expires_at = now + min(expires_in, 10**9)
    return Grant(value, manage, expires_at)


def error_description(reply_body: bytes) -> str:
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
