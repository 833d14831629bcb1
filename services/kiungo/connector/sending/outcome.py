"""Recording an attempt's outcome.

COMPLETED, or on failure a retry with backoff (``state_attempts + 1``, ``process_at = now +
backoff``), at most MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS times, then FAILED with ``error``. The
state change and its ``outgoing_payment.completed|failed`` event are written in one transaction
(:mod:`kiungo.payments.outgoing.store`), and only while the lease is still ours. What is left
in the payment's account is offered as the ending event's ``withdrawal``.
"""

from __future__ import annotations

from datetime import timedelta

from kiungo.connector.node import Node
from kiungo.connector.sending.lease import Lease
from kiungo.connector.sending.payment import (
    PENDING_RECHECK,
    Completed,
    Later,
    Outcome,
    Payment,
    log,
    log_extra,
)
from kiungo.payments.outgoing import States, store

__all__ = ["MAX_RETRY_BACKOFF", "RETRY_BACKOFF", "record"]

RETRY_BACKOFF = timedelta(seconds=1)
"""The wait after the first failed attempt, doubled after each next one (up to a minute)."""
MAX_RETRY_BACKOFF = timedelta(seconds=60)


async def record(node: Node, payment: Payment, lease: Lease, outcome: Outcome) -> None:
    withdrawal = None
    if not isinstance(outcome, Later) and await node.owed.book_debits_of(payment.account_id):
        # A packet's post is owed (kiungo.connector.owed): the leftover would include money
        # already paid out, offered for withdrawal before the owed post could book it. The
        # payment ends once it is booked (the next attempt finds it done).
        outcome = Later(
            PENDING_RECHECK,
            payment.sent_amount if outcome.sent is None else outcome.sent,
            payment.delivered_amount if outcome.delivered is None else outcome.delivered,
        )
    if not isinstance(outcome, Later):
        balance = await node.ledger.balance(payment.account_id)
        if balance.available > 0:
            withdrawal = (payment.account_id, payment.asset_id, balance.available)
    max_attempts = node.settings.max_outgoing_payment_retry_attempts
    async with node.pool.acquire() as conn, conn.transaction():
        current = await store.locked(conn, payment.id)
        if (
            current is None
            or current["state"] != States.SENDING
            or current["process_at"] != lease.token
        ):
            log.warning(
                "outgoing payment %s: lease lost before its outcome",
                payment.id,
                extra=log_extra(payment.id),
            )
            return
        attempts = int(current["state_attempts"])
        if isinstance(outcome, Later):
            await store.postpone(conn, payment.id, outcome.wait, outcome.sent, outcome.delivered)
        elif isinstance(outcome, Completed):
            await store.complete(
                conn, payment.id, outcome.sent, outcome.delivered, withdrawal=withdrawal
            )
            log.info(
                "outgoing payment %s completed: sent %d, delivered %d",
                payment.id, outcome.sent, outcome.delivered, extra=log_extra(payment.id),
            )  # fmt: skip
        elif outcome.retryable and attempts < max_attempts:
            backoff = min(RETRY_BACKOFF * 2**attempts, MAX_RETRY_BACKOFF)
            await store.retry(conn, payment.id, backoff, outcome.sent, outcome.delivered)
            log.info(
                "outgoing payment %s: attempt %d failed (%s); retrying in %s",
                payment.id, attempts + 1, outcome.error, backoff, extra=log_extra(payment.id),
            )  # fmt: skip
        else:
            await store.fail(
                conn,
                payment.id,
                outcome.error,
                outcome.sent,
                outcome.delivered,
                withdrawal=withdrawal,
            )
            log.warning(
                "outgoing payment %s failed: %s",
                payment.id,
                outcome.error,
                extra=log_extra(payment.id),
            )
