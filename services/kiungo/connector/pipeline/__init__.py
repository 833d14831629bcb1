"""The packet path (DESIGN §3): one Prepare from a peer in, its Fulfill or Reject out.

The source may also be internal (:func:`kiungo.connector.peers.internal_source`): an outgoing
payment's packets and a quote's probes come in here, in-process, with the payment's account (or
none) as the source account; they skip the per-peer limits and the peer protocols.

Steps, in order, each in its own module: expiry, maximum packet amount, rate and throughput
limits, IL-DCP, then our own STREAM receivers or a forward along the longest-prefix route.
Errors are typed (:class:`kiungo.ilp.IlpError`) and become Rejects carrying our address here,
at the edge; anything unexpected is a T00, logged once with the packet's condition.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from kiungo.connector.metrics import peer_label
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline.checks import (
    check_expiry,
    check_limits,
    check_max_packet,
    refund_throughput,
)
from kiungo.connector.pipeline.forward import forward
from kiungo.connector.pipeline.ildcp import answer_peer_protocol
from kiungo.connector.pipeline.receive import Acceptance, receive_locally
from kiungo.connector.tracing import traced_packet
from kiungo.ilp.errors import IlpError, UnreachableError
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import PacketType, Reject, decode_prepare, encode_packet

__all__ = ["Acceptance", "handle_packet"]

log = logging.getLogger("kiungo.connector.packets")


def handle_packet(
    node: Node, peer: PeerInfo, raw: bytes
) -> Coroutine[Any, Any, bytes | Acceptance]:
    """The encoded reply to ``raw`` from ``peer`` (to await); never raises. Money received for
    one of our own receivers comes back held, as an :class:`Acceptance` whose caller ends it
    (sends the Fulfill :meth:`Acceptance.finish` builds, or declines it when the peer is gone).
    Traced when the node traces (:mod:`kiungo.connector.tracing`); otherwise this one check is
    all tracing costs a packet (a plain function: no extra coroutine either)."""
    if node.tracing is not None:
        return traced_packet(node, peer, raw, _handle_packet)
    return _handle_packet(node, peer, raw)


async def _handle_packet(node: Node, peer: PeerInfo, raw: bytes) -> bytes | Acceptance:
    started = time.perf_counter()
    condition = ""
    taken = 0  # from the peer's throughput limit
    try:
        try:
            prepare = decode_prepare(raw)
        except DecodeError as exc:
            raise IlpError(f"invalid ILP Prepare: {exc}", code="F01") from None
        condition = prepare.execution_condition.hex()
        now = datetime.now(UTC)
        check_expiry(prepare, now)
        check_max_packet(prepare, peer, node.settings.max_packet_amount)
        if not peer.internal:  # our own sources are not limited as peers are
            taken = await check_limits(node, peer, prepare)
        if prepare.destination.startswith("peer."):
            if peer.internal:
                raise UnreachableError(f"no route to {prepare.destination}")
            reply = answer_peer_protocol(node, peer, prepare, now)
        elif node.stream_server.token_segment(prepare.destination) is not None:
            received = await receive_locally(node, peer, prepare, now)
            if isinstance(received, Acceptance):
                received.ended = functools.partial(_ended, node, peer, started, taken)
                return received
            reply = received
        else:
            target = node.peers.route(prepare.destination)
            if target is None or target.id == peer.id:
                raise UnreachableError(f"no route to {prepare.destination}")
            reply = await forward(node, peer, target, prepare, raw, now=now)
    except IlpError as error:
        reply = encode_packet(error.to_reject(node.address))
        _log_reject(peer, condition, error.code, error.message)
    except Exception:
        log.exception(
            "unexpected error handling packet from peer %s condition %s", peer.id, condition
        )
        reply = encode_packet(Reject("T00", node.address, "internal error", b""))
        _log_reject(peer, condition, "T00", "internal error")
    await _ended(node, peer, started, taken, reply)
    return reply


async def _ended(
    node: Node, peer: PeerInfo, started: float, taken: int, reply: bytes | None
) -> None:
    """Count the packet's reply (None: it got none, its peer being gone), and give back what a
    packet that was not fulfilled took from its peer's throughput limit."""
    fulfilled = reply is not None and reply[0] == PacketType.FULFILL
    if taken and not fulfilled:
        await refund_throughput(node, peer, taken)
    if reply is None:
        return
    outcome = "fulfilled" if fulfilled else _reject_code(reply)
    node.metrics.packets.labels(outcome, peer_label(peer.id, internal=peer.internal)).inc()
    node.metrics.latency.observe(time.perf_counter() - started)


def _reject_code(reply: bytes) -> str:
    # A Reject's code is the three bytes after its envelope's length determinant.
    start = 2 if reply[1] < 0x80 else 2 + (reply[1] & 0x7F)
    return reply[start : start + 3].decode("ascii", errors="replace")


def _log_reject(peer: PeerInfo, condition: str, code: str, message: str) -> None:
    log.info(
        "reject code=%s peer=%s condition=%s reason=%s",
        code,
        peer.id,
        condition,
        message,
        extra={"peer_id": str(peer.id), "condition": condition, "code": code, "reason": message},
    )
