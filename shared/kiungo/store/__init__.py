"""Stores: the Postgres and Redis servers the node keeps its state in (DESIGN §5).

What every replica shares through Redis, each decision made inside Redis in one atomic step:
``buckets`` (rate and throughput limits), ``stream_totals`` (STREAM receipts), ``idempotency``
(admin API keys) and ``channels`` (the pub/sub names). ``local`` and ``embedded`` find or start
the servers."""

from kiungo.store.embedded import EmbeddedEngineError, EmbeddedPostgres, EmbeddedRedis

__all__ = ["EmbeddedEngineError", "EmbeddedPostgres", "EmbeddedRedis"]
