"""Stores: the Postgres and Redis servers the node keeps its state in (DESIGN §5)."""

from kiungo.store.embedded import EmbeddedEngineError, EmbeddedPostgres, EmbeddedRedis

__all__ = ["EmbeddedEngineError", "EmbeddedPostgres", "EmbeddedRedis"]
