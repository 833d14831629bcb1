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

Their SQL is built from the models (:class:`kiungo.models.sql.Statement`); the ledger's tables
are read through :mod:`kiungo.ledger.reads`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import asyncpg
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    Interval,
    Table,
    Uuid,
    bindparam,
    case,
    column,
    exists,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.sql.selectable import Alias, TableValuedAlias
from sqlalchemy.types import TypeEngine

from kiungo.backend.context import Backend
from kiungo.backend.gauges import update_backlog_gauges, update_ledger_gauges
from kiungo.backend.metrics import BackendMetrics
from kiungo.backend.tracing import end_webhook_span, start_webhook_span
from kiungo.events import EventType, amount_json, insert_event, iso_time
from kiungo.ledger import AccountKind, account_id_for
from kiungo.ledger import reads as ledger_reads
from kiungo.models import Asset, IncomingPayment, Peer, WalletAddress, WebhookEvent
from kiungo.models.sql import Statement, table
from kiungo.payments.incoming import OPEN
from kiungo.payments.incoming import store as incoming_store
from kiungo.payments.receivers import shown_event_data
from kiungo.runtime.http1 import Http1Client, LinkError
from kiungo.runtime.tasks import raise_if_cancelled, stop_tasks
from kiungo.signatures import signature_header

__all__ = [
    "Workers",
    "deliver_webhooks",
    "emit_web_monetization_events",
    "expire_incoming_payments",
]

log = logging.getLogger("kiungo.backend.workers")

_WEBHOOK_BATCH = 100
_EXPIRY_BATCH = 200
_WEBHOOK_CONCURRENCY = 50

_events = table(WebhookEvent)
_assets = table(Asset)
_peers = table(Peer)
_incoming = table(IncomingPayment)
_wallets = table(WalletAddress)

# The earliest due event of each resource whose earlier events are all delivered or given up.
_e = _events.alias("e")
_p = _events.alias("p")
# The events a batch updates (an Alias: what update() takes).
_w = cast(Alias, _events.alias("w"))
_due = (
    select(_e.c.id)
    .where(
        _e.c.process_at.is_not(None),
        _e.c.process_at <= func.now(),
        ~exists().where(
            _p.c.resource_id == _e.c.resource_id,
            _p.c.process_at.is_not(None),
            _p.c.seq < _e.c.seq,
        ),
    )
    .order_by(_e.c.seq)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
    .cte("due")
)
_CLAIM_WEBHOOKS = Statement(
    update(_w)
    .where(_w.c.id == _due.c.id)
    .values(process_at=func.now() + bindparam("lease", type_=Interval), updated_at=func.now())
    .returning(_w.c.id, _w.c.type, _w.c.data, _w.c.attempts)
)


def _unnested(**columns: type[TypeEngine[Any]]) -> TableValuedAlias:
    """``unnest($1, $2, …) AS u(<columns>)``: a row per position of the arrays bound by the
    columns' names (``id=[…]``, ``status=[…]``)."""
    return (
        func.unnest(*(bindparam(name, type_=ARRAY(kind)) for name, kind in columns.items()))
        .table_valued(*(column(name, kind) for name, kind in columns.items()))
        .render_derived(name="u")
    )


def _attempted(results: TableValuedAlias, **values: Any) -> Statement:
    """One more attempt of each event of ``results`` (``u.id``), its answer ``u.status``."""
    return Statement(
        update(_w)
        .where(_w.c.id == results.c.id)
        .values(
            attempts=_w.c.attempts + 1,
            status_code=results.c.status,
            updated_at=func.now(),
            **values,
        )
    )


_DELIVERED = _attempted(
    _unnested(id=Uuid, status=Integer), process_at=null(), delivered_at=func.now()
)
_failed = _unnested(id=Uuid, status=Integer, wait=BigInteger)
_FAILED = _attempted(
    _failed,
    process_at=case(
        (_w.c.attempts + 1 >= bindparam("max_attempts", type_=Integer), null()),
        # make_interval(years, months, weeks, days, hours, mins, secs)
        else_=func.now()
        + func.make_interval(0, 0, 0, 0, 0, 0, _failed.c.wait / literal_column("1000.0")),
    ),
)


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
        rows = await _CLAIM_WEBHOOKS.fetch(conn, limit=_WEBHOOK_BATCH, lease=lease)
    if not rows:
        return 0
    limit = asyncio.Semaphore(_WEBHOOK_CONCURRENCY)

    async def send(row: asyncpg.Record) -> tuple[uuid.UUID, int | None, int]:
        body = {
            "id": str(row["id"]),
            "type": row["type"],
            "data": shown_event_data(settings.open_payments_url, row["type"], row["data"]),
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
            await _DELIVERED.execute(
                conn, id=[i for i, _ in delivered], status=[s for _, s in delivered]
            )
        if failed:
            await _FAILED.execute(
                conn,
                id=[i for i, _, _ in failed],
                status=[s for _, s, _ in failed],
                wait=[min(a, 6) * backoff for _, _, a in failed],
                max_attempts=settings.webhook_max_retry,
            )
    if metrics is not None:
        metrics.webhooks.labels("delivered").inc(len(delivered))
        gave_up = sum(1 for *_, a in failed if a >= settings.webhook_max_retry)
        metrics.webhooks.labels("failed").inc(len(failed) - gave_up)
        metrics.webhooks.labels("given_up").inc(gave_up)
    return len(rows)


_DUE_INCOMING_PAYMENTS = Statement(
    select(
        _incoming.c.id,
        _assets.c.code.label("asset_code"),
        _assets.c.scale.label("asset_scale"),
    )
    .select_from(_incoming.join(_assets, _assets.c.id == _incoming.c.asset_id))
    .where(_incoming.c.state.in_(OPEN), _incoming.c.expires_at <= func.now())
    .order_by(_incoming.c.expires_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=_incoming, skip_locked=True)
)


async def expire_incoming_payments(backend: Backend, limit: int = _EXPIRY_BATCH) -> int:
    """Expire due incoming payments; returns how many. One whose money is still in flight (a
    packet held but not yet posted) waits for the next round. What it received is read under
    the ledger's lock on its account, so no packet lands after the EXPIRED event."""
    expired = 0
    async with backend.pool.acquire() as conn, conn.transaction():
        due = await _DUE_INCOMING_PAYMENTS.fetch(conn, limit=limit)
        if not due:
            return 0
        await backend.ledger.sync_balances(
            conn, [account_id_for(AccountKind.INCOMING_PAYMENT, row["id"]) for row in due]
        )
        # The ledger writer's own lock on the accounts (kiungo.ledger.batch_sql): a batch
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


_REPORTED = Statement(
    update(_wallets)
    .where(_wallets.c.id == bindparam("id"))
    .values(total_events_amount=bindparam("total"), updated_at=func.now())
)


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
            await _REPORTED.execute(conn, id=row["id"], total=row["credits_posted"])
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


def _set_alert(owners: Table) -> Statement:
    """Records the alert last raised for an asset or a peer (its updated_at unchanged)."""
    return Statement(
        update(owners)
        .where(owners.c.id == bindparam("id"))
        .values(liquidity_alert=bindparam("alert"), updated_at=owners.c.updated_at)
    )


_SET_ASSET_ALERT = _set_alert(_assets)
_SET_PEER_ALERT = _set_alert(_peers)


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
        for set_alert, read, low_event, high_event in (
            (
                _SET_ASSET_ALERT,
                ledger_reads.assets_liquidity_against_thresholds,
                EventType.ASSET_LIQUIDITY_LOW,
                EventType.ASSET_LIQUIDITY_HIGH,
            ),
            (
                _SET_PEER_ALERT,
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
                await set_alert.execute(conn, id=row["id"], alert=alert)
                if alert is None:
                    continue
                asset_id = row["id"] if set_alert is _SET_ASSET_ALERT else row["asset_id"]
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
        """The gauges, then the liquidity alerts; no one's failure stops the others."""
        if self._metrics is not None:
            for name, update in (
                ("ledger-gauges", update_ledger_gauges),
                ("backlog-gauges", update_backlog_gauges),
            ):
                try:
                    await update(self._backend, self._metrics)
                except Exception:
                    log.exception("worker %s failed; retrying", name)
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
