"""Prometheus metrics of the packet path (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kiungo.runtime.group_metrics import ServedMetrics

__all__ = ["Metrics"]


class Metrics(ServedMetrics):
    """One registry per node, so tests can run several nodes in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.packets = Counter(
            "kiungo_ilp_packets",
            "ILP Prepares answered, by outcome (fulfilled, or the reject code)",
            ["outcome"],
            registry=self.registry,
        )
        self.amount = Counter(
            "kiungo_ilp_amount",
            "Amounts of fulfilled packets in the incoming peer's units, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiungo_ilp_packet_seconds",
            "Time from receiving a Prepare to answering it",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

        self.posts_owed = Gauge(
            "kiungo_posts_owed",
            "Fulfilled packets whose post the ledger has not taken yet (kept in Redis)",
            registry=self.registry,
        )
