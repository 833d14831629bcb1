"""Telemetry settings (Rafiki's names) and the OTLP/HTTP export: off by default with nothing
started, a collector URL required when on, spans POSTed as protobuf to /v1/traces."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import replace

import pytest
from tests.otlp_collector import PROTOBUF, otlp_collector

from kiungo.config import ConfigError, Settings
from kiungo.runtime.telemetry import CONNECTOR, start_tracing, trace_endpoint


def test_traces_are_off_by_default_and_rafikis_collector_is_not_assumed() -> None:
    settings = Settings.from_env({})
    assert settings.telemetry_traces is False
    assert settings.telemetry_trace_urls == ()
    assert start_tracing(settings, CONNECTOR) is None


def test_trace_collectors_come_from_the_trace_urls_else_the_collector_urls() -> None:
    on = {"ENABLE_TELEMETRY_TRACES": "true"}
    both = Settings.from_env(
        on
        | {
            "OPEN_TELEMETRY_COLLECTOR_URLS": "http://metrics:4318",
            "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS": " http://a:4318 , ,https://b/otlp/v1/traces",
        }
    )
    assert both.telemetry_trace_urls == ("http://a:4318", "https://b/otlp/v1/traces")
    fallback = Settings.from_env(on | {"OPEN_TELEMETRY_COLLECTOR_URLS": "http://c:4318"})
    assert fallback.telemetry_traces is True
    assert fallback.telemetry_trace_urls == ("http://c:4318",)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"ENABLE_TELEMETRY_TRACES": "true"},
            "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS: required with ENABLE_TELEMETRY_TRACES=true",
        ),
        ({"ENABLE_TELEMETRY_TRACES": "sometimes"}, "ENABLE_TELEMETRY_TRACES: expected true"),
        (
            {"OPEN_TELEMETRY_COLLECTOR_URLS": "http://ok:4318,otel-collector:4317"},
            "OPEN_TELEMETRY_COLLECTOR_URLS: expected an http(s) URL",
        ),
        (
            {"OPEN_TELEMETRY_TRACE_COLLECTOR_URLS": "grpc://collector"},
            "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS: expected an http(s) URL",
        ),
    ],
)
def test_a_bad_telemetry_setting_stops_the_start_naming_it(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(environ)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_collector_url_without_a_path_gets_the_otlp_traces_path() -> None:
    assert trace_endpoint("http://collector:4318") == "http://collector:4318/v1/traces"
    assert trace_endpoint("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert trace_endpoint("https://x.example/otlp/v1/traces") == "https://x.example/otlp/v1/traces"


def test_off_no_tracer_provider_or_exporter_is_imported() -> None:
    # (redis-py imports opentelemetry.sdk.metrics by itself once the SDK is installed, for its
    # own observability, which stays off unless initialised: not ours to test.)
    code = (
        "import sys\n"
        "from kiungo.config import Settings\n"
        "from kiungo.runtime.telemetry import start_tracing\n"
        "import kiungo.connector.app, kiungo.backend.app\n"
        "assert start_tracing(Settings(), 'kiungo-connector') is None\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', "
        "'opentelemetry.exporter', 'opentelemetry.proto'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_spans_are_posted_as_otlp_protobuf_to_v1_traces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with otlp_collector() as collector:
        settings = replace(Settings(), telemetry_traces=True, telemetry_trace_urls=(collector.url,))
        with caplog.at_level(logging.INFO, logger="kiungo.telemetry"):
            tracing = start_tracing(settings, CONNECTOR)
        assert tracing is not None
        assert f"{collector.url}/v1/traces" in caplog.text
        tracing.tracer.start_span("ilp.packet", attributes={"ilp.amount": "5"}).end()
        await tracing.shutdown()  # exports what is queued
        (span,) = collector.spans(CONNECTOR)
    assert collector.content_types == [PROTOBUF]
    assert span.name == "ilp.packet"
    assert [(a.key, a.value.string_value) for a in span.attributes] == [("ilp.amount", "5")]
    (resource,) = [r.resource for r in collector.exports[0].resource_spans]
    version = {a.key: a.value.string_value for a in resource.attributes}
    assert version["service.name"] == "kiungo-connector"
    assert version["service.version"]


def test_a_grpc_port_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(
        Settings(), telemetry_traces=True, telemetry_trace_urls=("http://user:pw@collector:4317",)
    )
    with caplog.at_level(logging.WARNING, logger="kiungo.telemetry"):
        tracing = start_tracing(settings, CONNECTOR)
    assert tracing is not None
    assert "port 4317 is OTLP over gRPC" in caplog.text
    assert "pw" not in caplog.text
    # Nothing was traced: shutting down has nothing to send to the unreachable collector.
    tracing._provider.shutdown()


async def test_the_standard_sampler_variables_thin_the_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    async with otlp_collector() as collector:
        settings = replace(Settings(), telemetry_traces=True, telemetry_trace_urls=(collector.url,))
        tracing = start_tracing(settings, CONNECTOR)
        assert tracing is not None
        span = tracing.tracer.start_span("ilp.packet")
        assert not span.is_recording()
        span.end()
        await tracing.shutdown()
    assert collector.spans() == []
