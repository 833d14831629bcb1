"""Traces of the packet path (ENABLE_TELEMETRY_TRACES): a span per packet through a real
connector, with its peer, amount, destination prefix and outcome; none when off."""

from __future__ import annotations

import base64
import os
from dataclasses import replace

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis
from tests.connector.harness import (
    Connector,
    create_incoming_payment,
    fulfilling_hop,
    next_hop,
    prepare_to,
    running_connector,
)
from tests.otlp_collector import otlp_collector

from kiungo.config import Settings
from kiungo.connector.tracing import destination_prefix
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.spsp import SpspResponse
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet


def _traced(collector_url: str) -> Settings:
    return replace(Settings(), telemetry_traces=True, telemetry_trace_urls=(collector_url,))


async def _finished(connector: Connector, memory: InMemorySpanExporter) -> list[ReadableSpan]:
    assert connector.node is not None and connector.node.tracing is not None
    assert await connector.node.tracing.force_flush()
    return list(memory.get_finished_spans())


async def _stream_packet(connector: Connector, amount: int) -> Prepare:
    """A STREAM packet carrying ``amount`` into a new incoming payment of carol's."""
    async with connector.pool.acquire() as conn:
        payment = await create_incoming_payment(
            conn, connector.seeded.wallets["carol"], connector.seeded.usd, None
        )
    spsp = await connector.client.get(
        f"{connector.url}/carol/incoming-payments/{payment}",
        headers={
            "Accept": "application/spsp4+json",
            "Receipt-Nonce": base64.b64encode(os.urandom(16)).decode(),
            "Receipt-Secret": base64.b64encode(os.urandom(32)).decode(),
        },
    )
    credentials = SpspResponse.from_json(spsp.json())
    keys = StreamKeys(credentials.shared_secret)
    data = keys.encrypt(encode_stream_packet(StreamPacket(1, 12, 0, [StreamMoneyFrame(1, amount)])))
    prepare = prepare_to(credentials.destination_account, amount, data=data)
    return replace(prepare, execution_condition=keys.condition(data))


async def test_each_packet_is_a_span_with_its_peer_amount_prefix_and_outcome(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with (
        otlp_collector() as collector,
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop,
            settings=_traced(collector.url),
        ) as connector,
    ):  # fmt: skip
        assert connector.node is not None and connector.node.tracing is not None
        assert connector.node.tracing.service == "kiungo-connector"
        memory = InMemorySpanExporter()
        connector.node.tracing.add_exporter(memory)
        alice = str(connector.seeded.peers["alice"])

        forwarded = await connector.send(prepare_to("test.bob.secret-token", 250))
        unroutable = await connector.send(prepare_to("test.nowhere.secret-token", 7))
        received = await connector.send(await _stream_packet(connector, 40))
        assert isinstance(forwarded, Fulfill)
        assert isinstance(unroutable, Reject) and unroutable.code == "F02"
        assert isinstance(received, Fulfill)
        spans = await _finished(connector, memory)

    assert [s.name for s in spans] == ["ilp.packet"] * 3
    assert all(s.kind is SpanKind.SERVER for s in spans)
    first, second, third = (dict(s.attributes or {}) for s in spans)
    assert first == {
        "ilp.peer.id": alice,
        "ilp.amount": "250",
        "ilp.destination.prefix": "test.bob",
        "ilp.outcome": "fulfilled",
    }
    assert second == {
        "ilp.peer.id": alice,
        "ilp.amount": "7",
        "ilp.destination.prefix": "test.nowhere",
        "ilp.outcome": "F02",
        "ilp.reject.code": "F02",
    }
    # Money received here: the span lasts until the Fulfill is decided; the STREAM connection
    # token (the destination's last segment) stays out.
    assert third == {
        "ilp.peer.id": alice,
        "ilp.amount": "40",
        "ilp.destination.prefix": "test.kiungo",
        "ilp.outcome": "fulfilled",
    }
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    assert all("secret-token" not in str(s.attributes) for s in spans)
    # The same spans went out over OTLP/HTTP to the collector when the connector stopped.
    exported = collector.spans("kiungo-connector")
    assert [s.name for s in exported] == ["ilp.packet"] * 3


async def test_without_telemetry_a_connector_has_no_tracing(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        assert connector.node is not None
        assert connector.node.tracing is None
        reply = await connector.send(prepare_to("test.nowhere", 1))
        assert isinstance(reply, Reject)


def test_the_destination_prefix_drops_the_last_segment_but_keeps_peer_protocols() -> None:
    assert destination_prefix("g.node.alice.~tok3n") == "g.node.alice"
    assert destination_prefix("test.bob") == "test"
    assert destination_prefix("peer.config") == "peer.config"
    assert destination_prefix("peer.route.control") == "peer.route.control"
    assert destination_prefix("local") == "local"


async def test_an_unparseable_packet_is_a_span_with_its_reject(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with (
        otlp_collector() as collector,
        running_connector(
            database_url, redis_server_url, redis_prefix, settings=_traced(collector.url)
        ) as connector,
    ):
        assert connector.node is not None and connector.node.tracing is not None
        memory = InMemorySpanExporter()
        connector.node.tracing.add_exporter(memory)
        reply = await connector.send(b"\x0c\x01\x00")
        assert isinstance(reply, Reject) and reply.code == "F01"
        (span,) = await _finished(connector, memory)
    assert dict(span.attributes or {}) == {
        "ilp.peer.id": str(connector.seeded.peers["alice"]),
        "ilp.outcome": "F01",
        "ilp.reject.code": "F01",
    }
