"""Everything a running connector holds: settings, stores, ledger, peers, rates, STREAM server.

One :class:`Node` per process, built by :meth:`Node.start` and shared by the request handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from redis.asyncio import BlockingConnectionPool, Redis

from kiungo.config import Settings
from kiungo.connector.link import PeerLinks
from kiungo.connector.metrics import Metrics
from kiungo.connector.owed import OwedPosts
from kiungo.connector.peers import PeerRegistry
from kiungo.connector.receivers import ReceiverDirectory
from kiungo.ledger import Ledger
from kiungo.ledger.backend import make_ledger
from kiungo.openpayments.client import OpenPaymentsClient
from kiungo.openpayments.identity import node_identity
from kiungo.rates import RatesClient
from kiungo.runtime.db import create_pool
from kiungo.runtime.receiver_fetch import receiver_client
from kiungo.runtime.tasks import raise_if_cancelled, stop_tasks
from kiungo.runtime.telemetry import CONNECTOR, Tracing, start_tracing
from kiungo.store.buckets import RateLimiter, ThroughputLimiter
from kiungo.store.channels import PEERS_CHANGED_CHANNEL, RECEIVERS_CHANGED_CHANNEL
from kiungo.store.stream_totals import StreamTotals
from kiungo.stream.receiver import StreamReceiver
from kiungo.stream.server import StreamServer

__all__ = ["Node"]

log = logging.getLogger("kiungo.connector")

_PEER_RELOAD_SECONDS = 30.0
_HOLD_SWEEP_SECONDS = 1.0


@dataclass
class Node:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    ledger: Ledger
    http: httpx.AsyncClient
    receiver_http: httpx.AsyncClient
    """Reads receivers (SPSP, incoming payments): no proxy, no redirects, and with
    REFUSE_PRIVATE_RECEIVERS no private addresses (:mod:`kiungo.runtime.receiver_fetch`)."""
    open_payments: OpenPaymentsClient
    """This node as an Open Payments client of other nodes (reads their incoming payments)."""
    links: PeerLinks
    rates: RatesClient
    stream_server: StreamServer
    receiver: StreamReceiver
    peers: PeerRegistry
    receivers: ReceiverDirectory
    totals: StreamTotals
    rate_limiter: RateLimiter
    throughput: ThroughputLimiter
    metrics: Metrics
    owed: OwedPosts
    tracing: Tracing | None = None
    """Set with ENABLE_TELEMETRY_TRACES (:mod:`kiungo.runtime.telemetry`): packets are traced."""
    accounts_ready: set[uuid.UUID] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.settings.ilp_address

    @classmethod
    async def start(cls, settings: Settings, database_url: str, redis_url: str) -> Node:
        pool = await create_pool(database_url, min_size=2, max_size=20)
        # Blocking: a burst of packets waits for a free connection instead of failing with
        # "Too many connections" (redis-py's default pool refuses past 100).
        redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                redis_url, max_connections=200, timeout=5
            )
        )
        ledger = await make_ledger(pool, settings)
        ledger.start()
        http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
            timeout=httpx.Timeout(settings.packet_timeout_ms / 1000),
        )
        secret = settings.stream_secret or os.urandom(32)
        stream_server = StreamServer(secret, settings.ilp_address)
        prefix = settings.redis_key_prefix
        receiver_http = receiver_client(refuse_private=settings.refuse_private_receivers)
        node = cls(
            settings=settings,
            pool=pool,
            redis=redis,
            ledger=ledger,
            http=http,
            receiver_http=receiver_http,
            open_payments=OpenPaymentsClient(
                node_identity(settings),
                receiver_http,
                redis,
                prefix,
                max_seconds=settings.receiver_fetch_timeout_ms / 1000,
            ),
            links=PeerLinks(),
            rates=RatesClient(
                settings.exchange_rates_url,
                client=http,
                lifetime=timedelta(milliseconds=settings.exchange_rates_lifetime_ms),
            ),
            stream_server=stream_server,
            receiver=StreamReceiver(stream_server),
            peers=PeerRegistry(),
            receivers=ReceiverDirectory(pool, settings),
            totals=StreamTotals(redis, prefix),
            rate_limiter=RateLimiter(redis, prefix),
            throughput=ThroughputLimiter(redis, prefix),
            metrics=Metrics(),
            owed=OwedPosts(ledger, redis, prefix),
            tracing=start_tracing(settings, CONNECTOR),
        )
        node.owed.on_booked = node._settle_receiver
        node.metrics.posts_owed.set_function(lambda: node.owed.owed)
        await node.reload_peers()
        node._tasks.append(asyncio.create_task(node._watch_peers(), name="peer-reload"))
        node._tasks.append(asyncio.create_task(node._watch_receivers(), name="receiver-changes"))
        node._tasks.append(asyncio.create_task(node._expire_holds(), name="hold-expiry"))
        node._tasks.append(asyncio.create_task(node.owed.run(), name="owed-posts"))
        return node

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` for the node's lifetime: cancelled (and awaited) by :meth:`close`."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    async def _expire_holds(self) -> None:
        """Release pending holds past their timeout (a crashed replica's, say) every second."""
        while True:
            try:
                while await self.ledger.expire_pending() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiring pending holds failed")
            await asyncio.sleep(_HOLD_SWEEP_SECONDS)

    async def _settle_receiver(self, tag: str) -> None:
        """Bring a receiver up to date after money to it was booked late (an owed post)."""
        self.receivers.forget(tag)
        receiver = await self.receivers.by_tag(tag)
        if receiver is not None:
            await self.receivers.settle(receiver, self.ledger)

    async def reload_peers(self) -> None:
        async with self.pool.acquire() as conn:
            await self.peers.load(conn)

    async def listen(
        self, channel: str, handle: Callable[[bytes | None], Awaitable[None]], *, idle: float
    ) -> None:
        """Await ``handle(data)`` for every message published on ``<prefix><channel>``, and
        ``handle(None)`` after ``idle`` seconds without one; subscribe again after an error.
        Runs until cancelled."""
        name = self.settings.redis_key_prefix + channel
        while True:
            raise_if_cancelled()
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(name)
                    while True:
                        raise_if_cancelled()
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=idle
                        )
                        await handle(None if message is None else message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listening on %s failed; subscribing again", name)
                await asyncio.sleep(1)

    async def _watch_peers(self) -> None:
        """Reload on every change message, and every 30 s in case a message was missed."""

        async def reload(data: bytes | None) -> None:
            await self.reload_peers()
            if data is not None:
                log.info("peers reloaded after a change message")

        await self.listen(PEERS_CHANGED_CHANNEL, reload, idle=_PEER_RELOAD_SECONDS)

    async def _watch_receivers(self) -> None:
        """Forget a cached receiver on every change message (the cache lives a second anyway)."""

        async def forget(data: bytes | None) -> None:
            if data is not None:
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    self.receivers.forget_owner(uuid.UUID(data.decode()))

        await self.listen(RECEIVERS_CHANGED_CHANNEL, forget, idle=60)

    async def close(self) -> None:
        await stop_tasks(self._tasks)
        await self.ledger.close()
        await self.http.aclose()
        await self.receiver_http.aclose()
        await self.links.close()
        await self.redis.aclose()
        await self.pool.close()
        if self.tracing is not None:
            await self.tracing.shutdown()
