"""Prometheus metrics of the backend (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["BackendMetrics"]


class BackendMetrics:
    """One registry per backend, so tests can run several in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kiungo_graphql_requests",
            "GraphQL requests answered, by outcome (ok, or the first error's code)",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiungo_graphql_request_seconds",
            "Time to answer a GraphQL request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "kiungo_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, given_up)",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
