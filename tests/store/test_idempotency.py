"""Idempotency keys shared by replicas.

All on real Redis; "two replicas" are two separate clients (connection pools) on one server.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from kiungo.store.idempotency import Conflict, Finished, IdempotencyStore, InProgress, Started

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
