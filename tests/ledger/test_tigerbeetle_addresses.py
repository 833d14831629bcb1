"""TIGERBEETLE_REPLICA_ADDRESSES may name replicas by host name (a Compose service, a Kubernetes
Service): the TigerBeetle client takes IP addresses only, so the node resolves them at start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg
import pytest
from tests.ledger.schema import create_asset
from tests.tigerbeetle_server import tigerbeetle_server
from tigerbeetle.client import InitError

from kiungo.config import ConfigError, Settings
from kiungo.ledger import AccountKind
from kiungo.ledger.backend import make_ledger, resolve_replica_addresses
from kiungo.ledger.tigerbeetle import TigerBeetleLedger


async def test_ip_addresses_and_bare_ports_are_kept_names_are_resolved() -> None:
    assert await resolve_replica_addresses("127.0.0.1:3000,3001") == "127.0.0.1:3000,3001"
    assert await resolve_replica_addresses("[::1]:3000") == "[::1]:3000"
    resolved = await resolve_replica_addresses("localhost:3000,127.0.0.2:3001")
    assert resolved in ("127.0.0.1:3000,127.0.0.2:3001", "[::1]:3000,127.0.0.2:3001")


async def test_a_name_that_does_not_resolve_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"TIGERBEETLE_REPLICA_ADDRESSES: cannot resolve"):
        await resolve_replica_addresses("no-such-replica.invalid:3000")


async def test_a_ledger_reaches_a_replica_named_by_host(pool: asyncpg.Pool, tmp_path: Path) -> None:
    # The client alone refuses a name (AddressInvalid): this is what the resolution is for.
    with pytest.raises(InitError):
        TigerBeetleLedger(None, cluster_id=0, addresses="localhost:3000").start()
    async with tigerbeetle_server(tmp_path) as server:
        settings = dataclasses.replace(
            Settings(),
            use_tigerbeetle=True,
            tigerbeetle_replica_addresses=f"localhost:{server.port}",
        )
        ledger = await make_ledger(pool, settings)
        assert isinstance(ledger, TigerBeetleLedger)
        async with ledger:
            asset = await create_asset(pool, "USD", 2)
            account = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, asset, asset)
            assert (await ledger.balance(account)).credits_posted == 0
