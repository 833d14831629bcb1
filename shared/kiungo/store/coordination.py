"""Coordination state every replica shares through Redis (DESIGN §5).

Each decision is made inside Redis in one atomic step (a Lua script or INCRBY), never by
reading, deciding in Python and writing back, so any number of replicas see one bucket and one
total. Nothing here holds money: totals feed receipts, buckets feed T04/T05.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

__all__ = ["RateLimiter", "StreamTotals", "ThroughputLimiter", "TotalOverflow"]

# A token bucket: tokens refill continuously up to capacity; a request takes `cost` tokens.
# KEYS[1] bucket; ARGV: capacity, refill per second, cost, now in ms. Returns 1 when allowed.
_BUCKET = """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * refill / 1000)
  at = now
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / refill) + 1000)
return allowed
"""

# Redis Lua numbers are doubles: bucket sizes and costs are exact below 2^53.
_MAX_EXACT = 2**53


class _Bucket:
    def __init__(self, redis: Redis, prefix: str, kind: str) -> None:
        self._script = redis.register_script(_BUCKET)
        self._prefix = f"{prefix}{kind}:"

    async def _take(
        self, key: str, cost: int, capacity: int, refill_per_second: int, now_ms: int | None
    ) -> bool:
        if capacity <= 0 or refill_per_second <= 0:
            raise ValueError("a bucket needs a positive capacity and refill rate")
        if cost > capacity:
            return False
        if capacity >= _MAX_EXACT:
            raise ValueError("bucket capacity must be below 2^53")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        result = await self._script(
            keys=[self._prefix + key], args=[capacity, refill_per_second, cost, now]
        )
        return bool(result)


class RateLimiter(_Bucket):
    """Packets per second per account (ILP T05 when exceeded)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix, "rate")

    async def allow(
        self, account_id: str, *, capacity: int, refill_per_second: int, now_ms: int | None = None
    ) -> bool:
        return await self._take(account_id, 1, capacity, refill_per_second, now_ms)


class ThroughputLimiter(_Bucket):
    """Amount per second per account (ILP T04 when exceeded)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix, "throughput")

    async def allow(
        self,
        account_id: str,
        amount: int,
        *,
        capacity: int,
        refill_per_second: int,
        now_ms: int | None = None,
    ) -> bool:
        return await self._take(account_id, amount, capacity, refill_per_second, now_ms)


class TotalOverflow(Exception):
    """A running total would leave Redis's signed 64-bit range."""


_INT64_MAX = 2**63 - 1


class StreamTotals:
    """What each STREAM connection has received so far, for its receipts."""

    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int = 86_400) -> None:
        self._redis = redis
        self._prefix = f"{prefix}stream-total:"
        self._ttl = ttl_seconds

    async def add(self, connection_id: str, amount: int) -> int:
        """Add ``amount`` and return the new total (atomic across replicas)."""
        if not 0 <= amount <= _INT64_MAX:
            raise TotalOverflow(f"amount {amount} is outside Redis's integer range")
        key = self._prefix + connection_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, self._ttl)
            try:
                total, _ = await pipe.execute()
            except Exception as exc:
                if "overflow" in str(exc):
                    raise TotalOverflow(f"total of {connection_id} would overflow") from None
                raise
        return int(total)

    async def undo(self, connection_id: str, amount: int) -> None:
        """Take back an ``add`` whose money the ledger refused."""
        await self._redis.decrby(self._prefix + connection_id, amount)

    async def total(self, connection_id: str) -> int:
        value = await self._redis.get(self._prefix + connection_id)
        return int(value) if value is not None else 0
