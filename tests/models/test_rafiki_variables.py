"""Rafiki variables that mean nothing to Kiungo: named once each at start, and only those."""

from __future__ import annotations

import logging

import pytest

from kiungo.config import RAFIKI_VARIABLES, warn_unused_rafiki_variables

# Rafiki's names that Kiungo's settings implement (README, settings tables).
IMPLEMENTED = {
    "ADMIN_API_SECRET", "ADMIN_API_SIGNATURE_TTL_SECONDS", "ADMIN_PORT", "AUTH_SERVER_GRANT_URL",
    "AUTH_PORT", "ACCESS_TOKEN_EXPIRY_SECONDS", "CONNECTOR_PORT",
    "DATABASE_URL", "EXCHANGE_RATES_LIFETIME", "EXCHANGE_RATES_URL",
    "GRAPHQL_IDEMPOTENCY_KEY_TTL_MS", "ILP_ADDRESS", "ILP_CONNECTOR_URL", "KEY_ID",
    "PRIVATE_KEY_FILE",
    "INCOMING_PAYMENT_EXPIRY_MAX_MS", "LOG_LEVEL", "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS",
    "NODE_ENV", "OPEN_PAYMENTS_URL", "QUOTE_LIFESPAN", "REDIS_URL", "SIGNATURE_SECRET",
    "SLIPPAGE", "STREAM_SECRET", "WALLET_ADDRESS_URL", "WEBHOOK_MAX_RETRY", "WEBHOOK_TIMEOUT",
    "WEBHOOK_URL", "USE_TIGERBEETLE", "TIGERBEETLE_CLUSTER_ID", "TIGERBEETLE_REPLICA_ADDRESSES",
    "ENABLE_TELEMETRY_TRACES", "OPEN_TELEMETRY_COLLECTOR_URLS",
    "OPEN_TELEMETRY_TRACE_COLLECTOR_URLS", "ENABLE_AUTO_PEERING", "AUTO_PEERING_SERVER_PORT",
    "OPERATOR_TENANT_ID",
}  # fmt: skip


def test_each_unused_rafiki_variable_is_warned_once_and_no_implemented_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {name: "x" for name in RAFIKI_VARIABLES} | {"KIUNGO_DATA_DIR": "/tmp", "PATH": "/"}
    with caplog.at_level(logging.WARNING, logger="kiungo.config"):
        names = warn_unused_rafiki_variables(environ)
    warned = [r.__dict__["variable"] for r in caplog.records]
    assert sorted(warned) == names
    assert len(warned) == len(set(warned))
    assert not set(warned) & IMPLEMENTED
    # Those still unimplemented when this was written (others may become implemented).
    assert {"COOKIE_KEY", "REDIS_TLS_CA_FILE_PATH"} <= set(warned)
    # Rafiki's OpenTelemetry metrics switches: Kiungo's metrics are Prometheus (/metrics).
    assert {"ENABLE_TELEMETRY", "OPEN_TELEMETRY_EXPORT_INTERVAL"} <= set(warned)
    assert all(r.levelno == logging.WARNING and r.name == "kiungo.config" for r in caplog.records)


def test_empty_and_non_rafiki_variables_are_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"COOKIE_KEY": "  ", "KEY_ID": "", "MY_OWN": "1", "WEBHOOK_TIMEOUT": "5"}
    with caplog.at_level(logging.WARNING, logger="kiungo.config"):
        assert warn_unused_rafiki_variables(environ) == []
    assert caplog.records == []
