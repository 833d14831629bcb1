"""A stand-in OpenTelemetry collector for tests: a real HTTP server on loopback taking OTLP/HTTP
trace exports (``POST /v1/traces``, protobuf) and keeping what it received."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.loopback import serve

PROTOBUF = "application/x-protobuf"


@dataclass
class Collector:
    url: str = ""  # the base URL, as an operator would give it (the exporter adds /v1/traces)
    exports: list[ExportTraceServiceRequest] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    def spans(self, service: str | None = None) -> list[Span]:
        """Every span received, of ``service`` (its resource's ``service.name``) when given."""
        found: list[Span] = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                names = [
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ]
                if service is not None and names != [service]:
                    continue
                for scope_spans in resource_spans.scope_spans:
                    found.extend(scope_spans.spans)
        return found


@contextlib.asynccontextmanager
async def otlp_collector() -> AsyncIterator[Collector]:
    collector = Collector()

    async def traces(request: Request) -> Response:
        collector.content_types.append(request.headers.get("content-type", ""))
        collector.exports.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)

    async with serve(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        collector.url = url
        yield collector
