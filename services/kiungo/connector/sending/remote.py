"""Paying a remote receiver over STREAM.

A STREAM sender pays on the STREAM credentials the quote's probe resolved over SPSP (a resumed
payment asks SPSP again) and on that probe's rate and packet size, with each packet's minimum
from the quote's minimum rate. A quote without them (made before they were kept) is probed
again first, from a source without an account. Packets enter our own packet path in-process
(:class:`kiungo.connector.inprocess.PipelineLink`) with the payment's account as their source.

``sent_amount`` and ``delivered_amount`` are written as packets are fulfilled (one write at a
time, each with the latest totals, which also renews the lease) and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from kiungo.connector.inprocess import InvalidReceiver, PipelineLink, resolve_receiver
from kiungo.connector.node import Node
from kiungo.connector.sending.lease import Lease
from kiungo.connector.sending.payment import (
    PACKET_LIFETIME,
    Completed,
    Failed,
    Outcome,
    Payment,
)
from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.oer import MAX_UINT64, DecodeError
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.stream.crypto import DecryptionError, StreamKeys
from kiungo.stream.packet import decode_stream_packet
from kiungo.stream.sender import StreamSender
from kiungo.stream.sender_connection import PaymentError, RateProbe
from kiungo.stream.server import Asset

__all__ = ["MAX_IN_FLIGHT", "PaymentLink", "Progress", "pay"]

MAX_IN_FLIGHT = 10
"""Packets of one payment in flight at once (the bound on what a crash can pay twice)."""
PROBE_TIMEOUT = timedelta(seconds=15)
_CLOSE_SECONDS = 2.0


class Progress:
    """What one attempt has sent and delivered, from the replies the pipeline gave; written to
    the row (one write at a time, always the latest totals) as it grows."""

    def __init__(
        self, payment: Payment, lease: Lease, keys: StreamKeys, sent: int, delivered: int
    ) -> None:
        self._payment = payment
        self._lease = lease
        self._keys = keys
        self.sent = sent
        self.delivered = delivered
        self.in_flight = 0
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None

    def starting(self, prepare: Prepare) -> None:
        self.in_flight += prepare.amount

    def finished(self, prepare: Prepare, reply: Fulfill | Reject) -> None:
        self.in_flight -= prepare.amount
        if not isinstance(reply, Fulfill) or prepare.amount == 0:
            return
        self.sent += prepare.amount
        self.delivered += self._delivered(prepare, reply)
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    def _delivered(self, prepare: Prepare, reply: Fulfill) -> int:
        try:
            return decode_stream_packet(self._keys.decrypt(reply.data)).prepare_amount
        except (DecryptionError, DecodeError):
            # No readable STREAM reply: the receiver accepted at least the packet's minimum.
            return self._payment.least_delivered(prepare.amount)

    async def _write(self) -> None:
        while self._dirty and not self._lease.lost:
            self._dirty = False
            await self._lease.renew(self.sent, self.delivered)

    async def flushed(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)


class PaymentLink:
    """The sender's ``send``: refuses what would break the budget or outlive the lease, then
    hands the packet to the pipeline."""

    def __init__(self, node: Node, payment: Payment, progress: Progress, lease: Lease) -> None:
        self._node = node
        self._payment = payment
        self._progress = progress
        self._lease = lease
        self.probing = True
        self.pipeline = PipelineLink(
            node, payment.source(paying=False), unfulfillable=True, observe=progress.finished
        )

    def start_paying(self) -> None:
        self.probing = False
        self.pipeline.source = self._payment.source(paying=True)
        self.pipeline.unfulfillable = False

    async def __call__(self, prepare: Prepare) -> Fulfill | Reject:
        address = self._node.address
        if self._lease.lost:
            return Reject("F00", address, "the payment's lease was lost", b"")
        if not self.probing and prepare.amount > 0:
            progress = self._progress
            left = self._payment.budget - progress.sent - progress.in_flight
            if prepare.amount > left:
                # F08 with what is left: the sender sends that much, then (nothing left) stops.
                return AmountTooLargeError(prepare.amount, max(left, 0)).to_reject(address)
        self._progress.starting(prepare)
        return await self.pipeline(prepare)


async def pay(
    node: Node,
    payment: Payment,
    lease: Lease,
    sent: int,
    delivered: int,
    *,
    spawn: Callable[[Coroutine[Any, Any, None], str], None],
) -> Outcome:
    """Pay ``payment`` over STREAM on what its quote's probe learned; ``spawn`` runs the
    closing of the connection as one of the worker's tasks."""
    if payment.credentials is not None and not lease.resumed:
        # The quote's probe resolved them moments ago; a resumed payment asks again.
        resolved = payment.credentials
    else:
        try:
            async with asyncio.timeout_at(lease.deadline):
                resolved = await resolve_receiver(node, payment.receiver)
        except InvalidReceiver as exc:
            return Failed(f"invalid receiver: {exc}", True, sent, delivered)
        except TimeoutError:
            return Failed(lease.overran(), True, sent, delivered)
    progress = Progress(payment, lease, StreamKeys(resolved.shared_secret), sent, delivered)
    link = PaymentLink(node, payment, progress, lease)
    sender = StreamSender(
        link,
        destination=resolved.destination,
        shared_secret=resolved.shared_secret,
        source_address=node.address,
        source_asset=Asset(payment.asset_code, payment.asset_scale),
        packet_lifetime=PACKET_LIFETIME,
        max_in_flight=MAX_IN_FLIGHT,
        max_packet_amount=payment.max_packet_amount or MAX_UINT64,
    )
    error: str | None = None
    retryable = True
    try:
        async with asyncio.timeout_at(lease.deadline):
            if payment.rate > 0 and payment.max_packet_amount:
                # The quote probed this path moments ago: pay on what it learned.
                sender.assume(
                    RateProbe(
                        payment.rate,
                        max(payment.high_rate, payment.rate),
                        payment.max_packet_amount,
                        payment.receive_asset,
                    )
                )
            else:
                error, retryable = await _probe(sender, payment)
            if error is None:
                link.start_paying()
                result = await sender.pay(
                    delivery_amount=payment.receive_amount - delivered,
                    min_exchange_rate=payment.min_rate,
                )
                if result.error is not None:
                    error = str(result.error)
    except TimeoutError:
        error = lease.overran()
    finally:
        # Every packet given to the pipeline is posted or voided before anything is decided.
        await link.pipeline.drain()
        await progress.flushed()
    if not lease.lost:
        # Tell the receiver we are done while the outcome is written: the close packet
        # carries no money and the payment's end need not wait a round trip for it.
        spawn(_close(sender, link), f"outgoing-payment-{payment.id}-close")
    sent, delivered = progress.sent, progress.delivered
    if payment.done(sent, delivered):
        return Completed(sent, delivered)
    return Failed(error or "the payment stopped short", retryable, sent, delivered)


async def _close(sender: StreamSender, link: PaymentLink) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_SECONDS):
            await sender.close()
    await link.pipeline.drain()


async def _probe(sender: StreamSender, payment: Payment) -> tuple[str | None, bool]:
    """Probe the path (a quote without a rate or packet size); (error, retryable)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT.total_seconds()):
            probe = await sender.probe()
    except TimeoutError:
        return "the rate probe did not finish in time", True
    except PaymentError as exc:
        return f"rate probe failed: {exc}", True
    asset = probe.destination_asset
    if asset is None:
        return "the receiver did not tell its asset", True
    if asset != payment.receive_asset:
        return (
            f"the receiver's asset is {asset.code} at scale {asset.scale}, not the "
            f"quote's {payment.receive_asset.code} at {payment.receive_asset.scale}"
        ), False
    return None, True
