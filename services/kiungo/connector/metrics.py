"""Prometheus metrics of the packet path (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kiungo.runtime.group_metrics import ServedMetrics, service_registry

__all__ = ["LOCAL_PEER", "Metrics", "peer_label"]

LOCAL_PEER = "local"
"""The ``peer`` label of packets this node's own payments send (not a peer's)."""


def peer_label(peer_id: object, *, internal: bool) -> str:
    """A packet source's ``peer`` label: a peer's id, or ``local`` for this node's own sources
    (their ids are per payment: as labels they would grow without bound)."""
    return LOCAL_PEER if internal else str(peer_id)


class Metrics(ServedMetrics):
    """One registry per node, so tests can run several nodes in one process."""

    def __init__(self) -> None:
        self.registry = service_registry()
        self.packets = Counter(
            "kiungo_ilp_packets",
            "ILP Prepares answered, by outcome (fulfilled, or the reject code) and by the peer "
            "they came from (its id, or local for this node's own payments)",
            ["outcome", "peer"],
            registry=self.registry,
        )
        self.amount = Counter(
            "kiungo_ilp_amount",
            "Amounts of fulfilled packets in the incoming peer's units, by kind and by that "
            "asset (code and scale: amounts of different assets are never added together)",
            ["kind", "asset", "asset_scale"],
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
