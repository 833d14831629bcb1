"""The connector through a TigerBeetle restart under traffic: packets sent while the cluster is
down are held back or refused with a T (temporary) code, and no money is lost or invented. A
packet held back until the cluster answers may have too little of its expiry left to be
forwarded: that one is R00 (timed out), also a refusal that moves no money."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tests.connector.harness import (
    Connector,
    fulfilling_hop,
    next_hop,
    prepare_to,
    running_connector,
)

from kiungo.ilp.packet import Fulfill, Reject
from kiungo.ledger import AccountKind, LedgerUnavailable


@pytest.fixture
async def connector(
    tmp_path: Path, database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Connector]:
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop,
            tigerbeetle_dir=tmp_path,
        ) as connector,
    ):  # fmt: skip
        yield connector


async def test_a_tigerbeetle_restart_under_traffic_loses_nothing(connector: Connector) -> None:
    server, ledger = connector.tigerbeetle, connector.ledger
    assert server is not None and ledger is not None

    async def burst(count: int, expires_in: float = 20) -> list[Fulfill | Reject]:
        prepares = [prepare_to("test.bob.x", 10, expires_in=expires_in) for _ in range(count)]
        return await asyncio.gather(*(connector.send(p) for p in prepares))

    before = await burst(20)
    assert all(isinstance(r, Fulfill) for r in before)
    await server.stop()
    during = asyncio.ensure_future(burst(30, expires_in=10))
    await asyncio.sleep(7)  # longer than the ledger waits for an answer (5 s)
    await server.start()
    replies = await during
    # The client reconnects by itself; new packets are fulfilled once it has.
    bob = connector.seeded.peers["bob"]
    for _ in range(60):
        try:
            await connector.balance(AccountKind.PEER_LIQUIDITY, bob)
            break
        except LedgerUnavailable:
            continue
    # The connector's own client reconnects on its own schedule (and first sends what it still
    # held for requests that timed out): one packet at a time until one is fulfilled, then all.
    probes: list[Fulfill | Reject] = []
    deadline = time.monotonic() + 60
    while not (probes and isinstance(probes[-1], Fulfill)) and time.monotonic() < deadline:
        probes += await burst(1)
        await asyncio.sleep(0.2)
    after = await burst(20)
    assert all(isinstance(r, Fulfill) for r in after), [r for r in after if isinstance(r, Reject)]
    replies += probes
    rejects = [r for r in replies if isinstance(r, Reject)]
    assert rejects, "the outage was seen"
    assert any(r.code.startswith("T") for r in rejects), rejects
    # Held back past its expiry (a loaded machine reconnects slowly): R00, never an F code.
    assert all(r.code.startswith("T") or r.code == "R00" for r in rejects), rejects
    # A hold whose request timed out is made once the cluster is back (its client still had
    # it): nobody posts it, and TigerBeetle releases it at its timeout (the packet's 10 s and
    # the hold margin's 5 s, from the restart).
    await connector.settled(30)
    fulfilled = sum(isinstance(r, Fulfill) for r in before + replies + after)
    alice = connector.seeded.peers["alice"]
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, bob) == 10 * fulfilled
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 10_000 - 10 * fulfilled
    assert [r for r in await ledger.check() if not r.ok] == []
