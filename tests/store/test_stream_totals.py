"""STREAM totals shared by replicas, for receipts.

All on real Redis; "two replicas" are two separate clients (connection pools) on one server.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kiungo.store.stream_totals import StreamTotals, TotalOverflow

# STREAM totals


async def test_stream_totals_are_atomic_across_replicas(
    replicas: tuple[Redis, Redis], redis_prefix: str
) -> None:
    totals = [StreamTotals(client, redis_prefix) for client in replicas]
    results = await asyncio.gather(*(totals[i % 2].add("conn", 1) for i in range(1000)))
    assert sorted(results) == list(range(1, 1001))
    assert await totals[0].total("conn") == 1000


async def test_stream_totals_of_adds_sent_together_are_each_adds_step(
    redis: Redis, redis_prefix: str
) -> None:
    totals = StreamTotals(redis, redis_prefix)
    await totals.add("conn", 100)
    # Added in one tick, so sent as one INCRBY: each gets the total its own add reached.
    assert await asyncio.gather(*(totals.add("conn", n) for n in (1, 2, 3))) == [101, 103, 106]
    assert await totals.total("conn") == 106


async def test_stream_totals_sent_together_that_overflow_are_refused_one_by_one(
    redis: Redis, redis_prefix: str
) -> None:
    totals = StreamTotals(redis, redis_prefix)
    await totals.add("near", 2**63 - 10)
    results = await asyncio.gather(
        *(totals.add("near", n) for n in (5, 10, 3)), return_exceptions=True
    )
    assert results[0] == 2**63 - 5
    assert isinstance(results[1], TotalOverflow)
    assert results[2] == 2**63 - 2
    assert await totals.total("near") == 2**63 - 2
    # A sum that no INCRBY can take (past int64) is split the same way.
    results = await asyncio.gather(
        *(totals.add("big", 2**62) for _ in range(3)), return_exceptions=True
    )
    assert results[0] == 2**62
    assert all(isinstance(r, TotalOverflow) for r in results[1:])
    assert await totals.total("big") == 2**62


async def test_a_total_redis_refuses_fails_its_own_adds_only(
    redis: Redis, redis_prefix: str
) -> None:
    totals = StreamTotals(redis, redis_prefix)
    await redis.set(f"{redis_prefix}stream-total:bad", "not a number")
    results = await asyncio.gather(
        totals.add("bad", 1), totals.add("good", 3), totals.add("bad", 2), return_exceptions=True
    )
    assert isinstance(results[0], ResponseError) and isinstance(results[2], ResponseError)
    assert results[1] == 3


async def test_a_stream_total_add_given_up_before_it_is_sent_is_not_counted(
    redis: Redis, redis_prefix: str
) -> None:
    totals = StreamTotals(redis, redis_prefix)
    gone = asyncio.create_task(totals.add("conn", 5))
    kept = asyncio.create_task(totals.add("conn", 7))
    await asyncio.sleep(0)  # both are waiting for the round trip that has not started yet
    gone.cancel()
    assert await kept == 7
    assert await totals.total("conn") == 7
    assert gone.cancelled()


async def test_stream_totals_expire(redis: Redis, redis_prefix: str) -> None:
    totals = StreamTotals(redis, redis_prefix, ttl_seconds=600)
    await totals.add("conn", 1)
    assert 0 < await redis.ttl(f"{redis_prefix}stream-total:conn") <= 600


async def test_an_unknown_connection_has_received_nothing(redis: Redis, redis_prefix: str) -> None:
    assert await StreamTotals(redis, redis_prefix).total("unknown") == 0


async def test_totals_refuse_to_pass_redis_integers(redis: Redis, redis_prefix: str) -> None:
    totals = StreamTotals(redis, redis_prefix)
    assert await totals.add("big", 2**63 - 1) == 2**63 - 1
    with pytest.raises(TotalOverflow):
        await totals.add("big", 1)
    assert await totals.total("big") == 2**63 - 1
    with pytest.raises(TotalOverflow):
        await totals.add("other", 2**64 - 1)
    assert await totals.total("other") == 0
