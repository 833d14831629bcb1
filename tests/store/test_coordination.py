"""Redis coordination shared by replicas: token buckets and STREAM totals, on real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from kiungo.store.coordination import RateLimiter, StreamTotals, ThroughputLimiter, TotalOverflow


async def test_a_bucket_allows_its_capacity_then_refuses_then_refills(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    now = 1_000_000
    allowed = [
        await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=now) for _ in range(7)
    ]
    assert allowed == [True] * 5 + [False] * 2
    assert await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=now + 100)
    assert not await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=now + 100)
    assert await limiter.allow("other", capacity=5, refill_per_second=10, now_ms=now)


async def test_two_replicas_share_one_bucket(
    redis_server_url: str, redis: Redis, redis_prefix: str
) -> None:
    second = Redis.from_url(redis_server_url)
    try:
        replicas = [RateLimiter(redis, redis_prefix), RateLimiter(second, redis_prefix)]
        results = await asyncio.gather(
            *(
                replicas[i % 2].allow("peer", capacity=50, refill_per_second=1, now_ms=5_000)
                for i in range(200)
            )
        )
        assert sum(results) == 50
    finally:
        await second.aclose()


async def test_throughput_counts_amounts(redis: Redis, redis_prefix: str) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    assert await limiter.allow("peer", 600, capacity=1000, refill_per_second=100, now_ms=0)
    assert not await limiter.allow("peer", 600, capacity=1000, refill_per_second=100, now_ms=0)
    assert await limiter.allow("peer", 400, capacity=1000, refill_per_second=100, now_ms=0)
    assert not await limiter.allow("peer", 2000, capacity=1000, refill_per_second=100, now_ms=0)
    assert await limiter.allow("peer", 100, capacity=1000, refill_per_second=100, now_ms=1000)


async def test_stream_totals_are_atomic_across_clients_and_expire(
    redis_server_url: str, redis: Redis, redis_prefix: str
) -> None:
    clients = [
        Redis(connection_pool=BlockingConnectionPool.from_url(redis_server_url, max_connections=20))
        for _ in range(2)
    ]
    first, second = clients
    try:
        replicas = [StreamTotals(first, redis_prefix), StreamTotals(second, redis_prefix)]
        totals = await asyncio.gather(*(replicas[i % 2].add("conn", 1) for i in range(1000)))
        assert sorted(totals) == list(range(1, 1001))
        await replicas[0].undo("conn", 10)
        assert await replicas[1].total("conn") == 990
        assert await redis.ttl(f"{redis_prefix}stream-total:conn") > 0
        assert await replicas[0].total("unknown") == 0
    finally:
        for client in clients:
            await client.aclose()


async def test_totals_refuse_amounts_beyond_redis_integers(redis: Redis, redis_prefix: str) -> None:
    totals = StreamTotals(redis, redis_prefix)
    await totals.add("big", 2**63 - 1)
    with pytest.raises(TotalOverflow):
        await totals.add("big", 1)
    with pytest.raises(TotalOverflow):
        await totals.add("other", 2**64 - 1)
