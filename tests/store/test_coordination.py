"""Redis coordination shared by replicas: buckets, STREAM totals, idempotency keys and locks.

All on real Redis; "two replicas" are two separate clients (connection pools) on one server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from kiungo.store.coordination import (
    MAX_BUCKET_VALUE,
    Conflict,
    Finished,
    IdempotencyStore,
    InProgress,
    Lock,
    RateLimiter,
    Started,
    StreamTotals,
    ThroughputLimiter,
    TotalOverflow,
)


@pytest.fixture
async def replicas(redis_server_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two clients with pools of their own, as two connector processes would have."""
    clients = [
        Redis(connection_pool=BlockingConnectionPool.from_url(redis_server_url, max_connections=20))
        for _ in range(2)
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.aclose()


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


# Idempotency keys


async def test_a_new_key_is_started(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    assert await store.begin("createPeer", "k1", "fp", 60) == Started()


async def test_a_finished_key_replays_its_result(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("createPeer", "k1", "fp", 60)
    assert await store.finish("createPeer", "k1", '{"id": "p1"}')
    assert await store.begin("createPeer", "k1", "fp", 60) == Finished('{"id": "p1"}')


async def test_a_running_key_is_in_progress(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("createPeer", "k1", "fp", 60)
    assert await store.begin("createPeer", "k1", "fp", 60) == InProgress()


async def test_a_key_reused_for_another_request_conflicts(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("createPeer", "k1", "fp", 60)
    assert await store.begin("createPeer", "k1", "other", 60) == Conflict()
    await store.finish("createPeer", "k1", "{}")
    assert await store.begin("createPeer", "k1", "other", 60) == Conflict()


async def test_an_abandoned_key_can_run_again(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("createPeer", "k1", "fp", 60)
    assert await store.abandon("createPeer", "k1")
    assert await store.begin("createPeer", "k1", "fp", 60) == Started()


async def test_a_finished_key_cannot_be_abandoned_or_finished_again(
    redis: Redis, redis_prefix: str
) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("createPeer", "k1", "fp", 60)
    await store.finish("createPeer", "k1", "first")
    assert not await store.abandon("createPeer", "k1")
    assert not await store.finish("createPeer", "k1", "second")
    assert await store.begin("createPeer", "k1", "fp", 60) == Finished("first")


async def test_scopes_keep_keys_apart(redis: Redis, redis_prefix: str) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    assert await store.begin("a:b", "c", "fp", 60) == Started()
    assert await store.begin("a", "b:c", "fp", 60) == Started()
    assert await store.begin("createAsset", "c", "fp", 60) == Started()


async def test_a_running_claim_lasts_its_lease_and_a_result_its_ttl(
    redis: Redis, redis_prefix: str
) -> None:
    store = IdempotencyStore(redis, redis_prefix)
    await store.begin("scope", "k1", "fp", 3600, lease_seconds=30)
    key = f"{redis_prefix}idempotency:5:scope:k1"
    assert 0 < await redis.ttl(key) <= 30
    await store.finish("scope", "k1", "done")
    assert 30 < await redis.ttl(key) <= 3600


async def test_concurrent_begins_have_exactly_one_owner(
    replicas: tuple[Redis, Redis], redis_prefix: str
) -> None:
    stores = [IdempotencyStore(client, redis_prefix) for client in replicas]
    outcomes = await asyncio.gather(
        *(stores[i % 2].begin("createPeer", "k1", "fp", 60) for i in range(20))
    )
    assert outcomes.count(Started()) == 1
    assert outcomes.count(InProgress()) == 19


# Locks


async def test_a_lock_is_exclusive(redis: Redis, redis_prefix: str) -> None:
    lock = Lock(redis, redis_prefix)
    token = await lock.acquire("migrate", 10_000)
    assert token is not None
    assert await lock.acquire("migrate", 10_000) is None
    assert await lock.acquire("other", 10_000) is not None


async def test_concurrent_acquires_have_one_winner(
    replicas: tuple[Redis, Redis], redis_prefix: str
) -> None:
    locks = [Lock(client, redis_prefix) for client in replicas]
    tokens = await asyncio.gather(*(locks[i % 2].acquire("job", 10_000) for i in range(20)))
    assert sum(token is not None for token in tokens) == 1


async def test_only_the_holder_releases_a_lock(redis: Redis, redis_prefix: str) -> None:
    lock = Lock(redis, redis_prefix)
    token = await lock.acquire("migrate", 10_000)
    assert token is not None
    assert not await lock.release("migrate", "not-the-token")
    assert await lock.acquire("migrate", 10_000) is None
    assert await lock.release("migrate", token)
    assert await lock.acquire("migrate", 10_000) is not None


async def test_a_lock_expires(redis: Redis, redis_prefix: str) -> None:
    lock = Lock(redis, redis_prefix)
    token = await lock.acquire("migrate", 50)
    assert token is not None
    await asyncio.sleep(0.15)
    assert await lock.acquire("migrate", 10_000) is not None
    assert not await lock.release("migrate", token)


async def test_only_the_holder_extends_a_lock(redis: Redis, redis_prefix: str) -> None:
    lock = Lock(redis, redis_prefix)
    token = await lock.acquire("migrate", 1_000)
    assert token is not None
    assert not await lock.extend("migrate", "not-the-token", 60_000)
    assert await redis.pttl(f"{redis_prefix}lock:migrate") <= 1_000
    assert await lock.extend("migrate", token, 60_000)
    assert await redis.pttl(f"{redis_prefix}lock:migrate") > 1_000
