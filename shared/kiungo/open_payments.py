"""An incoming payment as another node reads it: ``GET <incoming payment URL>`` with
``Accept: application/json``.

This is Open Payments' incoming payment resource without its authorization: the URL holds a
random id, so whoever knows it may pay it (SPSP on the same URL) and may read how far it has
got. Rafiki serves the unauthenticated read as a *public incoming payment* (``receivedAmount``
only); we add what a paying node needs to stop at the right amount: ``incomingAmount``,
``completed`` and ``expiresAt``. Amounts are Open Payments amounts
(``{"value": "<u64>", "assetCode", "assetScale"}``).

A paying node reads it to quote an incoming payment by what it still expects, and, resuming a
payment after a crash, to learn what the receiver got from packets whose Fulfill it never saw.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from kiungo.runtime.receiver_fetch import DEFAULT_TIMEOUT_SECONDS, ReceiverFetchError, fetch
from kiungo.spsp.pointer import InvalidPaymentPointer, resolve_receiver

__all__ = [
    "INCOMING_PAYMENT_PATH",
    "IncomingPaymentView",
    "ReceiverUnreadable",
    "fetch_incoming_payment",
    "wants_json",
]

INCOMING_PAYMENT_PATH = re.compile(
    r"^(?P<wallet>.+)/incoming-payments/(?P<id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}"
    r"-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$"
)
"""``<wallet address URL>/incoming-payments/<uuid>``."""
_MAX_U64 = (1 << 64) - 1
_MAX_BODY = 16 * 1024


class ReceiverUnreadable(Exception):
    """The URL could not be read as an incoming payment (unreachable, not ours, garbage)."""


@dataclass(frozen=True, slots=True)
class IncomingPaymentView:
    id: str
    wallet_address: str
    asset_code: str
    asset_scale: int
    incoming_amount: int | None
    received_amount: int
    completed: bool
    expires_at: datetime | None
    created_at: datetime | None = None

    def remaining(self, now: datetime) -> int | None:
        """What it still accepts: 0 once completed or expired; None when it names no amount
        and is open."""
        if self.completed or (self.expires_at is not None and self.expires_at <= now):
            return 0
        if self.incoming_amount is None:
            return None
        return max(self.incoming_amount - self.received_amount, 0)

    def _amount(self, value: int) -> dict[str, Any]:
        return {"value": str(value), "assetCode": self.asset_code, "assetScale": self.asset_scale}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "walletAddress": self.wallet_address}
        if self.incoming_amount is not None:
            body["incomingAmount"] = self._amount(self.incoming_amount)
        body["receivedAmount"] = self._amount(self.received_amount)
        body["completed"] = self.completed
        if self.expires_at is not None:
            body["expiresAt"] = _iso(self.expires_at)
        if self.created_at is not None:
            body["createdAt"] = _iso(self.created_at)
        return body

    @classmethod
    def from_json(cls, body: Any) -> IncomingPaymentView:
        """Raises ValueError for anything but a well-formed view."""
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        url, wallet = body.get("id"), body.get("walletAddress")
        if not isinstance(url, str) or not isinstance(wallet, str):
            raise ValueError("id and walletAddress must be strings")
        received = _amount(body.get("receivedAmount"), "receivedAmount")
        incoming = body.get("incomingAmount")
        incoming_amount = None
        if incoming is not None:
            parsed = _amount(incoming, "incomingAmount")
            if parsed[1:] != received[1:]:
                raise ValueError("incomingAmount and receivedAmount differ in asset")
            incoming_amount = parsed[0]
        completed = body.get("completed")
        if not isinstance(completed, bool):
            raise ValueError("completed must be true or false")
        return cls(
            id=url,
            wallet_address=wallet,
            asset_code=received[1],
            asset_scale=received[2],
            incoming_amount=incoming_amount,
            received_amount=received[0],
            completed=completed,
            expires_at=_time(body.get("expiresAt"), "expiresAt"),
            created_at=_time(body.get("createdAt"), "createdAt"),
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return moment


def _amount(value: Any, name: str) -> tuple[int, str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object")
    text, code, scale = value.get("value"), value.get("assetCode"), value.get("assetScale")
    if not isinstance(text, str) or not text.isdigit() or int(text) > _MAX_U64:
        raise ValueError(f"{name}.value must be a u64 string")
    if not isinstance(code, str) or not code:
        raise ValueError(f"{name}.assetCode must be a string")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        raise ValueError(f"{name}.assetScale must be 0-255")
    return int(text), code, scale


def _same_payment(one: str, other: str) -> bool:
    first, second = INCOMING_PAYMENT_PATH.match(one), INCOMING_PAYMENT_PATH.match(other)
    if first is None or second is None:
        return False
    try:
        return uuid.UUID(first["id"]) == uuid.UUID(second["id"])
    except ValueError:
        return False


def wants_json(accept: str | None) -> bool:
    """True when an ``Accept`` header asks for plain JSON (not SPSP)."""
    if not accept:
        return False
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "application/json":
            return True
    return False


async def fetch_incoming_payment(
    client: httpx.AsyncClient, url: str, *, max_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> IncomingPaymentView | None:
    """Read the incoming payment at ``url`` (within ``max_seconds`` seconds, at most
    :data:`_MAX_BODY` bytes: :mod:`kiungo.runtime.receiver_fetch`); None when its node answers 404
    (unknown there). Raises :class:`ReceiverUnreadable` for anything else that is not a view
    of that URL."""
    if INCOMING_PAYMENT_PATH.match(url) is None:
        raise ReceiverUnreadable(f"{url} is not an incoming payment URL")
    try:
        target = resolve_receiver(url)
    except InvalidPaymentPointer as exc:
        raise ReceiverUnreadable(str(exc)) from None
    try:
        response = await fetch(
            client, target, accept="application/json", max_bytes=_MAX_BODY, max_seconds=max_seconds
        )
    except ReceiverFetchError as exc:
        raise ReceiverUnreadable(f"reading {url}: {exc}") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise ReceiverUnreadable(f"reading {url} answered HTTP {response.status_code}")
    if not response.is_json:
        raise ReceiverUnreadable(f"{url} did not answer JSON")
    try:
        view = IncomingPaymentView.from_json(json.loads(response.body))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ReceiverUnreadable(f"{url} did not answer an incoming payment: {exc}") from None
    if not _same_payment(view.id, url):
        raise ReceiverUnreadable(f"{url} answered for another incoming payment")
    return view
