"""Rafiki's ``wallet_address.not_found`` event: a lookup (SPSP or the Open Payments wallet
address document) named a wallet address under OPEN_PAYMENTS_URL that this node does not have,
so the account servicing entity may create it (data: ``{"walletAddressUrl": <url>}``, as
Rafiki's).

Anyone can send such lookups, so they are bounded twice in Redis before an event is written:
one event per URL per :data:`DEDUPE_SECONDS` (a scanner repeating a name adds nothing), and at
most :data:`MAX_PER_MINUTE` events a minute for the whole node (a scanner trying many names adds
at most that many rows a minute). Past either bound the lookup answers as before, without an
event. Kiungo does not poll for the address to appear (Rafiki's
WALLET_ADDRESS_NOT_FOUND_POLLING_ENABLED): the lookup answers 404 at once.
"""

from __future__ import annotations

import hashlib
import logging
import time

from redis.exceptions import RedisError

from kiungo.connector.node import Node
from kiungo.events import EventType, insert_event

__all__ = ["DEDUPE_SECONDS", "MAX_PER_MINUTE", "report_unknown_wallet_address"]

log = logging.getLogger("kiungo.connector.wallet_not_found")

DEDUPE_SECONDS = 3600
MAX_PER_MINUTE = 60
_MAX_URL = 2048


async def report_unknown_wallet_address(node: Node, url: str) -> bool:
    """Raise ``wallet_address.not_found`` for ``url`` (a URL under OPEN_PAYMENTS_URL naming no
    wallet address) unless a bound says not to; True when an event was written."""
    if len(url) > _MAX_URL or "\x00" in url:
        return False
    prefix = f"{node.settings.redis_key_prefix}wallet-not-found:"
    digest = hashlib.sha256(url.encode()).hexdigest()
    window = f"{prefix}minute:{int(time.time() // 60)}"
    try:
        if not await node.redis.set(prefix + digest, b"1", nx=True, ex=DEDUPE_SECONDS):
            return False
        count = await node.redis.incr(window)
        if count == 1:
            await node.redis.expire(window, 120)
    except RedisError as exc:
        log.warning("wallet_address.not_found not raised for %s: Redis: %s", url, exc)
        return False
    if count > MAX_PER_MINUTE:
        return False
    async with node.pool.acquire() as conn:
        await insert_event(
            conn, EventType.WALLET_ADDRESS_NOT_FOUND, None, {"walletAddressUrl": url}
        )
    return True
