"""The checks before a packet goes anywhere: expiry (R02), maximum packet amount (F08), and the
per-peer rate (T05) and throughput (T04) limits shared by all replicas through Redis. What a
packet took from the throughput limit is given back when it is not fulfilled."""

from __future__ import annotations

import logging
from datetime import datetime

from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.ilp.errors import (
    AmountTooLargeError,
    InsufficientLiquidityError,
    InsufficientTimeoutError,
    RateLimitedError,
)
from kiungo.ilp.packet import Prepare

__all__ = ["check_expiry", "check_limits", "check_max_packet", "refund_throughput"]

log = logging.getLogger("kiungo.connector.checks")


def check_expiry(prepare: Prepare, now: datetime) -> None:
    if prepare.expires_at <= now:
        raise InsufficientTimeoutError("packet expired before it arrived")


def check_max_packet(prepare: Prepare, peer: PeerInfo, node_default: int | None) -> None:
    limit = peer.max_packet_amount if peer.max_packet_amount is not None else node_default
    if limit is not None and prepare.amount > limit:
        raise AmountTooLargeError(prepare.amount, limit)


async def check_limits(node: Node, peer: PeerInfo, prepare: Prepare) -> int:
    """Take the packet from the peer's buckets; the amount taken from its throughput bucket,
    for :func:`refund_throughput` should the packet not be fulfilled."""
    settings = node.settings
    if settings.peer_rate_limit is not None and not await node.rate_limiter.allow(
        str(peer.id),
        capacity=settings.peer_rate_limit,
        refill_per_second=settings.peer_rate_limit,
    ):
        raise RateLimitedError("too many packets from this peer")
    limit = settings.peer_throughput_limit
    if limit is None or prepare.amount == 0:
        return 0
    if not await node.throughput.allow(
        str(peer.id), prepare.amount, capacity=limit, refill_per_second=limit
    ):
        raise InsufficientLiquidityError("throughput limit reached for this peer")
    return prepare.amount


async def refund_throughput(node: Node, peer: PeerInfo, amount: int) -> None:
    """Give back what a packet that was rejected (or abandoned) took from its peer's throughput
    bucket, as interledger-rs does: a next hop that rejects everything must not use up the
    peer's limit for its packets that would get through. Best effort: a failure is logged."""
    limit = node.settings.peer_throughput_limit
    if limit is None:
        return
    try:
        await node.throughput.refund(str(peer.id), amount, capacity=limit, refill_per_second=limit)
    except Exception as exc:
        log.warning("could not refund %s to the throughput of peer %s: %r", amount, peer.id, exc)
