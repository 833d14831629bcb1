"""The lease: which replica sends a payment, and for how long.

**Claiming.** Every replica polls ``outgoing_payments`` for rows in SENDING whose ``process_at``
has come, ``FOR UPDATE SKIP LOCKED``, and takes a lease on each by moving its ``process_at`` a
lease ahead. The new ``process_at`` is the lease's token: every later write (progress, renewal,
outcome) is conditional on it, so a worker that lost its lease (it stalled past it and another
replica took the payment over) writes nothing more and stops sending. A crashed worker's
payment is taken again once its lease has run out.

**Deadline.** An attempt sends for at most OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS (resolving the
receiver over SPSP, reading its incoming payment, probing, paying): a receiver that trickles
its answers or keeps the sender busy without progress would otherwise hold one of this
replica's MAX_CONCURRENT_PAYMENTS slots, and the lease that keeps every other replica off the
payment, for as long as it liked. At the deadline the sender stops; packets already handed to
the pipeline finish (each within PACKET_LIFETIME), and the attempt fails like any other
(retried with backoff, or FAILED). The lease is renewed no later than the deadline plus one
packet lifetime: past that the worker lets it run out, as a crashed worker's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Integer, Interval, bindparam, func, or_, select, update

from kiungo.connector.sending.payment import PACKET_LIFETIME, log, log_extra
from kiungo.models import OutgoingPayment
from kiungo.models.sql import Statement, table
from kiungo.payments.outgoing import States

__all__ = ["LEASE", "Lease", "claim"]

LEASE = timedelta(seconds=10)
"""How long a claimed payment is ours without a renewal (renewed every third of it)."""
_LEASE_GRACE = timedelta(seconds=2)
"""Past an attempt's deadline and its packets' lifetime, what recording the outcome may take."""

_payments = table(OutgoingPayment)
_c = _payments.c


def _ahead(name: str) -> Any:
    """``clock_timestamp()`` plus the interval bound as ``name``: a lease's new end."""
    return func.clock_timestamp() + bindparam(name, type_=Interval)


# The state is written into the statements as a literal, not passed: the claim's partial
# index (ix_outgoing_payments_process_at, on SENDING rows only) serves only a plan that has it.
_due = (
    select(_c.id, _c.process_at.label("previous"))
    .where(
        _c.state == States.SENDING,
        or_(_c.process_at.is_(None), _c.process_at <= func.now()),
    )
    .order_by(_c.process_at.asc().nulls_first())
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
    .cte("due")
)
_CLAIM = Statement(
    update(_payments)
    .where(_c.id == _due.c.id)
    # The claim moves only the lease, not updated_at (the onupdate would add it).
    .values(process_at=_ahead("lease"), updated_at=_c.updated_at)
    .returning(_c.id, _c.process_at, _due.c.previous.is_not(None).label("resumed"))
)

_RENEW = Statement(
    update(_payments)
    .where(
        _c.id == bindparam("id"),
        _c.state == States.SENDING,
        _c.process_at == bindparam("token"),
    )
    .values(
        process_at=_ahead("length"),
        sent_amount=func.coalesce(bindparam("sent", type_=_c.sent_amount.type), _c.sent_amount),
        delivered_amount=func.coalesce(
            bindparam("delivered", type_=_c.delivered_amount.type), _c.delivered_amount
        ),
        updated_at=func.now(),
    )
    .returning(_c.process_at)
)


async def claim(pool: asyncpg.Pool, limit: int, *, attempt_timeout: timedelta) -> list[Lease]:
    """Leases on up to ``limit`` due payments (each a lease ahead, the attempt starting now)."""
    async with pool.acquire() as conn:
        rows = await _CLAIM.fetch(conn, limit=limit, lease=LEASE)
    return [
        Lease(
            pool,
            row["id"],
            row["process_at"],
            resumed=row["resumed"],
            attempt_timeout=attempt_timeout,
        )
        for row in rows
    ]


class Lease:
    """Our hold on one payment row: its ``process_at`` as we last wrote it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        payment_id: uuid.UUID,
        token: datetime,
        *,
        resumed: bool,
        attempt_timeout: timedelta,
    ) -> None:
        self._pool = pool
        self.payment_id = payment_id
        self.token = token
        self.resumed = resumed
        """Claimed before (a crash, a retry, a stop): packets may have gone out unseen."""
        self.attempt_timeout = attempt_timeout
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + attempt_timeout.total_seconds()
        """The event loop time at which this attempt stops sending."""
        self._renew_until = self.deadline + (PACKET_LIFETIME + _LEASE_GRACE).total_seconds()
        self.lost = False
        self._lock = asyncio.Lock()
        self._extra = log_extra(payment_id)

    async def renew(
        self, sent: int | None = None, delivered: int | None = None, *, length: timedelta = LEASE
    ) -> bool:
        """Extend the lease (and write progress); False once it is lost."""
        async with self._lock:
            if self.lost:
                return False
            if asyncio.get_running_loop().time() > self._renew_until:
                # The attempt overran its deadline and its packets' lifetime: let the lease run
                # out so that another replica (or this one, later) can take the payment over.
                self.lost = True
                log.warning(
                    "outgoing payment %s: attempt overran its deadline, letting the lease go",
                    self.payment_id, extra=self._extra,
                )  # fmt: skip
                return False
            try:
                token = await _RENEW.fetchval(
                    self._pool,
                    id=self.payment_id,
                    token=self.token,
                    length=length,
                    sent=sent,
                    delivered=delivered,
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "could not renew the lease of %s: %r", self.payment_id, exc, extra=self._extra
                )
                return True  # try again next time; the lease has a while to run
            if token is None:
                self.lost = True
                log.warning(
                    "outgoing payment %s: lease lost, stopping", self.payment_id, extra=self._extra
                )
                return False
            self.token = token
            return True

    async def keep_alive(self, stop: asyncio.Event) -> None:
        interval = LEASE.total_seconds() / 3
        while not self.lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see kiungo.runtime.tasks
                    await stop.wait()
            if stop.is_set():
                return
            await self.renew()

    def overran(self) -> str:
        """The error of an attempt stopped at its deadline."""
        seconds = self.attempt_timeout.total_seconds()
        return (
            f"the attempt did not finish within {seconds:g} s (OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS)"
        )
