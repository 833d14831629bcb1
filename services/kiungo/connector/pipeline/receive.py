"""Receiving STREAM money for our own wallet addresses and incoming payments.

The amount is converted into the receiver's asset first, so the STREAM reply tells the sender
what arrived in the receiver's units. Then, for packets with money: the money is held in the
ledger (an incoming payment's amount is the ledger leg's credit limit, so concurrent packets can
never overpay it), and the packet is an :class:`Acceptance` whose end its caller decides. Only
when the Fulfill is about to go out is the packet added to the connection's running total in
Redis (shared by every replica, for receipts), and from there on there is no way back: the
Fulfill is sent and the hold posted. So a receipt never counts a packet that the ledger refused
or whose sender hung up before its reply (its hold is voided instead).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline.accounting import ledger_errors_as_ilp, packet_legs
from kiungo.connector.pipeline.exchange import exchange
from kiungo.connector.receivers import Receiver
from kiungo.ilp.packet import Prepare, encode_packet
from kiungo.ledger import CreditLimitExceeded, LedgerError, Leg
from kiungo.stream.receiver import IncomingMoney

__all__ = ["RECEIVE_HOLD", "Acceptance", "receive_locally"]

log = logging.getLogger("kiungo.connector.receive")

# How long a received packet's money is held while its Fulfill is being sent.
RECEIVE_HOLD = timedelta(seconds=5)


class Acceptance:
    """A received packet whose money is held and whose Fulfill is not built yet.

    Its caller ends it one way: :meth:`finish` (the point of no return: the packet is counted
    in its connection's total, and the Fulfill it returns must be sent) then
    :meth:`after_reply` (the post), or :meth:`decline` (nobody will hear the reply: the hold is
    voided and nothing is counted).
    """

    __slots__ = (
        "_hold_until",
        "_legs",
        "_node",
        "_receiver",
        "_result",
        "_source",
        "_source_amount",
        "ended",
    )

    def __init__(
        self,
        node: Node,
        result: IncomingMoney,
        receiver: Receiver,
        legs: list[Leg],
        hold_until: datetime,
        source: PeerInfo,
        source_amount: int,
    ) -> None:
        self._node = node
        self._source = source
        self._result = result
        self._receiver = receiver
        self._legs = legs
        self._hold_until = hold_until
        self._source_amount = source_amount
        # Awaited with the reply once it is decided (None: no reply, declined); the packet path
        # counts it and gives back what the packet took from its peer's limits.
        self.ended: Callable[[bytes | None], Awaitable[None]] | None = None

    async def finish(self) -> bytes:
        """The Fulfill, with a receipt for the connection's total when it has receipts."""
        total = None
        if self._result.connection.receipt_setup is not None:
            # The running total INCRBY answers includes this packet, so a connection's receipts
            # only grow. The money of every packet counted is on its way to being posted.
            try:
                total = await self._node.totals.add(self._result.connection_id, self._result.amount)
            except Exception as exc:
                # The packet may have been counted (an answer lost), so it is not refused now:
                # its money is posted as any counted packet's, and it goes without a receipt.
                log.warning("STREAM total not counted (%r); fulfilling without a receipt", exc)
        reply = encode_packet(self._result.accept(total))
        if self.ended is not None:
            await self.ended(reply)
        return reply

    async def after_reply(self) -> None:
        """Post the money, once the Fulfill is on its way."""
        # Retried through a database outage up to the hold's expiry, and owed after that (the
        # receiver is settled once the owed post is booked).
        if not await self._node.owed.post(
            self._legs, self._hold_until, receiver=self._receiver.tag
        ):
            return
        source = self._source
        self._node.metrics.amount.labels(
            "received", source.asset_code, str(source.asset_scale)
        ).inc(self._source_amount)
        await self._node.receivers.settle(self._receiver, self._node.ledger)

    async def decline(self) -> None:
        """Release the hold at once (not at its expiry, where it would keep an incoming
        payment's room taken): no reply is sent, so the sender pays it again."""
        try:
            await self._node.ledger.void(*self.transfer_ids)
        except LedgerError as exc:
            log.warning("could not void %s (it will expire): %r", self.transfer_ids, exc)
        if self.ended is not None:
            await self.ended(None)

    @property
    def transfer_ids(self) -> list[uuid.UUID]:
        return [leg.id for leg in self._legs]


async def receive_locally(
    node: Node, peer: PeerInfo, prepare: Prepare, now: datetime
) -> bytes | Acceptance:
    """The reply to a packet for one of our STREAM receivers, or, for money the ledger holds,
    its :class:`Acceptance`."""
    connection = node.stream_server.connection(prepare.destination)
    receiver = None
    arriving = prepare
    if connection is not None:
        receiver = await node.receivers.by_tag(connection.payment_tag)
        if receiver is not None:
            amount = await exchange(
                node,
                (peer.asset_code, peer.asset_scale),
                (receiver.asset_code, receiver.asset_scale),
                prepare.amount,
            )
            arriving = dataclasses.replace(prepare, amount=amount)
    result = node.receiver.receive(arriving)
    if not isinstance(result, IncomingMoney):
        return encode_packet(result)
    if receiver is None or not receiver.open_at(now) or peer.account_kind is None:
        # (A source without an account has no money to pay with.)
        return encode_packet(result.decline_finally())

    await _ensure_account(node, receiver)
    legs = packet_legs(
        peer,
        prepare.amount,
        receiver.account_id,
        receiver.asset_id,
        arriving.amount,
        credit_limit=receiver.incoming_amount,
        credit_until=receiver.expires_at,
    )
    with ledger_errors_as_ilp():  # (which would make a full incoming payment a T00)
        try:
            await node.ledger.create_transfers(legs, hold_for=RECEIVE_HOLD)
        except CreditLimitExceeded:
            await node.receivers.settle(receiver, node.ledger)
            return encode_packet(result.decline_finally())
    # From when the hold exists (the writer may have been behind), not from before asking.
    hold_until = datetime.now(UTC) + RECEIVE_HOLD
    return Acceptance(node, result, receiver, legs, hold_until, peer, prepare.amount)


async def _ensure_account(node: Node, receiver: Receiver) -> None:
    if receiver.account_id not in node.accounts_ready:
        await node.ledger.ensure_account(receiver.account_kind, receiver.id, receiver.asset_id)
        node.accounts_ready.add(receiver.account_id)
