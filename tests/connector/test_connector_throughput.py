"""The per-peer throughput limit (T04) through the connector: a packet that is not fulfilled
gives back what it took, so that a dead next hop does not starve its peer's good traffic."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from redis.asyncio import Redis
from tests.connector.harness import (
    create_peer,
    free_port,
    fulfilling_hop,
    gather_replies,
    next_hop,
    prepare_to,
    running_connector,
)

from kiungo.config import Settings
from kiungo.ilp.packet import Fulfill, Reject
from kiungo.ledger import Ledger
from kiungo.store.channels import PEERS_CHANGED_CHANNEL

LIMIT = 1000  # units per second, and the bucket's capacity; alice's largest packet too


async def test_packets_rejected_by_a_dead_next_hop_leave_the_peers_throughput_intact(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    settings = replace(Settings(), peer_throughput_limit=LIMIT)
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop, settings=settings
        ) as connector,
    ):
        # A peer whose endpoint nobody listens on.
        async with connector.pool.acquire() as conn, Ledger(connector.pool) as ledger:
            await create_peer(
                conn, ledger, asset=connector.seeded.usd, address="test.dead",
                endpoint=f"http://127.0.0.1:{free_port()}/ilp", liquidity=10**6,
            )  # fmt: skip
        await redis.publish(redis_prefix + PEERS_CHANGED_CHANNEL, "changed")
        for _ in range(100):
            reply = await connector.send(prepare_to("test.dead.x", 1))
            assert isinstance(reply, Reject), reply
            if reply.code == "T01":  # routed, and unreachable
                break
            assert reply.code == "F02", reply
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the dead peer was never routed")

        # Three times the limit's worth, all rejected by the dead next hop (the limit's worth
        # at a time: each takes its amount until its reject gives it back)...
        for _ in range(3):
            dead = await gather_replies(
                connector, [prepare_to("test.dead.x", LIMIT // 10) for _ in range(10)]
            )
            assert {r.code for r in dead if isinstance(r, Reject)} == {"T01"}, dead
        # ...and a packet of the whole limit still goes through at once (the bucket refills
        # only 1 unit a millisecond by itself).
        good = await connector.send(prepare_to("test.bob.x", LIMIT))
        assert isinstance(good, Fulfill), good
        # A fulfilled packet's amount is not given back: the bucket is empty now.
        after = await connector.send(prepare_to("test.bob.x", LIMIT))
        assert isinstance(after, Reject) and after.code == "T04", after
