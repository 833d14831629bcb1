"""The ledger the settings choose: Postgres (the default) or TigerBeetle (``USE_TIGERBEETLE``)."""

from __future__ import annotations

import asyncpg

from kiungo.config import ConfigError, Settings
from kiungo.ledger.service import Ledger
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.store.tigerbeetle import local_address

__all__ = ["make_ledger", "tigerbeetle_addresses"]


def tigerbeetle_addresses(settings: Settings) -> str:
    """TIGERBEETLE_REPLICA_ADDRESSES, else the replica ``kiungo up`` runs in KIUNGO_DATA_DIR."""
    addresses = settings.tigerbeetle_replica_addresses or local_address(settings)
    if addresses is None:
        raise ConfigError(
            "TIGERBEETLE_REPLICA_ADDRESSES: not set, and no replica of `kiungo up` runs "
            f"in {settings.data_dir}"
        )
    return addresses


def make_ledger(pool: asyncpg.Pool, settings: Settings) -> Ledger:
    """A ledger (not started) over ``pool`` and, with USE_TIGERBEETLE, the cluster."""
    if not settings.use_tigerbeetle:
        return Ledger(pool)
    return TigerBeetleLedger(
        pool,
        cluster_id=settings.tigerbeetle_cluster_id,
        addresses=tigerbeetle_addresses(settings),
    )
