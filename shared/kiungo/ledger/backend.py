"""The ledger the settings choose: Postgres (the default) or TigerBeetle (``USE_TIGERBEETLE``)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import asyncpg

from kiungo.config import ConfigError, Settings
from kiungo.ledger.service import Ledger
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.store.tigerbeetle import local_address

__all__ = ["make_ledger", "resolve_replica_addresses", "tigerbeetle_addresses"]


def tigerbeetle_addresses(settings: Settings) -> str:
    """TIGERBEETLE_REPLICA_ADDRESSES, else the replica ``kiungo up`` runs in KIUNGO_DATA_DIR."""
    addresses = settings.tigerbeetle_replica_addresses or local_address(settings)
    if addresses is None:
        raise ConfigError(
            "TIGERBEETLE_REPLICA_ADDRESSES: not set, and no replica of `kiungo up` runs "
            f"in {settings.data_dir}"
        )
    return addresses


async def resolve_replica_addresses(addresses: str) -> str:
    """``addresses`` with every host name resolved to an IP address, in order: the TigerBeetle
    client takes only IP addresses (it does no DNS), while an operator names replicas as their
    platform does (a Compose service, a Kubernetes Service). Resolved once, at start: a
    replica that moves to another address needs the node restarted, as TigerBeetle's own
    clients do."""
    resolved = []
    loop = asyncio.get_running_loop()
    for entry in addresses.split(","):
        host, sep, port = entry.rpartition(":")
        if not sep or not host:  # a bare port: the client's own 127.0.0.1
            resolved.append(entry)
            continue
        bare = host.strip("[]")
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            try:
                found = await loop.getaddrinfo(bare, int(port), type=socket.SOCK_STREAM)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"TIGERBEETLE_REPLICA_ADDRESSES: cannot resolve {host!r}: {exc}"
                ) from None
            family, _, _, _, sockaddr = found[0]
            ip = str(sockaddr[0])
            host = f"[{ip}]" if family == socket.AF_INET6 else ip
        resolved.append(f"{host}:{port}")
    return ",".join(resolved)


async def make_ledger(pool: asyncpg.Pool, settings: Settings) -> Ledger:
    """A ledger (not started) over ``pool`` and, with USE_TIGERBEETLE, the cluster (its
    replicas' host names resolved)."""
    if not settings.use_tigerbeetle:
        return Ledger(pool)
    return TigerBeetleLedger(
        pool,
        cluster_id=settings.tigerbeetle_cluster_id,
        addresses=await resolve_replica_addresses(tigerbeetle_addresses(settings)),
    )
