"""Idempotency keys every backend replica shares through Redis (DESIGN §5, §7).

Each step (begin, finish, abandon) is one Lua script run inside Redis, so two replicas given
the same key never both run the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["Conflict", "Finished", "IdempotencyState", "IdempotencyStore", "InProgress", "Started"]


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
