"""Token buckets shared by replicas: packets (T05) and amounts (T04) per account.

All on real Redis; "two replicas" are two separate clients (connection pools) on one server.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from kiungo.store.buckets import MAX_BUCKET_VALUE, RateLimiter, ThroughputLimiter

# Packet buckets (T05)


async def test_a_bucket_allows_its_capacity_then_refuses(redis: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    allowed = [
        await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=1_000_000)
        for _ in range(7)
    ]
    assert allowed == [True] * 5 + [False] * 2


async def test_a_bucket_refills_with_time(redis: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    for _ in range(5):
        await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=1_000_000)
    assert await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=1_000_100)
    assert not await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=1_000_100)
    # A long silence refills to capacity, not beyond it.
    later = [
        await limiter.allow("peer", capacity=5, refill_per_second=10, now_ms=2_000_000)
        for _ in range(6)
    ]
    assert later == [True] * 5 + [False]


async def test_a_bucket_keeps_fractions_of_a_token(redis: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis, redis_prefix)

    async def allow(at: int) -> bool:
        return await limiter.allow("peer", capacity=3, refill_per_second=3, now_ms=at)

    for _ in range(3):
        assert await allow(0)
    assert not await allow(333)  # 0.999 of a token
    assert await allow(334)  # 1.002
    assert not await allow(334)
    assert await allow(667)  # 0.002 + 0.999
    assert not await allow(667)


async def test_buckets_are_per_account(redis: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    assert await limiter.allow("a", capacity=1, refill_per_second=1, now_ms=0)
    assert not await limiter.allow("a", capacity=1, refill_per_second=1, now_ms=0)
    assert await limiter.allow("b", capacity=1, refill_per_second=1, now_ms=0)


async def test_two_replicas_share_one_bucket(
    replicas: tuple[Redis, Redis], redis_prefix: str
) -> None:
    limiters = [RateLimiter(client, redis_prefix) for client in replicas]
    results = await asyncio.gather(
        *(
            limiters[i % 2].allow("peer", capacity=50, refill_per_second=1, now_ms=5_000)
            for i in range(200)
        )
    )
    assert sum(results) == 50


async def test_a_bucket_without_injected_time_uses_the_redis_clock(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    allowed = [await limiter.allow("peer", capacity=3, refill_per_second=1) for _ in range(4)]
    assert allowed == [True] * 3 + [False]


async def test_an_idle_bucket_expires_once_it_would_be_full(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    for _ in range(4):
        await limiter.allow("peer", capacity=10, refill_per_second=2, now_ms=0)
    # 4 tokens missing at 2 per second: full after 2 s; the key lives that long plus a second.
    ttl = await redis.pttl(f"{redis_prefix}rate:peer")
    assert 2_000 < ttl <= 3_000


async def test_a_bucket_refuses_limits_doubles_cannot_hold(redis: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis, redis_prefix)
    with pytest.raises(ValueError, match="capacity"):
        await limiter.allow("peer", capacity=2**53, refill_per_second=1)
    with pytest.raises(ValueError, match="refill"):
        await limiter.allow("peer", capacity=1, refill_per_second=0)


# Amount buckets (T04)


async def test_throughput_counts_amounts(redis: Redis, redis_prefix: str) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    assert await limiter.allow("peer", 600, capacity=1000, refill_per_second=100, now_ms=0)
    assert not await limiter.allow("peer", 600, capacity=1000, refill_per_second=100, now_ms=0)
    assert await limiter.allow("peer", 400, capacity=1000, refill_per_second=100, now_ms=0)
    assert await limiter.allow("peer", 100, capacity=1000, refill_per_second=100, now_ms=1000)
    assert not await limiter.allow("peer", 1, capacity=1000, refill_per_second=100, now_ms=1000)


async def test_a_throughput_refund_gives_back_up_to_the_capacity(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    limits = {"capacity": 1000, "refill_per_second": 100}
    assert await limiter.allow("peer", 700, **limits, now_ms=0)
    await limiter.refund("peer", 300, **limits, now_ms=0)
    assert await limiter.allow("peer", 600, **limits, now_ms=0)
    assert not await limiter.allow("peer", 1, **limits, now_ms=0)
    # Never past the capacity, also for a refund of more than was taken, or than it holds.
    await limiter.refund("peer", 2**64 - 1, **limits, now_ms=0)
    assert not await limiter.allow("peer", 1001, **limits, now_ms=0)
    assert await limiter.allow("peer", 1000, **limits, now_ms=0)
    # A bucket that expired (full again) stays full.
    await limiter.refund("idle", 5, **limits, now_ms=0)
    assert await limiter.allow("idle", 1000, **limits, now_ms=0)
    with pytest.raises(ValueError, match="negative"):
        await limiter.refund("peer", -1, **limits)


async def test_throughput_refuses_amounts_above_capacity_even_u64(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    assert not await limiter.allow("peer", 1001, capacity=1000, refill_per_second=100, now_ms=0)
    assert not await limiter.allow("peer", 2**64 - 1, capacity=1000, refill_per_second=100)
    assert await limiter.allow("peer", 1000, capacity=1000, refill_per_second=100, now_ms=0)


async def test_throughput_is_exact_up_to_the_largest_capacity(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    limits = {"capacity": MAX_BUCKET_VALUE, "refill_per_second": 1}
    assert await limiter.allow("peer", 1, **limits, now_ms=0)
    assert await limiter.allow("peer", MAX_BUCKET_VALUE - 2, **limits, now_ms=0)
    assert await limiter.allow("peer", 1, **limits, now_ms=0)
    assert not await limiter.allow("peer", 1, **limits, now_ms=0)


async def test_throughput_refills_exactly_at_the_largest_rate(
    redis: Redis, redis_prefix: str
) -> None:
    limiter = ThroughputLimiter(redis, redis_prefix)
    limits = {"capacity": MAX_BUCKET_VALUE, "refill_per_second": MAX_BUCKET_VALUE}
    assert await limiter.allow("peer", MAX_BUCKET_VALUE, **limits, now_ms=0)
    per_ms = MAX_BUCKET_VALUE // 1000  # and 0.991 of a unit left over
    assert await limiter.allow("peer", per_ms, **limits, now_ms=1)
    assert not await limiter.allow("peer", 1, **limits, now_ms=1)
    assert await limiter.allow("peer", per_ms + 1, **limits, now_ms=2)  # 2 * 0.991 carried


async def test_two_replicas_share_one_throughput_bucket(
    replicas: tuple[Redis, Redis], redis_prefix: str
) -> None:
    limiters = [ThroughputLimiter(client, redis_prefix) for client in replicas]
    amounts = [7 * (i % 5 + 1) for i in range(100)]
    results = await asyncio.gather(
        *(
            limiters[i % 2].allow("peer", amount, capacity=500, refill_per_second=1, now_ms=0)
            for i, amount in enumerate(amounts)
        )
    )
    taken = sum(amount for amount, allowed in zip(amounts, results, strict=True) if allowed)
    assert 500 - 7 * 5 < taken <= 500
