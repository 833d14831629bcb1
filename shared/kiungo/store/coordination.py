"""Coordination state every replica shares through Redis (DESIGN §5).

Each decision is made inside Redis in one atomic step (a Lua script, MULTI/EXEC or a single
command), never by reading, deciding in Python and writing back, so any number of connector and
backend replicas see one bucket, one total, one idempotency record and one lock. Nothing here
holds money: totals feed STREAM receipts, buckets feed ILP T04/T05 (RFC 27 error codes).

Number limits, because Redis Lua numbers are IEEE doubles and Redis integers are int64:

- bucket capacities, refill rates and costs must be at most ``MAX_BUCKET_VALUE`` (2^53 - 1); the
  scripts keep every intermediate value an exact integer below that (no fractional tokens: the
  sub-token part of the refill is carried as an integer remainder in thousandths);
- STREAM totals are u64 in the protocol but int64 in Redis: a total that would pass
  ``MAX_TOTAL`` (2^63 - 1) raises ``TotalOverflow`` and is not stored.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = [
    "MAX_BUCKET_VALUE",
    "MAX_TOTAL",
    "Conflict",
    "Finished",
    "IdempotencyState",
    "IdempotencyStore",
    "InProgress",
    "Lock",
    "RateLimiter",
    "Started",
    "StreamTotals",
    "ThroughputLimiter",
    "TotalOverflow",
]

MAX_BUCKET_VALUE = 2**53 - 1
MAX_TOTAL = 2**63 - 1

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


class _Bucket:
    """The token bucket both limiters share; ``kind`` keeps their keys apart."""

    def __init__(self, redis: Redis, prefix: str, kind: str) -> None:
        self._script = redis.register_script(_BUCKET)
        self._prefix = f"{prefix}{kind}:"

    async def _take(
        self, key: str, cost: int, capacity: int, refill_per_second: int, now_ms: int | None
    ) -> bool:
        _check_bucket_value("capacity", capacity, minimum=1)
        _check_bucket_value("refill rate", refill_per_second, minimum=1)
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
        _check_bucket_value("capacity", capacity, minimum=1)
        _check_bucket_value("refill rate", refill_per_second, minimum=1)
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


class TotalOverflow(Exception):
    """A STREAM total would pass 2^63 - 1, the largest integer Redis stores."""


class StreamTotals:
    """What each STREAM connection has received so far, for its receipts.

    Key: ``<prefix>stream-total:<connection_id>``, expiring ``ttl_seconds`` after the last add.

    Adds are coalesced: those that arrive while a round trip to Redis is under way go together
    in the next one, as one INCRBY per connection (with its EXPIRE), in one pipeline. The
    INCRBY is the atomic step; the packets of a connection that went together get the running
    totals that INCRBY passed through, in the order they were added. redis-py costs tens of
    microseconds of CPU per command round trip, which was a third of a received packet's.
    """

    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int = 86_400) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self._prefix = f"{prefix}stream-total:"
        self._ttl = ttl_seconds
        self._waiting: dict[str, list[tuple[int, asyncio.Future[int]]]] = {}
        self._sender: asyncio.Task[None] | None = None

    async def add(self, connection_id: str, amount: int) -> int:
        """Add ``amount`` and return the new total, atomically across replicas.

        Raises ``TotalOverflow`` (and stores nothing) when the total would pass 2^63 - 1.
        """
        _check_amount(amount)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(self._prefix + connection_id, []).append((amount, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        return await future

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    await self._send(batch)
                except Exception as exc:
                    # Not a Redis failure (those are the adds' own errors): no add may be left
                    # waiting for an answer that will not come.
                    _fail(batch, exc)
        finally:
            self._sender = None
            # Left only when this was cancelled (the loop is closing): nobody will send them.
            waiting, self._waiting = self._waiting, {}
            _fail(waiting, ConnectionError("STREAM totals are shutting down"))

    async def _send(self, batch: dict[str, list[tuple[int, asyncio.Future[int]]]]) -> None:
        # A packet that gave up before its add was sent is not counted.
        live = {key: [a for a in adds if not a[1].done()] for key, adds in batch.items()}
        batch = {}
        sums: dict[str, int] = {}
        for key, adds in live.items():
            added = sum(amount for amount, _ in adds)
            if len(adds) > 1 and added > MAX_TOTAL:
                await self._one_by_one(key, adds)  # no INCRBY takes the sum
            elif adds:
                batch[key], sums[key] = adds, added
        if not batch:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.incrby(key, sums[key])
                    pipe.expire(key, self._ttl)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            _fail(batch, exc)  # sent or not, nobody knows: as with any failed command
            return
        except asyncio.CancelledError:
            _fail(batch, None)
            raise
        for (key, adds), total in zip(batch.items(), replies[::2], strict=True):
            if isinstance(total, ResponseError):
                # Refused, and nothing added (say the sum would overflow int64): each on its
                # own, so that those that still fit are counted and the others refused.
                if len(adds) > 1:
                    await self._one_by_one(key, adds)
                elif not adds[0][1].done():
                    error: Exception = total
                    if "overflow" in str(total):
                        connection_id = key.removeprefix(self._prefix)
                        error = TotalOverflow(f"the total of {connection_id} would pass 2^63 - 1")
                    adds[0][1].set_exception(error)
                continue
            # The INCRBY took the total from total - sum to total; each add gets its step.
            running = int(total) - sums[key]
            for amount, future in adds:
                running += amount
                if not future.done():
                    future.set_result(running)

    async def _one_by_one(self, key: str, adds: list[tuple[int, asyncio.Future[int]]]) -> None:
        for add in adds:
            await self._send({key: [add]})

    async def total(self, connection_id: str) -> int:
        """The connection's total so far (0 when it has none, or it expired)."""
        value = await self._redis.get(self._prefix + connection_id)
        return int(value) if value is not None else 0


def _fail(batch: dict[str, list[tuple[int, asyncio.Future[int]]]], error: Exception | None) -> None:
    """Answer every add of ``batch`` still waiting with ``error`` (None: cancel them)."""
    for adds in batch.values():
        for _, future in adds:
            if future.done():
                continue
            if error is None:
                future.cancel()
            else:
                future.set_exception(error)


def _check_amount(amount: int) -> None:
    if amount < 0:
        raise ValueError(f"an amount cannot be negative, not {amount}")
    if amount > MAX_TOTAL:
        raise TotalOverflow(f"amount {amount} is past 2^63 - 1")


@dataclass(frozen=True)
class Started:
    """The key was new: the caller owns it and must ``finish`` or ``abandon`` it."""


@dataclass(frozen=True)
class Finished:
    """The same request already ran: its stored result."""

    result: str


@dataclass(frozen=True)
class InProgress:
    """The same request is running elsewhere right now."""


@dataclass(frozen=True)
class Conflict:
    """The key was used for a different request (another fingerprint)."""


IdempotencyState = Started | Finished | InProgress | Conflict

# KEYS[1] record. ARGV: fingerprint, ttl seconds (kept for finish), lease seconds (while running).
# Returns {'started'} | {'finished', result} | {'in-progress'} | {'conflict'}.
_BEGIN = """
local record = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'result')
if not record[1] then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'running', 'ttl', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {'started'}
end
if record[1] ~= ARGV[1] then
  return {'conflict'}
end
if record[2] == 'finished' then
  return {'finished', record[3]}
end
return {'in-progress'}
"""

# KEYS[1] record. ARGV: result. Stores it only over a running record; returns 1 when stored.
_FINISH = """
local record = redis.call('HMGET', KEYS[1], 'state', 'ttl')
if record[1] ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'finished', 'result', ARGV[1])
redis.call('EXPIRE', KEYS[1], record[2])
return 1
"""

# KEYS[1] record. Deletes it only while running, so a finished result is never thrown away.
_ABANDON = """
if redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class IdempotencyStore:
    """Idempotency keys: same key and same request → one run, its result replayed afterwards.

    Records live at ``<prefix>idempotency:<len(scope)>:<scope>:<key>`` (the length keeps scope
    ``a:b`` with key ``c`` apart from scope ``a`` with key ``b:c``).
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._prefix = f"{prefix}idempotency:"
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._abandon = redis.register_script(_ABANDON)

    def _key(self, scope: str, key: str) -> str:
        return f"{self._prefix}{len(scope)}:{scope}:{key}"

    async def begin(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        ttl_seconds: int,
        *,
        lease_seconds: int | None = None,
    ) -> IdempotencyState:
        """Claim ``key`` in ``scope`` for the request identified by ``fingerprint``.

        A finished record is kept ``ttl_seconds`` after ``finish``. While running, the claim
        lasts ``lease_seconds`` (default ``ttl_seconds``): if its owner dies without ``abandon``,
        retries see ``InProgress`` until then, and after it a retry runs again.
        """
        lease = ttl_seconds if lease_seconds is None else lease_seconds
        if ttl_seconds <= 0 or lease <= 0:
            raise ValueError("ttl_seconds and lease_seconds must be positive")
        reply = await self._begin(
            keys=[self._key(scope, key)], args=[fingerprint, ttl_seconds, lease]
        )
        outcome = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if outcome == "started":
            return Started()
        if outcome == "finished":
            result = reply[1]
            return Finished(result.decode() if isinstance(result, bytes) else str(result))
        if outcome == "in-progress":
            return InProgress()
        return Conflict()

    async def finish(self, scope: str, key: str, result: str) -> bool:
        """Store the result of the run ``begin`` started; later ``begin``s replay it.

        False when there was no running claim to finish (its lease ran out).
        """
        return bool(await self._finish(keys=[self._key(scope, key)], args=[result]))

    async def abandon(self, scope: str, key: str) -> bool:
        """Drop a running claim after a failure, so that a retry runs. False when none was."""
        return bool(await self._abandon(keys=[self._key(scope, key)]))


# KEYS[1] lock. ARGV: token. Deletes only the holder's own lock (compare-and-delete).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lock. ARGV: token, ttl ms. Extends only the holder's own lock.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Lock:
    """Named locks with a holder token and a time to live: ``<prefix>lock:<name>``.

    A lock whose holder dies is free again after its TTL; a holder that outlives its TTL has lost
    the lock, and ``release``/``extend`` then tell it so by returning False.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}lock:"
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)

    async def acquire(self, name: str, ttl_ms: int) -> str | None:
        """Take the lock for ``ttl_ms``: its token, or None when someone else holds it."""
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        token = secrets.token_hex(16)
        taken = await self._redis.set(self._prefix + name, token, nx=True, px=ttl_ms)
        return token if taken else None

    async def release(self, name: str, token: str) -> bool:
        """Free the lock if ``token`` still holds it; False otherwise."""
        return bool(await self._release(keys=[self._prefix + name], args=[token]))

    async def extend(self, name: str, token: str, ttl_ms: int) -> bool:
        """Set the lock's TTL to ``ttl_ms`` from now if ``token`` still holds it."""
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        return bool(await self._extend(keys=[self._prefix + name], args=[token, ttl_ms]))
