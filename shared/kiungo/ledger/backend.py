"""The ledger the settings choose: Postgres (the default) or TigerBeetle (``USE_TIGERBEETLE``)."""

from __future__ import annotations

import asyncpg

from kiungo.config import Settings
from kiungo.ledger.service import Ledger
from kiungo.ledger.tigerbeetle import TigerBeetleLedger

__all__ = ["make_ledger", "tigerbeetle_addresses"]

# Where ``kiungo up`` runs its own single replica when USE_TIGERBEETLE names none.
LOCAL_TIGERBEETLE_PORT = 3003


def tigerbeetle_addresses(settings: Settings) -> str:
    return settings.tigerbeetle_replica_addresses or f"127.0.0.1:{LOCAL_TIGERBEETLE_PORT}"


def make_ledger(pool: asyncpg.Pool, settings: Settings) -> Ledger:
    """A ledger (not started) over ``pool`` and, with USE_TIGERBEETLE, the cluster."""
    if not settings.use_tigerbeetle:
        return Ledger(pool)
    return TigerBeetleLedger(
        pool,
        cluster_id=settings.tigerbeetle_cluster_id,
        addresses=tigerbeetle_addresses(settings),
    )
