"""Token buckets every replica shares through Redis (DESIGN §5): packets per account (ILP T05)
and amount per account (T04), RFC 27 error codes.

Each take is one Lua script run inside Redis, never a read, a decision in Python and a write
back, so any number of connector replicas see one bucket per account.

Redis Lua numbers are IEEE doubles: capacities, refill rates and costs must be at most
``MAX_BUCKET_VALUE`` (2^53 - 1); the script keeps every intermediate value an exact integer below
that (no fractional tokens: the sub-token part of the refill is carried as an integer remainder
in thousandths).
"""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["MAX_BUCKET_VALUE", "RateLimiter", "ThroughputLimiter"]

MAX_BUCKET_VALUE = 2**53 - 1

# An idle bucket's key lives until the bucket would be full again (then a missing key and a full
# bucket are the same thing), but never longer than this, so that a bucket configured to take
# longer than a week to refill is simply full again after a week of silence.
_MAX_BUCKET_IDLE_MS = 7 * 24 * 3600 * 1000

# A token bucket: tokens refill continuously (refill per second) up to capacity; a request takes
# `cost` tokens or is refused and takes none. State: whole tokens, the refill's remainder in
# thousandths of a token (so 3 tokens/s over 333 ms is 0.999 kept, not lost), and the time of the
# last update. All arithmetic is on integers below 2^53, so doubles hold it exactly.
# KEYS[1] bucket. ARGV: capacity, refill per second, cost (negative: a refund), now in ms
# ('' = Redis's own clock, one clock for all replicas), max idle ms. Returns 1 when allowed, 0
# when refused.
_BUCKET = """
local function idiv(a, b)
  -- floor(a / b) for integers 0 <= a, b < 2^53; the float quotient may be off by one.
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif a - q * b >= b then
    q = q + 1
  end
  return q
end
local function ceil_div(a, b)
  local q = idiv(a, b)
  if q * b < a then q = q + 1 end
  return q
end

local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
else
  now = tonumber(ARGV[4])
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'rem', 'at')
local tokens = tonumber(state[1])
local rem = tonumber(state[2])
local at = tonumber(state[3])
if tokens == nil or rem == nil or at == nil then
  tokens = capacity
  rem = 0
  at = now
elseif tokens >= capacity then
  -- full, or the capacity was lowered since the last request
  tokens = capacity
  rem = 0
end

if now > at then
  local elapsed = now - at
  local seconds = idiv(elapsed, 1000)
  local ms = elapsed - seconds * 1000
  if seconds >= ceil_div(capacity - tokens, refill) then
    tokens = capacity
    rem = 0
  else
    -- gained = floor((elapsed * refill + rem) / 1000), split so no product passes 2^53:
    -- seconds * refill < capacity - tokens here, and refill = 1000 * per_ms + frac.
    local per_ms = idiv(refill, 1000)
    local frac = refill - per_ms * 1000
    local thousandths = frac * ms + rem
    local carried = idiv(thousandths, 1000)
    rem = thousandths - carried * 1000
    -- Each addend is exact; a sum past 2^53 only happens when the true sum is past capacity.
    tokens = tokens + seconds * refill + per_ms * ms + carried
    if tokens >= capacity then
      tokens = capacity
      rem = 0
    end
  end
  at = now
end

local allowed = 0
if cost < 0 then
  -- A refund: what an earlier request took comes back, up to the capacity. A sum past 2^53
  -- only happens when the true sum is past the capacity, so the comparison stays right.
  tokens = tokens - cost
  if tokens >= capacity then
    tokens = capacity
    rem = 0
  end
  allowed = 1
elseif tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.0f', tokens),
  'rem', string.format('%.0f', rem),
  'at', string.format('%.0f', at))
local idle = tonumber(ARGV[5])
local ttl = (ceil_div(capacity - tokens, refill) + 1) * 1000
if ttl > idle then ttl = idle end
redis.call('PEXPIRE', KEYS[1], ttl)
return allowed
"""


def _check_bucket_value(name: str, value: int, *, minimum: int) -> None:
    if not minimum <= value <= MAX_BUCKET_VALUE:
        raise ValueError(f"bucket {name} must be between {minimum} and 2^53 - 1, not {value}")


def _check_limits(capacity: int, refill_per_second: int) -> None:
    _check_bucket_value("capacity", capacity, minimum=1)
    _check_bucket_value("refill rate", refill_per_second, minimum=1)


class _Bucket:
    """The token bucket both limiters share; ``kind`` keeps their keys apart."""

    def __init__(self, redis: Redis, prefix: str, kind: str) -> None:
        self._script = redis.register_script(_BUCKET)
        self._prefix = f"{prefix}{kind}:"

    async def _take(
        self, key: str, cost: int, capacity: int, refill_per_second: int, now_ms: int | None
    ) -> bool:
        _check_limits(capacity, refill_per_second)
        if cost < 0:
            raise ValueError(f"a bucket cost cannot be negative, not {cost}")
        if cost > capacity:
            # Never allowed, however long the account waits; refused without asking Redis, which
            # also keeps u64 amounts beyond 2^53 out of the script.
            return False
        return await self._run(key, cost, capacity, refill_per_second, now_ms)

    async def _give_back(
        self, key: str, amount: int, capacity: int, refill_per_second: int, now_ms: int | None
    ) -> None:
        _check_limits(capacity, refill_per_second)
        if amount < 0:
            raise ValueError(f"a refund cannot be negative, not {amount}")
        if amount > 0:
            # (An amount above the capacity was never taken: at most the capacity comes back.)
            await self._run(key, -min(amount, capacity), capacity, refill_per_second, now_ms)

    async def _run(
        self, key: str, cost: int, capacity: int, refill_per_second: int, now_ms: int | None
    ) -> bool:
        if now_ms is not None and not 0 <= now_ms <= MAX_BUCKET_VALUE:
            raise ValueError(f"now_ms out of range: {now_ms}")
        result = await self._script(
            keys=[self._prefix + key],
            args=[
                capacity,
                refill_per_second,
                cost,
                "" if now_ms is None else now_ms,
                _MAX_BUCKET_IDLE_MS,
            ],
        )
        return bool(result)


class RateLimiter(_Bucket):
    """Packets per account: a bucket of ``capacity`` packets refilling at ``refill_per_second``.

    The connector rejects with T05 when ``allow`` says no. Key: ``<prefix>rate:<account_id>``.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix, "rate")

    async def allow(
        self, account_id: str, *, capacity: int, refill_per_second: int, now_ms: int | None = None
    ) -> bool:
        """Take one packet from ``account_id``'s bucket; False (nothing taken) when it is empty.

        ``now_ms`` is for tests; without it the Redis server's clock is used, so replicas whose
        clocks disagree still share one bucket.
        """
        return await self._take(account_id, 1, capacity, refill_per_second, now_ms)


class ThroughputLimiter(_Bucket):
    """Amount per account: a bucket of ``capacity`` units refilling at ``refill_per_second``.

    The connector rejects with T04 when ``allow`` says no. Key: ``<prefix>throughput:<account_id>``.
    Limits are at most 2^53 - 1 (see the module notes); an amount above the capacity, including
    any u64 amount past 2^53, is refused.
    """

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
        """Take ``amount`` units from ``account_id``'s bucket, all or nothing."""
        return await self._take(account_id, amount, capacity, refill_per_second, now_ms)

    async def refund(
        self,
        account_id: str,
        amount: int,
        *,
        capacity: int,
        refill_per_second: int,
        now_ms: int | None = None,
    ) -> None:
        """Give back ``amount`` units that ``allow`` took (the packet was not fulfilled), up to
        the bucket's capacity."""
        await self._give_back(account_id, amount, capacity, refill_per_second, now_ms)
