"""Forwarding a Prepare to the next hop over ILP-over-HTTP (RFC 35 synchronous mode).

Funds are held as a pending transfer before the packet leaves, posted on a valid Fulfill and
voided otherwise. Only amount and expiry change on the way out (patched in the encoded bytes);
downstream replies are relayed byte for byte, except a Fulfill whose preimage is wrong (F05).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from kiungo.connector.link import LinkError
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline.accounting import ledger_errors_as_ilp, packet_legs
from kiungo.connector.pipeline.exchange import exchange
from kiungo.ilp.errors import (
    AmountTooLargeError,
    InsufficientTimeoutError,
    PeerUnreachableError,
    TransferTimedOutError,
    UnreachableError,
    WrongConditionError,
)
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Fulfill, Prepare, decode_reply, fulfillment_matches, rewrite_prepare
from kiungo.ledger import (
    AccountKind,
    LedgerError,
    Leg,
    account_id_for,
)

__all__ = ["forward"]

log = logging.getLogger("kiungo.connector.forward")

MIN_MESSAGE_WINDOW = timedelta(seconds=1)
# A hold outlives the packet by this much, so a Fulfill that arrives in time can always post.
HOLD_MARGIN = timedelta(seconds=5)
# A Fulfill whose post the ledger does not take is held back at most until this long before
# the sender's packet expires; then the post is owed (kiungo.connector.owed) and it goes out.
FULFILL_MARGIN = timedelta(milliseconds=500)


async def forward(
    node: Node,
    source: PeerInfo,
    target: PeerInfo,
    prepare: Prepare,
    raw: bytes,
    *,
    now: datetime,
) -> bytes:
    max_hold = timedelta(milliseconds=node.settings.packet_timeout_ms)
    expires_at = min(prepare.expires_at - MIN_MESSAGE_WINDOW, now + max_hold)
    if expires_at - now < MIN_MESSAGE_WINDOW:
        raise InsufficientTimeoutError("not enough time left to forward the packet")
    amount = await exchange(
        node,
        (source.asset_code, source.asset_scale),
        (target.asset_code, target.asset_scale),
        prepare.amount,
    )
    if target.max_packet_amount is not None and amount > target.max_packet_amount:
        # The most the next peer accepts (Rafiki's maxPacketAmount), in its units: the
        # sender scales its packets by the ratio of the two amounts.
        raise AmountTooLargeError(amount, target.max_packet_amount)
    outgoing = rewrite_prepare(raw, amount=amount, expires_at=expires_at)
    transfer_ids: list[uuid.UUID] = []
    legs: list[Leg] = []
    hold_until = expires_at + HOLD_MARGIN
    # A source without an account (a rate probe) sends only unfulfillable packets: no hold.
    if prepare.amount > 0 and source.account_kind is not None:
        legs = packet_legs(
            source,
            prepare.amount,
            account_id_for(AccountKind.PEER_LIQUIDITY, target.id),
            target.asset_id,
            amount,
        )
        with ledger_errors_as_ilp():
            held = await node.ledger.create_transfers(legs, hold_for=hold_until - now)
        transfer_ids = [t.id for t in held]
    try:
        remaining = (expires_at - datetime.now(UTC)).total_seconds()  # the hold took time
        reply_raw = await _send(node, target, outgoing, remaining)
        try:
            reply = decode_reply(reply_raw)
        except DecodeError:
            raise PeerUnreachableError("next hop answered with an unreadable packet") from None
        if isinstance(reply, Fulfill) and not fulfillment_matches(
            reply.fulfillment, prepare.execution_condition
        ):
            raise WrongConditionError("fulfillment from the next hop does not match")
    except BaseException:
        if transfer_ids:
            await _void(node, transfer_ids)
        raise
    if transfer_ids:
        if isinstance(reply, Fulfill):
            # The next hop has been paid and our peer owes us: the Fulfill is relayed once
            # this is booked (late if the hold expired first), retried through a database
            # outage while the sender can still take the Fulfill and the hold lives (a packet
            # an hour from expiry must not hold its Fulfill back for the hour), and owed after.
            await node.owed.post(legs, min(prepare.expires_at - FULFILL_MARGIN, hold_until))
        else:
            await _void(node, transfer_ids)
    if isinstance(reply, Fulfill) and prepare.amount:
        node.metrics.amount.labels("forwarded", source.asset_code, str(source.asset_scale)).inc(
            prepare.amount
        )
    return reply_raw


async def _send(node: Node, target: PeerInfo, outgoing: bytes, seconds: float) -> bytes:
    try:
        async with asyncio.timeout(seconds):
            status, body = await node.links.post(
                target.http_endpoint, outgoing, target.outgoing_token
            )
    except TimeoutError:
        raise TransferTimedOutError("next hop did not answer in time") from None
    except LinkError as exc:
        log.info("next hop %s unreachable: %s", target.id, exc)
        raise PeerUnreachableError("next hop unreachable") from None
    if 400 <= status < 500:
        raise UnreachableError(f"next hop refused the packet (HTTP {status})")
    if status != 200:
        raise PeerUnreachableError(f"next hop failed (HTTP {status})")
    return body


async def _void(node: Node, transfer_ids: list[uuid.UUID]) -> None:
    """Release the packet's hold. A failed void is not retried: the hold releases itself at
    its timeout."""
    try:
        await node.ledger.void(*transfer_ids)
    except LedgerError as exc:
        log.warning("could not void %s (it will expire): %r", transfer_ids, exc)
