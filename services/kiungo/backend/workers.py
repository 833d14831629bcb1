"""The backend's background work, safe with any number of replicas: each claims rows with
``FOR UPDATE SKIP LOCKED`` (or a lease), so no two replicas do the same piece.

- webhook delivery: the outbox (``webhook_events``) POSTed to ``WEBHOOK_URL``, signed, retried
  with backoff up to ``WEBHOOK_MAX_RETRY`` attempts, in order per resource, at least once;
- incoming payment expiry: past ``expiresAt`` a payment is EXPIRED, with an event carrying the
  received amount to withdraw (none when nothing arrived);
- Web Monetization: money received by a wallet address beyond its asset's withdrawal threshold
  raises ``wallet_address.web_monetization``;
- liquidity alerts: an asset's or peer's liquidity crossing its low or high threshold raises
  ``*.liquidity_low`` / ``*.liquidity_high`` once per crossing; the same round sets the ledger
  gauges of ``/metrics`` (every liquidity account's balance, pending holds), which only read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg

from kiungo.backend.context import Backend
from kiungo.backend.metrics import BackendMetrics
from kiungo.backend.tracing import end_webhook_span, start_webhook_span
from kiungo.events import EventType, amount_json, insert_event, iso_time
from kiungo.ledger import AccountKind, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.payments.incoming import OPEN, sql_list
from kiungo.payments.incoming import store as incoming_store
from kiungo.runtime.http1 import Http1Client, LinkError
from kiungo.runtime.tasks import raise_if_cancelled, stop_tasks
from kiungo.signatures import signature_header

__all__ = [
    "Workers",
    "deliver_webhooks",
    "emit_web_monetization_events",
    "expire_incoming_payments",
    "update_ledger_gauges",
]

log = logging.getLogger("kiungo.backend.workers")

_WEBHOOK_BATCH = 100
_EXPIRY_BATCH = 200
_WEBHOOK_CONCURRENCY = 50

# The earliest due event of each resource whose earlier events are all delivered or given up.
_CLAIM_WEBHOOKS = """
WITH due AS (
    SELECT e.id FROM webhook_events e
    WHERE e.process_at IS NOT NULL AND e.process_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_events p
          WHERE p.resource_id = e.resource_id AND p.process_at IS NOT NULL AND p.seq < e.seq
      )
    ORDER BY e.seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_events w SET process_at = now() + $2::interval, updated_at = now()
FROM due WHERE w.id = due.id
RETURNING w.id, w.type, w.data, w.attempts
"""

_DELIVERED = """
UPDATE webhook_events AS w
SET attempts = w.attempts + 1, status_code = u.status, process_at = NULL,
    delivered_at = now(), updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS u(id, status) WHERE w.id = u.id
"""

_FAILED = """
UPDATE webhook_events AS w
SET attempts = w.attempts + 1, status_code = u.status, updated_at = now(),
    process_at = CASE WHEN w.attempts + 1 >= $4 THEN NULL
                      ELSE now() + make_interval(secs => u.wait / 1000.0) END
FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS u(id, status, wait)
WHERE w.id = u.id
"""


async def deliver_webhooks(
    backend: Backend, client: Http1Client, metrics: BackendMetrics | None = None
) -> int:
    """Deliver one batch of due events; returns how many were attempted."""
    settings = backend.settings
    url = settings.webhook_url
    if url is None:
        return 0
    lease = timedelta(milliseconds=settings.webhook_timeout_ms + 10_000)
    async with backend.pool.acquire() as conn:
        rows = await conn.fetch(_CLAIM_WEBHOOKS, _WEBHOOK_BATCH, lease)
    if not rows:
        return 0
    limit = asyncio.Semaphore(_WEBHOOK_CONCURRENCY)

    async def send(row: asyncpg.Record) -> tuple[uuid.UUID, int | None, int]:
        data = row["data"]
        body = {
            "id": str(row["id"]),
            "type": row["type"],
            "data": json.loads(data) if isinstance(data, str) else data,
        }
        content = json.dumps(body).encode()
        headers = b"Content-Type: application/json\r\n"
        if settings.signature_secret:
            signed = signature_header(settings.signature_secret, body)
            headers += b"Rafiki-Signature: " + signed.encode() + b"\r\n"
        async with limit:
            span = (
                None if backend.tracing is None else start_webhook_span(backend.tracing, url, row)
            )
            try:
                async with asyncio.timeout(settings.webhook_timeout_ms / 1000):
                    status, _ = await client.post(url, content, headers)
            except (LinkError, TimeoutError) as exc:
                end_webhook_span(span, None, exc)
                log.warning("webhook %s (%s) failed: %r", row["id"], row["type"], exc)
                return row["id"], None, row["attempts"] + 1
            end_webhook_span(span, status, None)
        if not 200 <= status < 300:
            log.warning("webhook %s (%s) answered %d", row["id"], row["type"], status)
        return row["id"], status, row["attempts"] + 1

    results = await asyncio.gather(*(send(r) for r in rows))
    delivered = [(i, s) for i, s, _ in results if s is not None and 200 <= s < 300]
    failed = [(i, s, a) for i, s, a in results if s is None or not 200 <= s < 300]
    backoff = settings.webhook_retry_backoff_ms
    async with backend.pool.acquire() as conn:
        if delivered:
            await conn.execute(_DELIVERED, [i for i, _ in delivered], [s for _, s in delivered])
        if failed:
            await conn.execute(
                _FAILED,
                [i for i, _, _ in failed],
                [s for _, s, _ in failed],
                [min(a, 6) * backoff for _, _, a in failed],
                settings.webhook_max_retry,
            )
    if metrics is not None:
        metrics.webhooks.labels("delivered").inc(len(delivered))
        gave_up = sum(1 for *_, a in failed if a >= settings.webhook_max_retry)
        metrics.webhooks.labels("failed").inc(len(failed) - gave_up)
        metrics.webhooks.labels("given_up").inc(gave_up)
    return len(rows)


_DUE_INCOMING_PAYMENTS = f"""
SELECT p.id, a.code AS asset_code, a.scale AS asset_scale
FROM incoming_payments p
JOIN assets a ON a.id = p.asset_id
WHERE p.state IN {sql_list(OPEN)} AND p.expires_at <= now()
ORDER BY p.expires_at
LIMIT $1
FOR UPDATE OF p SKIP LOCKED
"""


async def expire_incoming_payments(backend: Backend, limit: int = _EXPIRY_BATCH) -> int:
    """Expire due incoming payments; returns how many. One whose money is still in flight (a
    packet held but not yet posted) waits for the next round. What it received is read under
    the ledger's lock on its account, so no packet lands after the EXPIRED event."""
    expired = 0
    async with backend.pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(_DUE_INCOMING_PAYMENTS, limit)
        if not due:
            return 0
        await backend.ledger.sync_balances(
            conn, [account_id_for(AccountKind.INCOMING_PAYMENT, row["id"]) for row in due]
        )
        # The ledger writer's own lock on the accounts (kiungo.ledger.service): a batch
        # crediting one commits before this reads, or runs after this transaction and, its
        # clock being past the payment's expiry, is refused (the packet's leg has the expiry
        # as its ``credit_until``).
        accounts = await ledger_reads.lock_incoming_payment_accounts(
            conn, [row["id"] for row in due]
        )
        for row in due:
            account = accounts.get(row["id"])
            if account is not None and account.pending > 0:
                continue
            received = 0 if account is None else account.posted
            if await incoming_store.expire(
                conn,
                row["id"],
                received,
                (row["asset_code"], row["asset_scale"]),
            ):
                expired += 1
    return expired


async def emit_web_monetization_events(
    backend: Backend, limit: int = _EXPIRY_BATCH, *, threshold: int | None = None
) -> int:
    """Raise ``wallet_address.web_monetization`` for wallet addresses holding unreported Web
    Monetization money at or above their asset's withdrawal threshold (or ``threshold``)."""
    count = 0
    async with backend.pool.acquire() as conn, conn.transaction():
        await backend.ledger.sync_balances(conn, kinds=(AccountKind.WALLET_ADDRESS,))
        unreported = ledger_reads.wallet_addresses_with_unreported_receipts
        for row in await unreported(conn, limit, threshold):
            received = int(row["credits_posted"]) - int(row["total_events_amount"])
            await conn.execute(
                "UPDATE wallet_addresses SET total_events_amount = $2, updated_at = now() "
                "WHERE id = $1",
                row["id"],
                row["credits_posted"],
            )
            data = {
                "walletAddress": {
                    "id": str(row["id"]),
                    "address": row["url"],
                    "createdAt": iso_time(row["created_at"]),
                    "received": str(received),
                    "receivedAmount": amount_json(received, row["asset_code"], row["asset_scale"]),
                }
            }
            account = account_id_for(AccountKind.WALLET_ADDRESS, row["id"])
            await insert_event(
                conn,
                EventType.WALLET_ADDRESS_WEB_MONETIZATION,
                row["id"],
                data,
                withdrawal=(account, row["asset_id"], received),
            )
            count += 1
    return count


_LIQUIDITY_KINDS = (AccountKind.ASSET_LIQUIDITY, AccountKind.PEER_LIQUIDITY)


def _alert(available: int, low: int | None, high: int | None) -> str | None:
    if low is not None and available < low:
        return "LOW"
    if high is not None and available > high:
        return "HIGH"
    return None


async def raise_liquidity_alerts(backend: Backend) -> int:
    """Raise one event per threshold crossing of assets' and peers' liquidity."""
    raised = 0
    async with backend.pool.acquire() as conn, conn.transaction():
        await backend.ledger.sync_balances(conn, kinds=_LIQUIDITY_KINDS)
        for table, read, low_event, high_event in (
            (
                "assets",
                ledger_reads.assets_liquidity_against_thresholds,
                EventType.ASSET_LIQUIDITY_LOW,
                EventType.ASSET_LIQUIDITY_HIGH,
            ),
            (
                "peers",
                ledger_reads.peers_liquidity_against_thresholds,
                EventType.PEER_LIQUIDITY_LOW,
                EventType.PEER_LIQUIDITY_HIGH,
            ),
        ):
            for row in await read(conn):
                low = None if row["low"] is None else int(row["low"])
                high = None if row["high"] is None else int(row["high"])
                available = int(row["available"])
                alert = _alert(available, low, high)
                if alert == row["liquidity_alert"]:
                    continue
                await conn.execute(
                    f"UPDATE {table} SET liquidity_alert = $2 WHERE id = $1",
                    row["id"],
                    alert,
                )
                if alert is None:
                    continue
                asset_id = row["id"] if table == "assets" else row["asset_id"]
                data: dict[str, Any] = {
                    "id": str(row["id"]),
                    "asset": {"id": str(asset_id), "code": row["code"], "scale": row["scale"]},
                    "liquidityThreshold": str(low if alert == "LOW" else high),
                    "balance": str(available),
                }
                event = low_event if alert == "LOW" else high_event
                await insert_event(conn, event, row["id"], data)
                raised += 1
    return raised


async def update_ledger_gauges(backend: Backend, metrics: BackendMetrics) -> None:
    """Set ``kiungo_liquidity``, ``kiungo_pending_holds`` and
    ``kiungo_oldest_pending_hold_seconds`` from the ledger as it is now (reads only)."""
    async with backend.pool.acquire() as conn:
        async with conn.transaction():
            await backend.ledger.sync_balances(conn, kinds=_LIQUIDITY_KINDS)
        balances = await ledger_reads.liquidity_gauges(conn)
        holds = await ledger_reads.pending_holds(conn)
    metrics.set_liquidity(
        (kind, str(owner_id), code, available) for kind, owner_id, code, available in balances
    )
    metrics.set_pending_holds(holds.count, holds.overdue_seconds)


class Workers:
    """The loops of one replica; each does a round, then sleeps when it found nothing."""

    def __init__(self, backend: Backend, metrics: BackendMetrics | None = None) -> None:
        self._backend = backend
        self._metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Http1Client | None = None

    def start(self) -> None:
        if self._tasks:
            return
        self._client = Http1Client()
        client = self._client
        interval = self._backend.settings.worker_interval_ms / 1000
        # (job, a full round's size: a round that did less waits before the next, the wait)
        jobs: dict[str, tuple[Callable[[], Awaitable[int]], int, float]] = {
            # Webhooks wait at most 50 ms, so that events arriving one by one still go out in
            # batches instead of one claim query each.
            "webhooks": (
                lambda: deliver_webhooks(self._backend, client, self._metrics),
                _WEBHOOK_BATCH,
                min(interval, 0.05),
            ),
            "incoming-payment-expiry": (
                lambda: expire_incoming_payments(self._backend),
                _EXPIRY_BATCH,
                interval,
            ),
            "web-monetization-events": (
                lambda: emit_web_monetization_events(self._backend),
                _EXPIRY_BATCH,
                interval,
            ),
            "liquidity-alerts": (self._liquidity_round, 1, interval),
        }
        self._tasks = [
            asyncio.create_task(self._loop(name, *job), name=f"worker-{name}")
            for name, job in jobs.items()
        ]

    async def _liquidity_round(self) -> int:
        """The ledger gauges, then the liquidity alerts; neither's failure stops the other."""
        if self._metrics is not None:
            try:
                await update_ledger_gauges(self._backend, self._metrics)
            except Exception:
                log.exception("worker ledger-gauges failed; retrying")
        return await raise_liquidity_alerts(self._backend)

    async def _loop(
        self, name: str, job: Callable[[], Awaitable[int]], full: int, idle: float
    ) -> None:
        while True:
            raise_if_cancelled()
            started = time.monotonic()
            try:
                done = await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s failed; retrying", name)
                done = 0
            if done < full:
                await asyncio.sleep(max(0.0, idle - (time.monotonic() - started)))

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []
        if self._client is not None:
            await self._client.close()
            self._client = None
