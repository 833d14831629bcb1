"""Traces of the backend (ENABLE_TELEMETRY_TRACES): a span per GraphQL operation, named for
it, and a span per webhook delivery attempt with its status; none when off."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.backend.test_webhooks import delivered, event, eventually, receiving
from tests.otlp_collector import otlp_collector

from kiungo.events import EventType


async def _finished(admin: Admin, memory: InMemorySpanExporter) -> list[ReadableSpan]:
    assert admin.backend.tracing is not None
    assert await admin.backend.tracing.force_flush()
    return list(memory.get_finished_spans())


async def test_each_graphql_operation_is_a_span_named_for_it(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with otlp_collector() as collector:
        settings = backend_settings(
            redis_prefix, telemetry_traces=True, telemetry_trace_urls=(collector.url,)
        )
        async with running_backend(
            migrated_database, redis_server_url, settings, workers=False
        ) as admin:
            assert admin.backend.tracing is not None
            assert admin.backend.tracing.service == "kiungo-backend"
            memory = InMemorySpanExporter()
            admin.backend.tracing.add_exporter(memory)

            await admin.data(
                "mutation AddUsd($input: CreateAssetInput!) {"
                " createAsset(input: $input) { asset { id } } }",
                {"input": {"code": "USD", "scale": 2}},
            )
            await admin.data("{ assets { edges { node { id } } } }")
            failure = await admin.error(
                "query Missing($id: String!) { asset(id: $id) { id } }", {"id": str(uuid.uuid4())}
            )
            assert failure.code == "NOT_FOUND"
            # Refused before any operation runs (not GraphQL): no span.
            assert (await admin.post("{ nope }")).status_code == 400
            spans = await _finished(admin, memory)
        exported = collector.spans("kiungo-backend")

    assert [s.name for s in spans] == ["mutation AddUsd", "query assets", "query Missing"]
    assert all(s.kind is SpanKind.SERVER for s in spans)
    named, anonymous, missing = (dict(s.attributes or {}) for s in spans)
    assert named == {
        "graphql.operation.type": "mutation",
        "graphql.operation.name": "AddUsd",
        "kiungo.graphql.fields": ("createAsset",),
        "kiungo.graphql.outcome": "ok",
    }
    assert anonymous == {
        "graphql.operation.type": "query",
        "kiungo.graphql.fields": ("assets",),
        "kiungo.graphql.outcome": "ok",
    }
    assert missing["kiungo.graphql.outcome"] == "NOT_FOUND"
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    assert sorted(s.name for s in exported) == sorted(s.name for s in spans)


async def test_each_webhook_delivery_attempt_is_a_span_with_its_status(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async def respond(_body: dict[str, Any], attempt: int) -> int:
        return 503 if attempt == 1 else 204

    async with otlp_collector() as collector, receiving(respond) as receiver:
        settings = backend_settings(
            redis_prefix,
            webhook_url=receiver.url + "?token=hook-secret",
            telemetry_traces=True,
            telemetry_trace_urls=(collector.url,),
        )
        async with running_backend(migrated_database, redis_server_url, settings) as admin:
            assert admin.backend.tracing is not None
            memory = InMemorySpanExporter()
            admin.backend.tracing.add_exporter(memory)
            event_id = await event(admin, uuid.uuid4(), EventType.ASSET_LIQUIDITY_LOW)
            await eventually(lambda: delivered(admin, event_id))
            spans = [s for s in await _finished(admin, memory) if s.name == "webhook.delivery"]

    assert len(spans) == 2
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    failed, succeeded = (dict(s.attributes or {}) for s in spans)
    port = int(receiver.url.split(":")[2].split("/")[0])
    common = {
        "http.request.method": "POST",
        "url.full": receiver.url,  # without the query, which may hold a token
        "server.address": "127.0.0.1",
        "server.port": port,
        "kiungo.webhook.event.id": str(event_id),
        "kiungo.webhook.event.type": "asset.liquidity_low",
    }
    assert failed == {
        **common,
        "kiungo.webhook.attempt": 1,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert spans[0].status.status_code is StatusCode.ERROR
    assert succeeded == {**common, "kiungo.webhook.attempt": 2, "http.response.status_code": 204}
    assert spans[1].status.status_code is StatusCode.UNSET


async def test_a_webhook_receiver_that_does_not_answer_in_time_is_a_timeout_span(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    release = asyncio.Event()

    async def respond(_body: dict[str, Any], attempt: int) -> int:
        if attempt == 1:
            await release.wait()  # far past the timeout
        return 200

    async with otlp_collector() as collector, receiving(respond) as receiver:
        settings = backend_settings(
            redis_prefix,
            webhook_url=receiver.url,
            # The retry must answer within it too: ample room for that on a loaded machine.
            webhook_timeout_ms=1_000,
            telemetry_traces=True,
            telemetry_trace_urls=(collector.url,),
        )
        async with running_backend(migrated_database, redis_server_url, settings) as admin:
            assert admin.backend.tracing is not None
            memory = InMemorySpanExporter()
            admin.backend.tracing.add_exporter(memory)
            event_id = await event(admin)
            try:
                await eventually(lambda: delivered(admin, event_id))
            finally:
                release.set()
            spans = [s for s in await _finished(admin, memory) if s.name == "webhook.delivery"]
    timed_out = dict(spans[0].attributes or {})
    assert timed_out["error.type"] == "timeout"
    assert "http.response.status_code" not in timed_out
    assert spans[0].status.status_code is StatusCode.ERROR


async def test_without_telemetry_the_backend_has_no_tracing(admin: Admin) -> None:
    assert admin.backend.tracing is None
    assert await admin.data("{ assets { edges { node { id } } } }") == {"assets": {"edges": []}}
