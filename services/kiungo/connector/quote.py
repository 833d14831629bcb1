"""``POST /internal/quote``: the backend asks the connector to probe a receiver for a quote (the
Open Payments resource server, in the connector, calls :func:`probe` for the same answer).

Body ``{"receiver": "<https URL or $pointer>", "assetCode": "USD", "assetScale": 2}``. The
receiver is resolved (this node's own receivers directly, others over SPSP), then a STREAM
sender in the given asset probes it through this node's own packet path, from an internal
source without an account: every probe has a random condition, so nothing can be fulfilled, no
hold is taken and no money moves. The answer::

    200 {"receiveAssetCode", "receiveAssetScale", "lowEstimatedExchangeRate": "n/d",
         "highEstimatedExchangeRate": "n/d", "maxPacketAmount": "<u64>",
         "incomingAmount": null, "receivedAmount": null, "expiresAt": null,
         "streamDestination", "streamSharedSecret": "<base64>"}
    404 {"code": "InvalidReceiver", "message"}   the receiver could not be resolved
    422 {"code": "RateProbeFailed", "message"}   the probe failed or took too long

Rates are exact fractions of the assets' smallest units (receiver's per ours). For another
node's incoming payment URL, the amounts and expiry are those its resource server gave over
Open Payments with its STREAM credentials (:func:`kiungo.connector.inprocess.resolve_receiver`),
or, for one paid over SPSP, read from that node where it offers them
(:mod:`kiungo.openpayments.remote`); a completed one reads as having received all it expects;
else null.

Who may ask: with ADMIN_API_SECRET set, requests signed as admin API requests are (header
``signature``, :func:`kiungo.signatures.verify`), else 401; without it, only clients on loopback
that did not come through a proxy (no ``Forwarded``/``X-Forwarded-For``), else 403. A peer's
bearer token opens nothing here: a request with an ``Authorization`` header is refused (403).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kiungo.connector.inprocess import InvalidReceiver, PipelineLink, resolve_receiver
from kiungo.connector.node import Node
from kiungo.connector.peers import internal_source
from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    IncomingPaymentView,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.signatures import SignatureError, verify
from kiungo.stream.sender import StreamSender
from kiungo.stream.sender_connection import PaymentError
from kiungo.stream.server import Asset

__all__ = ["QUOTE_TIMEOUT_SECONDS", "probe", "probe_receiver", "quote_endpoint"]

log = logging.getLogger("kiungo.connector.quote")

QUOTE_TIMEOUT_SECONDS = 10.0
PROBE_PACKET_LIFETIME = timedelta(seconds=5)
_CLOSE_SECONDS = 1.0
_MAX_BODY = 16 * 1024
_MAX_RECEIVER = 2048
_PROBE_OWNER = uuid.UUID(int=0)
# Probe packets still finishing after an answer was sent (kept referenced until done).
_finishing: set[asyncio.Task[None]] = set()


def _refusal(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message}


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status)


def _is_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    if "forwarded" in request.headers or "x-forwarded-for" in request.headers:
        return False  # came through a proxy: the proxy is on loopback, the client may not be
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


async def _read_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > _MAX_BODY):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            return None
    return body


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _fraction(value: Any) -> str:
    return f"{value.numerator}/{value.denominator}"


async def quote_endpoint(node: Node, request: Request) -> Response:
    if "authorization" in request.headers:
        return _error(403, "Forbidden", "peer credentials do not open internal routes")
    secret = node.settings.admin_api_secret
    if secret is None and not _is_loopback(request):
        return _error(403, "Forbidden", "internal routes serve loopback clients only")
    body = await _read_body(request)
    if body is None:
        return _error(413, "BadRequest", "the request body is too large")
    try:
        payload = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
        if secret is None:
            return _error(400, "BadRequest", "the body is not JSON")
    if secret is not None:
        if payload is None:
            return _error(401, "Unauthorized", "the body cannot be verified")
        try:
            verify(
                secret,
                request.headers.get("signature"),
                payload,
                ttl_seconds=node.settings.admin_api_signature_ttl_seconds,
            )
        except SignatureError as exc:
            return _error(401, "Unauthorized", str(exc))
    if not isinstance(payload, dict):
        return _error(400, "BadRequest", "the body must be a JSON object")
    receiver = payload.get("receiver")
    code = payload.get("assetCode")
    scale = payload.get("assetScale")
    if not isinstance(receiver, str) or not 0 < len(receiver.strip()) <= _MAX_RECEIVER:
        return _error(400, "BadRequest", f"receiver must be a URL or pointer of 1-{_MAX_RECEIVER}")
    if not isinstance(code, str) or not code or len(code) > 32:
        return _error(400, "BadRequest", "assetCode must be a code of 1-32 characters")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
        return _error(400, "BadRequest", "assetScale must be a whole number from 0 to 255")
    return await probe_receiver(node, receiver.strip(), Asset(code, scale))


async def _read_incoming_payment(node: Node, receiver: str) -> IncomingPaymentView | None:
    """A remote incoming payment's amounts and state, where its node offers them (None when
    ``receiver`` is no such URL or they cannot be read); raises InvalidReceiver when its node
    says it does not exist."""
    if INCOMING_PAYMENT_PATH.match(receiver) is None:
        return None
    try:
        view = await fetch_incoming_payment(
            node.receiver_http, receiver, max_seconds=node.settings.receiver_fetch_timeout_ms / 1000
        )
    except ReceiverUnreadable as exc:
        log.info("no amounts for %s: %s", receiver, exc)
        return None
    if view is None:
        raise InvalidReceiver(f"no incoming payment at {receiver}")
    return view


async def probe_receiver(node: Node, receiver: str, asset: Asset) -> Response:
    status, answer = await probe(node, receiver, asset)
    return JSONResponse(answer, status)


async def probe(node: Node, receiver: str, asset: Asset) -> tuple[int, dict[str, Any]]:
    """The endpoint's answer for ``receiver`` as (HTTP status, JSON body): what the resource
    server, which runs in the connector, asks without going over HTTP."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QUOTE_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout_at(deadline):
            resolved = await resolve_receiver(node, receiver)
            # Another node's incoming payment read over Open Payments tells its amounts; one
            # paid over SPSP may tell them in Kiungo's older JSON.
            view = resolved.incoming
            if view is None and resolved.local is None:
                view = await _read_incoming_payment(node, receiver)
    except InvalidReceiver as exc:
        return _refusal(404, "InvalidReceiver", str(exc))
    except TimeoutError:
        return _refusal(404, "InvalidReceiver", "the receiver did not answer in time")
    if resolved.local is not None:
        view = None  # the backend quotes this node's own receivers itself
    source = internal_source(
        _PROBE_OWNER,
        _PROBE_OWNER,
        asset.code,
        asset.scale,
        address=node.address,
        account_kind=None,
        name="quote probe",
    )
    link = PipelineLink(node, source, unfulfillable=True)
    sender = StreamSender(
        link,
        destination=resolved.destination,
        shared_secret=resolved.shared_secret,
        source_address=node.address,
        source_asset=asset,
        packet_lifetime=PROBE_PACKET_LIFETIME,
    )
    try:
        async with asyncio.timeout_at(deadline):
            probed = await sender.probe()
    except PaymentError as exc:
        return _refusal(422, "RateProbeFailed", str(exc))
    except TimeoutError:
        return _refusal(422, "RateProbeFailed", "the rate probe did not finish in time")
    finally:
        task = asyncio.create_task(_close(sender, link))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)
    if probed.destination_asset is None:
        return _refusal(422, "RateProbeFailed", "the receiver did not tell its asset")
    return 200, {
        "receiveAssetCode": probed.destination_asset.code,
        "receiveAssetScale": probed.destination_asset.scale,
        "lowEstimatedExchangeRate": _fraction(probed.lower_rate),
        "highEstimatedExchangeRate": _fraction(probed.upper_rate),
        "maxPacketAmount": str(probed.max_packet_amount),
        **_amounts(view, probed.destination_asset),
        # For the payment's first attempt, which then need not ask the receiver again.
        "streamDestination": resolved.destination,
        "streamSharedSecret": base64.b64encode(resolved.shared_secret).decode("ascii"),
    }


def _amounts(view: IncomingPaymentView | None, asset: Asset) -> dict[str, Any]:
    """The incoming payment's amounts in the answer (nulls when not known in the receiver's
    asset)."""
    if view is None or (view.asset_code, view.asset_scale) != (asset.code, asset.scale):
        return {"incomingAmount": None, "receivedAmount": None, "expiresAt": None}
    expires = view.to_json().get("expiresAt")
    if view.completed:
        # Nothing more is accepted: as much received as expected.
        expected = view.received_amount if view.incoming_amount is None else view.incoming_amount
        return {
            "incomingAmount": str(expected),
            "receivedAmount": str(max(expected, view.received_amount)),
            "expiresAt": expires,
        }
    return {
        "incomingAmount": None if view.incoming_amount is None else str(view.incoming_amount),
        "receivedAmount": str(view.received_amount),
        "expiresAt": expires,
    }


async def _close(sender: StreamSender, link: PipelineLink) -> None:
    """Close the probe's connection (best effort) and let its last packets finish."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_SECONDS):
            await sender.close()
    await link.drain()
