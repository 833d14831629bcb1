"""The backend's gauges, read each liquidity round by every replica (reads only, so every
replica reports the same values: take ``max`` over replicas, not ``sum``).

- the ledger's: available liquidity of each asset and peer, pending holds;
- the backlogs: webhook events waiting for delivery and how old the oldest is, and payments not
  yet in a final state, by type and state (a growing SENDING or PROCESSING count is a stuck
  worker; a growing FUNDING count is unfunded payments the operator owes a deposit).
"""

from __future__ import annotations

from sqlalchemy import Float, extract, func, literal, select, union_all

from kiungo.backend.context import Backend
from kiungo.backend.metrics import BackendMetrics
from kiungo.ledger import AccountKind
from kiungo.ledger import reads as ledger_reads
from kiungo.models import IncomingPayment, OutgoingPayment, WebhookEvent
from kiungo.models.sql import Statement, table
from kiungo.payments import outgoing
from kiungo.payments.incoming import OPEN as INCOMING_OPEN

__all__ = ["update_backlog_gauges", "update_ledger_gauges"]

_LIQUIDITY_KINDS = (AccountKind.ASSET_LIQUIDITY, AccountKind.PEER_LIQUIDITY)
_OUTGOING_OPEN = frozenset(outgoing.States) - outgoing.ENDED

_events = table(WebhookEvent)
_incoming = table(IncomingPayment)
_outgoing = table(OutgoingPayment)

# Undelivered: process_at is set until an event is delivered or given up.
_WEBHOOK_BACKLOG = Statement(
    select(
        func.count().label("waiting"),
        func.coalesce(extract("epoch", func.now() - func.min(_events.c.created_at)), 0)
        .cast(Float)
        .label("oldest_seconds"),
    ).where(_events.c.process_at.is_not(None))
)
_OPEN_PAYMENTS = Statement(
    union_all(
        select(literal("incoming").label("type"), _incoming.c.state, func.count().label("n"))
        .where(_incoming.c.state.in_(sorted(INCOMING_OPEN)))
        .group_by(_incoming.c.state),
        select(literal("outgoing").label("type"), _outgoing.c.state, func.count().label("n"))
        .where(_outgoing.c.state.in_(sorted(_OUTGOING_OPEN)))
        .group_by(_outgoing.c.state),
    )
)


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


async def update_backlog_gauges(backend: Backend, metrics: BackendMetrics) -> None:
    """Set ``kiungo_webhook_backlog``, ``kiungo_oldest_undelivered_webhook_seconds`` and
    ``kiungo_open_payments`` (every open state, 0 when none is in it)."""
    async with backend.pool.acquire() as conn:
        webhooks = await _WEBHOOK_BACKLOG.fetchrow(conn)
        rows = await _OPEN_PAYMENTS.fetch(conn)
    counts = {(row["type"], row["state"]): int(row["n"]) for row in rows}
    open_states = [("incoming", str(s)) for s in sorted(INCOMING_OPEN)] + [
        ("outgoing", str(s)) for s in sorted(_OUTGOING_OPEN)
    ]
    assert webhooks is not None  # an aggregate always answers one row
    metrics.set_backlog(
        int(webhooks["waiting"]),
        max(0.0, float(webhooks["oldest_seconds"])),
        [(kind, state, counts.get((kind, state), 0)) for kind, state in open_states],
    )
