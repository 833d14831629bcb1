"""A span per ILP packet on the connector's packet path (``ENABLE_TELEMETRY_TRACES``).

:func:`kiungo.connector.pipeline.handle_packet` calls :func:`traced_packet` only when the node
traces; otherwise it checks ``node.tracing`` for None and nothing here runs.

Span ``ilp.packet`` (kind SERVER from a peer, INTERNAL for this node's own payments), from the
Prepare's arrival to its reply (for money received here: until its Fulfill is decided), with:

- ``ilp.peer.id``: the peer the Prepare came from (``local`` for this node's own payments);
- ``ilp.amount``: the Prepare's amount, as a decimal string (a u64 can exceed OTLP's int64);
- ``ilp.destination.prefix``: the destination without its last segment, so a STREAM
  connection token (always the last segment) never leaves the node; ``peer.*`` protocol
  addresses are kept whole;
- ``ilp.outcome``: ``fulfilled``, the reject code, or ``no_reply`` (declined: its peer was gone);
  ``ilp.reject.code`` on a Reject; the span's status is ERROR for a T00 (internal error).

The execution condition and the packet's data are left out: the condition identifies a
payment at every hop, and traces may go to a collector outside the node's operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from kiungo.connector.metrics import peer_label
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo
from kiungo.connector.pipeline.receive import Acceptance
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import PacketType, decode_prepare

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["destination_prefix", "traced_packet"]

PacketHandler = Callable[[Node, PeerInfo, bytes], Awaitable[bytes | Acceptance]]


def destination_prefix(destination: str) -> str:
    """``ilp.destination.prefix`` of a destination (see the module)."""
    if destination.startswith("peer."):
        return destination
    cut = destination.rfind(".")
    return destination[:cut] if cut > 0 else destination


async def traced_packet(
    node: Node, peer: PeerInfo, raw: bytes, handle: PacketHandler
) -> bytes | Acceptance:
    """``handle(node, peer, raw)``, timed by the packet's span; never raises (as ``handle``)."""
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    assert node.tracing is not None
    span = node.tracing.tracer.start_span(
        "ilp.packet", kind=SpanKind.INTERNAL if peer.internal else SpanKind.SERVER
    )
    if span.is_recording():  # not when a sampler (OTEL_TRACES_SAMPLER) left this one out
        span.set_attribute("ilp.peer.id", peer_label(peer.id, internal=peer.internal))
        try:
            prepare = decode_prepare(raw)
        except DecodeError:
            pass  # the pipeline rejects it (F01); the span shows the outcome
        else:
            span.set_attribute("ilp.amount", str(prepare.amount))
            span.set_attribute("ilp.destination.prefix", destination_prefix(prepare.destination))
    # Not made the current span: nothing on the packet path starts spans of its own.
    handled = await handle(node, peer, raw)
    if not isinstance(handled, Acceptance):
        _end(span, handled)
        return handled
    ended = handled.ended

    async def end_with_reply(reply: bytes | None) -> None:
        try:
            if ended is not None:
                await ended(reply)
        finally:
            _end(span, reply)

    handled.ended = end_with_reply
    return handled


def _end(span: Span, reply: bytes | None) -> None:
    from opentelemetry.trace import StatusCode  # noqa: PLC0415

    if not span.is_recording():
        pass
    elif reply is None:
        span.set_attribute("ilp.outcome", "no_reply")
    elif reply[0] == PacketType.FULFILL:
        span.set_attribute("ilp.outcome", "fulfilled")
    else:
        # A Reject's code: the three bytes after its envelope's length determinant.
        start = 2 if reply[1] < 0x80 else 2 + (reply[1] & 0x7F)
        code = reply[start : start + 3].decode("ascii", errors="replace")
        span.set_attribute("ilp.outcome", code)
        span.set_attribute("ilp.reject.code", code)
        if code == "T00":
            span.set_status(StatusCode.ERROR, "internal error")
    span.end()
