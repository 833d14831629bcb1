"""Sending from inside the node: STREAM senders whose packets enter our own packet path.

:class:`PipelineLink` is a :data:`kiungo.stream.sender_connection.SendFunction` that hands each
Prepare to :func:`kiungo.connector.pipeline.handle_packet` with an internal source (an outgoing
payment's account, or no account for probes), exactly as a peer's packet would arrive over HTTP.
Each packet runs in a task of its own that the sender's cancellation does not reach: a packet
that has left the node always gets its hold posted or voided, so the books never depend on where
a payment was interrupted.

:func:`resolve_receiver` turns a receiver (URL or ``$pointer``) into STREAM credentials: for
this node's own wallet addresses and incoming payments directly; for another node's incoming
payment over Open Payments (its ``ilp`` payment method, read with a grant, as Rafiki pays one:
:mod:`kiungo.openpayments.client`); for anything else, and for an incoming payment URL whose
node does not speak Open Payments, over SPSP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline import Acceptance, handle_packet
from kiungo.connector.receivers import Receiver
from kiungo.connector.spsp import find_receiver
from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_reply, encode_packet
from kiungo.openpayments.client import OpenPaymentsError
from kiungo.openpayments.remote import INCOMING_PAYMENT_PATH, IncomingPaymentView
from kiungo.payments.receivers import InvalidReceiverUrl, local_receiver_url
from kiungo.spsp import SpspQueryError, query
from kiungo.stream.crypto import random_condition
from kiungo.stream.server import Asset

__all__ = [
    "InvalidReceiver",
    "PipelineLink",
    "ResolvedReceiver",
    "resolve_receiver",
]

log = logging.getLogger("kiungo.connector.inprocess")

# Called with each Prepare and its reply, once the packet is done (posted or voided).
ReplyObserver = Callable[[Prepare, Fulfill | Reject], None]


class PipelineLink:
    """``send(prepare)`` through this node's packet path with ``source`` as the source.

    With ``unfulfillable``, every Prepare gets a random condition first, so none can ever be
    fulfilled and no money can move whatever the sender builds (probes)."""

    def __init__(
        self,
        node: Node,
        source: PeerInfo,
        *,
        unfulfillable: bool = False,
        observe: ReplyObserver | None = None,
    ) -> None:
        self._node = node
        self.source = source
        self.unfulfillable = unfulfillable
        self._observe = observe
        self._packets: set[asyncio.Task[Fulfill | Reject]] = set()

    async def __call__(self, prepare: Prepare) -> Fulfill | Reject:
        if self.unfulfillable:
            prepare = dataclasses.replace(prepare, execution_condition=random_condition())
        task = asyncio.create_task(self._one(self.source, prepare))
        self._packets.add(task)
        task.add_done_callback(self._packets.discard)
        # Shielded: a cancelled sender stops waiting, the packet still finishes its accounting.
        return await asyncio.shield(task)

    async def _one(self, source: PeerInfo, prepare: Prepare) -> Fulfill | Reject:
        reply: Fulfill | Reject
        try:
            handled = await handle_packet(self._node, source, encode_packet(prepare))
            if isinstance(handled, Acceptance):  # a packet this node received itself
                # Past finish the packet is counted in its receipts: its Fulfill is the reply,
                # whatever its post does (posts that fail are owed, or logged).
                reply = decode_reply(await handled.finish())
                try:
                    await handled.after_reply()
                except Exception:
                    log.exception("posting an internal packet from %s failed", source.id)
            else:
                reply = decode_reply(handled)
        except Exception:
            log.exception("internal packet from %s failed", source.id)
            reply = Reject("T00", self._node.address, "internal error", b"")
        if self._observe is not None:
            self._observe(prepare, reply)
        return reply

    @property
    def in_flight(self) -> int:
        return len(self._packets)

    async def drain(self) -> None:
        """Wait until every packet handed to the pipeline has finished."""
        while self._packets:
            await asyncio.gather(*self._packets, return_exceptions=True)


class InvalidReceiver(Exception):
    """The receiver cannot be resolved to STREAM credentials."""


@dataclass(frozen=True, slots=True)
class ResolvedReceiver:
    destination: str
    shared_secret: bytes
    local: Receiver | None = None
    """This node's own receiver, when the receiver is one (resolved without HTTP)."""
    incoming: IncomingPaymentView | None = None
    """Another node's incoming payment as its resource server showed it (Open Payments)."""


async def resolve_receiver(node: Node, receiver: str) -> ResolvedReceiver:
    """STREAM credentials for ``receiver``; raises :class:`InvalidReceiver`."""
    try:
        url = local_receiver_url(node.settings.open_payments_url, receiver)
    except InvalidReceiverUrl as exc:
        raise InvalidReceiver(str(exc)) from None
    if url is not None:
        found = await find_receiver(node, url)
        if found is None or not found.open_at(datetime.now(UTC)):
            raise InvalidReceiver(f"no open wallet address or incoming payment at {url}")
        credentials = node.stream_server.generate_credentials(
            payment_tag=found.tag, asset=Asset(found.asset_code, found.asset_scale)
        )
        return ResolvedReceiver(
            credentials.destination_account, credentials.shared_secret, local=found
        )
    remote = "https://" + receiver[1:] if receiver.startswith("$") else receiver
    tried = ""
    if INCOMING_PAYMENT_PATH.match(remote) is not None:
        try:
            payment = await node.open_payments.incoming_payment(remote)
        except OpenPaymentsError as exc:
            if exc.kind == "NotFound":
                raise InvalidReceiver(exc.message) from None
            tried = f"over Open Payments: {exc.message}; "  # not Open Payments: try SPSP
        else:
            if not payment.methods:
                raise InvalidReceiver(
                    f"the incoming payment {remote} offers no ilp payment method "
                    "(completed or expired)"
                )
            destination, secret = payment.methods[0]
            return ResolvedReceiver(destination, secret, incoming=payment)
    try:
        answer = await query(
            receiver,
            client=node.receiver_http,
            max_seconds=node.settings.receiver_fetch_timeout_ms / 1000,
        )
    except SpspQueryError as exc:
        raise InvalidReceiver(f"{tried}{'over SPSP: ' if tried else ''}{exc}") from None
    return ResolvedReceiver(answer.destination_account, answer.shared_secret)
