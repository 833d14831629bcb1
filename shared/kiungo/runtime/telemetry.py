"""OpenTelemetry traces, on with ``ENABLE_TELEMETRY_TRACES`` (Rafiki's setting).

Each service that traces holds one :class:`Tracing`: its own tracer provider (service name
``kiungo-connector`` or ``kiungo-backend``, so two services in one process stay apart), whose
spans a :class:`BatchSpanProcessor` hands, on its own thread, to an OTLP/HTTP exporter per
collector URL (``OPEN_TELEMETRY_TRACE_COLLECTOR_URLS``, else ``OPEN_TELEMETRY_COLLECTOR_URLS``).
Ending a span only queues it; a collector that is slow or down costs the event loop nothing
(the queue drops spans past its size rather than grow).

Off (the default), :func:`start_tracing` returns None and OpenTelemetry is not even imported:
the code that traces checks for None once and does nothing else.

Nothing here is set as OpenTelemetry's global provider, and logs are not touched. The standard
``OTEL_EXPORTER_OTLP_TRACES_*`` variables (headers, TLS files, compression, timeout) and
``OTEL_RESOURCE_ATTRIBUTES`` still apply, as the OpenTelemetry SDK reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from kiungo.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

__all__ = ["BACKEND", "CONNECTOR", "Tracing", "start_tracing", "trace_endpoint"]

log = logging.getLogger("kiungo.telemetry")

CONNECTOR = "kiungo-connector"
BACKEND = "kiungo-backend"

# OTLP over gRPC listens on 4317 and Rafiki's collector URLs name it; this exporter speaks
# OTLP over HTTP (4318 by default), which a gRPC port does not answer.
_GRPC_PORT = 4317
_TRACES_PATH = "/v1/traces"


def trace_endpoint(url: str) -> str:
    """Where spans are POSTed for a collector URL: a URL with no path gets OTLP's
    ``/v1/traces`` (``http://collector:4318`` → ``http://collector:4318/v1/traces``); one with
    a path is used as it is."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=_TRACES_PATH))
    return url


def _version() -> str:
    try:
        return metadata.version("kiungo")
    except metadata.PackageNotFoundError:
        return "0"


class Tracing:
    """One service's tracer and the provider exporting its spans (see the module)."""

    def __init__(self, service: str, exporters: Sequence[SpanExporter] = ()) -> None:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

        self.service = service
        version = _version()
        # The attributes given win over OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
        resource = Resource.create({"service.name": service, "service.version": version})
        self._provider: TracerProvider = TracerProvider(resource=resource)
        for exporter in exporters:
            self.add_exporter(exporter)
        self.tracer: Tracer = self._provider.get_tracer("kiungo", version)

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Export every span ended from now on to ``exporter`` too, in batches on a thread."""
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        self._provider.add_span_processor(BatchSpanProcessor(exporter))

    async def force_flush(self, timeout_ms: int = 5_000) -> bool:
        """Export what is queued now (on a thread); False if it did not finish in time."""
        return await asyncio.to_thread(self._provider.force_flush, timeout_ms)

    async def shutdown(self) -> None:
        """Export what is queued and stop the exporters (on a thread: it waits for them)."""
        await asyncio.to_thread(self._provider.shutdown)


def start_tracing(settings: Settings, service: str) -> Tracing | None:
    """The service's tracing, exporting over OTLP/HTTP to the configured collectors; None when
    ``ENABLE_TELEMETRY_TRACES`` is off (nothing is imported or started then)."""
    if not settings.telemetry_traces:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    endpoints = [trace_endpoint(url) for url in settings.telemetry_trace_urls]
    for endpoint in endpoints:
        if urlsplit(endpoint).port == _GRPC_PORT:
            log.warning(
                "trace collector %s: port 4317 is OTLP over gRPC; Kiungo sends OTLP over HTTP "
                "(a collector's port 4318 by default)",
                _without_credentials(endpoint),
            )
    tracing = Tracing(service, [OTLPSpanExporter(endpoint=endpoint) for endpoint in endpoints])
    log.info(
        "%s traces exported over OTLP/HTTP to %s",
        service,
        ", ".join(_without_credentials(e) for e in endpoints),
    )
    return tracing


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))
