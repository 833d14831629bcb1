"""The checks before a packet goes anywhere: expiry (R02), maximum packet amount (F08), and the
per-peer rate (T05) and throughput (T04) limits shared by all replicas through Redis."""

from __future__ import annotations

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

__all__ = ["check_expiry", "check_limits", "check_max_packet"]


def check_expiry(prepare: Prepare, now: datetime) -> None:
    if prepare.expires_at <= now:
        raise InsufficientTimeoutError("packet expired before it arrived")


def check_max_packet(prepare: Prepare, peer: PeerInfo, node_default: int | None) -> None:
    limit = peer.max_packet_amount if peer.max_packet_amount is not None else node_default
    if limit is not None and prepare.amount > limit:
        raise AmountTooLargeError(prepare.amount, limit)


async def check_limits(node: Node, peer: PeerInfo, prepare: Prepare) -> None:
    settings = node.settings
    if settings.peer_rate_limit is not None and not await node.rate_limiter.allow(
        str(peer.id),
        capacity=settings.peer_rate_limit,
        refill_per_second=settings.peer_rate_limit,
    ):
        raise RateLimitedError("too many packets from this peer")
    if (
        settings.peer_throughput_limit is not None
        and prepare.amount > 0
        and not await node.throughput.allow(
            str(peer.id),
            prepare.amount,
            capacity=settings.peer_throughput_limit,
            refill_per_second=settings.peer_throughput_limit,
        )
    ):
        raise InsufficientLiquidityError("throughput limit reached for this peer")
