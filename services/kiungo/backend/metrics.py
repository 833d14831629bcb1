"""Prometheus metrics of the backend (``GET /metrics``).

Counters and histograms count this replica's own work (sum them over replicas). The ledger
gauges (liquidity, pending holds) are read from Postgres by every replica's liquidity-alert
worker each ``WORKER_INTERVAL_MS`` round, so every replica reports the same values (take
``max`` over replicas, not ``sum``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from kiungo.runtime.group_metrics import ServedMetrics, service_registry

__all__ = ["LIQUIDITY_KINDS", "BackendMetrics"]

# The ``kind`` label values of ``kiungo_liquidity``: an asset's or a peer's liquidity account.
LIQUIDITY_KINDS = ("asset", "peer")


class BackendMetrics(ServedMetrics):
    """One registry per backend, so tests can run several in one process."""

    def __init__(self) -> None:
        self.registry = service_registry()
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
        self.liquidity = Gauge(
            "kiungo_liquidity",
            "Available balance (posted credits - posted debits - pending debits) of each asset's "
            "and peer's liquidity account, in the asset's smallest units, by kind (asset, peer), "
            "id (the asset's or peer's) and asset (its code); exact up to 2^53",
            ["kind", "id", "asset"],
            registry=self.registry,
        )
        self.pending_holds = Gauge(
            "kiungo_pending_holds",
            "Ledger transfers in state PENDING (two-phase holds not yet posted, voided or expired)",
            registry=self.registry,
        )
        self.oldest_pending_hold = Gauge(
            "kiungo_oldest_pending_hold_seconds",
            "Seconds the oldest PENDING ledger transfer is past its timeout (expires_at); 0 when "
            "none is past it (the connector's sweep releases such holds)",
            registry=self.registry,
        )
        self.webhook_backlog = Gauge(
            "kiungo_webhook_backlog",
            "Webhook events not yet delivered (and not given up): waiting for their first "
            "attempt or a retry",
            registry=self.registry,
        )
        self.oldest_undelivered_webhook = Gauge(
            "kiungo_oldest_undelivered_webhook_seconds",
            "Age of the oldest webhook event not yet delivered (0 when none is waiting)",
            registry=self.registry,
        )
        self.open_payments = Gauge(
            "kiungo_open_payments",
            "Payments not yet in a final state, by type (incoming, outgoing) and state "
            "(PENDING, PROCESSING; FUNDING, SENDING)",
            ["type", "state"],
            registry=self.registry,
        )
        self._liquidity_children: set[tuple[str, str, str]] = set()

    def set_liquidity(self, balances: Iterable[tuple[str, str, str, int]]) -> None:
        """Set ``kiungo_liquidity`` to exactly ``balances`` (kind, id, asset code, available):
        accounts no longer listed (a deleted peer or asset) lose their series."""
        children: set[tuple[str, str, str]] = set()
        for kind, owner, asset, available in balances:
            labels = (kind, owner, asset)
            self.liquidity.labels(*labels).set(available)
            children.add(labels)
        for gone in self._liquidity_children - children:
            self.liquidity.remove(*gone)
        self._liquidity_children = children

    def set_backlog(
        self,
        webhooks: int,
        oldest_webhook_seconds: float,
        open_payments: Iterable[tuple[str, str, int]],
    ) -> None:
        """Set the webhook backlog gauges and ``kiungo_open_payments`` (type, state, count)."""
        self.webhook_backlog.set(webhooks)
        self.oldest_undelivered_webhook.set(oldest_webhook_seconds)
        for kind, state, count in open_payments:
            self.open_payments.labels(kind, state).set(count)

    def set_pending_holds(self, count: int, oldest_overdue_seconds: float) -> None:
        self.pending_holds.set(count)
        self.oldest_pending_hold.set(oldest_overdue_seconds)
