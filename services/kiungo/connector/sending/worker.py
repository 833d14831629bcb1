"""The worker: claims due payments and runs one attempt at each, a bounded number at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from kiungo.connector.node import Node
from kiungo.connector.sending.attempt import attempt
from kiungo.connector.sending.lease import Lease, claim
from kiungo.connector.sending.outcome import record
from kiungo.connector.sending.payment import Failed, Outcome, Payment, load, log, log_extra
from kiungo.runtime.tasks import stop_tasks
from kiungo.store.channels import PAYMENTS_DUE_CHANNEL

__all__ = ["MAX_CONCURRENT_PAYMENTS", "OutgoingPaymentWorker"]

MAX_CONCURRENT_PAYMENTS = 20


class OutgoingPaymentWorker:
    def __init__(
        self,
        node: Node,
        *,
        max_concurrent: int = MAX_CONCURRENT_PAYMENTS,
        poll_interval: timedelta | None = None,
    ) -> None:
        self._node = node
        self._max_concurrent = max_concurrent
        self._poll = (
            poll_interval
            if poll_interval is not None
            else timedelta(milliseconds=node.settings.worker_interval_ms)
        )
        self._running: set[asyncio.Task[None]] = set()
        self._attempt_timeout = timedelta(
            milliseconds=node.settings.outgoing_payment_attempt_timeout_ms
        )

    async def _listen(self, wake: asyncio.Event) -> None:
        """Set ``wake`` on every payments-due message from a backend (polling goes on
        meanwhile when the subscription fails)."""

        async def due(data: bytes | None) -> None:
            if data is not None:
                wake.set()

        await self._node.listen(PAYMENTS_DUE_CHANNEL, due, idle=60)

    async def run(self) -> None:
        """Claim and send due payments until cancelled; then let the ones under way stop."""
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(wake), name="payments-due")
        try:
            while True:
                claimed = 0
                try:
                    free = self._max_concurrent - len(self._running)
                    if free > 0:
                        claimed = await self._claim(free)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("claiming outgoing payments failed")
                if claimed == 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll.total_seconds()):
                            await wake.wait()
                    wake.clear()
        finally:
            await stop_tasks([listener, *self._running])

    async def _claim(self, limit: int) -> int:
        leases = await claim(self._node.pool, limit, attempt_timeout=self._attempt_timeout)
        for lease in leases:
            self._spawn(self._process(lease), f"outgoing-payment-{lease.payment_id}")
        return len(leases)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as one of this worker's tasks (cancelled and awaited when it stops)."""
        task = asyncio.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _process(self, lease: Lease) -> None:
        stop = asyncio.Event()
        keeper = asyncio.create_task(lease.keep_alive(stop))
        outcome: Outcome | None = None
        payment: Payment | None = None
        try:
            async with self._node.pool.acquire() as conn:
                payment = await load(conn, lease.payment_id)
            if payment is None:
                return
            outcome = await attempt(self._node, payment, lease, spawn=self._spawn)
        except asyncio.CancelledError:
            # Stopping (its packets have finished and its progress is written): hand the
            # payment back at once, for any replica.
            stop.set()
            await asyncio.gather(keeper, return_exceptions=True)
            await lease.renew(length=timedelta(0))
            raise
        except Exception:
            log.exception(
                "outgoing payment %s: attempt failed unexpectedly",
                lease.payment_id,
                extra=log_extra(lease.payment_id),
            )
            if payment is not None:
                outcome = Failed("internal error", True, None, None)
        finally:
            stop.set()
        await asyncio.gather(keeper, return_exceptions=True)
        if payment is not None and outcome is not None and not lease.lost:
            try:
                await record(self._node, payment, lease, outcome)
            except Exception:
                log.exception(
                    "outgoing payment %s: recording the outcome failed",
                    payment.id,
                    extra=log_extra(payment.id),
                )
