"""Receiving STREAM money for our own wallet addresses and incoming payments.

The amount is converted into the receiver's asset first, so the STREAM reply tells the sender
what arrived in the receiver's units. Then, for packets with money: the connection's running
total is incremented in Redis (shared by every replica, for receipts), the money is held in the
ledger (an incoming payment's amount is the ledger leg's credit limit, so concurrent packets can
never overpay it) and posted once the Fulfill has been sent; the increment is undone if the
ledger refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline.accounting import ledger_errors_as_ilp, packet_legs
from kiungo.connector.pipeline.exchange import exchange
from kiungo.connector.receivers import Receiver
from kiungo.ilp.packet import Prepare, encode_packet
from kiungo.ledger import CreditLimitExceeded
from kiungo.stream.receiver import IncomingMoney

__all__ = ["RECEIVE_HOLD", "AfterReply", "receive_locally"]

AfterReply = Callable[[], Awaitable[None]]
# How long a received packet's money is held while its Fulfill is being sent.
RECEIVE_HOLD = timedelta(seconds=5)


async def receive_locally(
    node: Node, peer: PeerInfo, prepare: Prepare, now: datetime
) -> tuple[bytes, AfterReply | None]:
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
        return encode_packet(result), None
    if receiver is None or not receiver.open_at(now) or peer.account_kind is None:
        # (A source without an account has no money to pay with.)
        return encode_packet(result.decline_finally()), None

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
    total = await node.totals.add(result.connection_id, arriving.amount)
    try:
        with ledger_errors_as_ilp():
            await node.ledger.create_transfers(legs, hold_for=RECEIVE_HOLD)
    except CreditLimitExceeded:
        await node.totals.undo(result.connection_id, arriving.amount)
        await node.receivers.settle(receiver, node.ledger)
        return encode_packet(result.decline_finally()), None
    except BaseException:
        await node.totals.undo(result.connection_id, arriving.amount)
        raise
    # From when the hold exists (the writer may have been behind), not from before asking.
    hold_until = datetime.now(UTC) + RECEIVE_HOLD
    receipts = connection is not None and connection.receipt_setup is not None
    reply = encode_packet(result.accept(total if receipts else None))

    async def post_after_reply() -> None:
        # Posted once the Fulfill is on its way, so a crash before that leaves a hold that
        # expires: a receiver never shows money whose fulfillment was not sent. Booked late
        # if the hold expired first; retried through a database outage up to the hold's
        # expiry, and owed after that (the receiver is settled once the owed post is booked).
        if not await node.owed.post(legs, hold_until, receiver=receiver.tag):
            return
        node.metrics.amount.labels("received").inc(prepare.amount)
        await node.receivers.settle(receiver, node.ledger)

    return reply, post_after_reply


async def _ensure_account(node: Node, receiver: Receiver) -> None:
    if receiver.account_id not in node.accounts_ready:
        await node.ledger.ensure_account(receiver.account_kind, receiver.id, receiver.asset_id)
        node.accounts_ready.add(receiver.account_id)
