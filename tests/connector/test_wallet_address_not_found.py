"""Rafiki's ``wallet_address.not_found`` event: an SPSP or wallet address document lookup of an
unknown wallet address under OPEN_PAYMENTS_URL raises it, once per URL, a bounded number a
minute."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis
from tests.connector.harness import WALLET_BASE, Connector, running_connector

from kiungo.connector import wallet_not_found
from kiungo.spsp import SPSP_CONTENT_TYPE


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Connector]:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        yield connector


async def _events(connector: Connector) -> list[dict[str, object]]:
    rows = await connector.pool.fetch(
        "SELECT data, resource_id FROM webhook_events WHERE type = 'wallet_address.not_found' "
        "ORDER BY seq"
    )
    assert all(r["resource_id"] is None for r in rows)
    return [json.loads(r["data"]) for r in rows]


async def test_unknown_wallet_address_lookups_raise_not_found_once(
    connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    for accept in (SPSP_CONTENT_TYPE, "application/json", SPSP_CONTENT_TYPE):
        response = await connector.client.get(
            f"{connector.url}/nobody/", headers={"Accept": accept}
        )
        assert response.status_code == 404
    # A known wallet address and an unknown incoming payment raise nothing.
    known = await connector.client.get(
        f"{connector.url}/carol", headers={"Accept": "application/json"}
    )
    assert known.status_code == 200
    missing_payment = await connector.client.get(
        f"{connector.url}/carol/incoming-payments/00000000-0000-0000-0000-000000000001",
        headers={"Accept": SPSP_CONTENT_TYPE},
    )
    assert missing_payment.status_code == 404
    assert await _events(connector) == [{"walletAddressUrl": f"{WALLET_BASE}/nobody"}]
    # A scanner trying many names: at most MAX_PER_MINUTE events (here 3) in a minute.
    monkeypatch.setattr(wallet_not_found, "MAX_PER_MINUTE", 3)
    monkeypatch.setattr(wallet_not_found, "time", SimpleNamespace(time=lambda: 60.0 * 12345))
    for i in range(6):
        response = await connector.client.get(
            f"{connector.url}/scan{i}", headers={"Accept": SPSP_CONTENT_TYPE}
        )
        assert response.status_code == 404
    urls = [e["walletAddressUrl"] for e in await _events(connector)]
    assert urls == [f"{WALLET_BASE}/nobody"] + [f"{WALLET_BASE}/scan{i}" for i in range(3)]
