"""The outgoing payment worker: sends the payments the backend has funded (state SENDING).

**Claiming.** Every replica polls ``outgoing_payments`` for rows in SENDING whose ``process_at``
has come, ``FOR UPDATE SKIP LOCKED``, and takes a lease on each by moving its ``process_at`` a
lease ahead. The new ``process_at`` is the lease's token: every later write (progress, renewal,
outcome) is conditional on it, so a worker that lost its lease (it stalled past it and another
replica took the payment over) writes nothing more and stops sending. A crashed worker's
payment is taken again once its lease has run out.

**Money.** The backend funds the payment's OUTGOING_PAYMENT account with the quote's debit
amount before SENDING. Packets enter our own packet path in-process with that account as
their source (:class:`kiungo.connector.inprocess.PipelineLink`), so each fulfilled packet is a
posted ledger transfer out of it, exactly as a peer's forwarded packet is. What is left after
the payment ends (the fee, what a better rate saved, everything when it failed) stays there
for the backend's withdrawal; the ending event offers it as its ``withdrawal``.

**Amounts** (as Rafiki pays a quote: fixed delivery within a source budget). The payment
delivers ``receive_amount`` and sends at most ``debit_amount - fee_amount``; it is COMPLETED
when the receiver has been delivered its amount, or when the whole budget has been sent (every
packet at no less than the quote's minimum rate: what a fixed-send quote means). A fixed-send
quote's receive amount is what its budget buys at the quoted rate, so it sends (about) all of
it; a fixed-receive quote's budget is what its receive amount costs at the minimum rate, so it
delivers exactly and leaves what the rate and rounding did not take.

A remote payment pays on the quote's probe (its low rate and the path's packet size), without
probing again; the receiver's first reply is checked for the quote's asset.

- **Local receivers** (a URL under OPEN_PAYMENTS_URL naming one of our wallet addresses or
  incoming payments): no ILP, one ledger transfer of what the receive amount costs at the
  quote's rate (at most the budget) out of the payment's account and of the receive amount
  into the receiver's (through the assets' liquidity accounts across assets; an incoming
  payment's amount is the credit limit). Its transfer ids derive from the payment's, so a
  retry after a crash replays it instead of paying twice.
- **Remote receivers**: a STREAM sender pays on the STREAM credentials the quote's probe
  resolved over SPSP (a resumed payment asks SPSP again) and on that probe's rate and packet
  size, with each packet's minimum from the quote's minimum rate. A quote without them (made
  before they were kept) is probed again first, from a source without an account.

**Progress and crashes.** ``sent_amount`` and ``delivered_amount`` are written as packets are
fulfilled (one write at a time, each with the latest totals, which also renews the lease) and
at the end. Resuming, the worker first waits until the account has no pending holds (a crashed
worker's packets resolve by their expiry) and no owed post (:mod:`kiungo.connector.owed`)
debits it (nor does a payment end while one does), then takes what was sent from the ledger
(posted debits of the account, the truth for every packet whose fulfillment we saw) and what was
delivered from the row, adding for packets posted after the last progress write the least
they can have delivered (their amount at the minimum rate). The bound: a resumed payment never
re-sends a packet whose Fulfill this node posted. Packets that were in flight when the worker
died and were fulfilled downstream without this node seeing it (their holds expire, so the
ledger counts them as unsent; at most ``MAX_IN_FLIGHT`` packets of at most the maximum packet
amount each) are not paid twice when the receiver is an incoming payment whose node tells how
much it received (:mod:`kiungo.open_payments`, as ours do): a resumed worker (claimed before:
after a crash, a retry or a stop) reads it and delivers only what it still expects, as Rafiki
does. This node's books then show those packets unpaid while the next node's show them paid:
the difference is this operator's, never the sender's nor the receiver's. To a receiver that
does not tell (a wallet address, another implementation), those packets can be paid twice.
(Within one process nothing is lost: a stopping worker lets its packets finish.)

**Deadline.** An attempt sends for at most OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS (resolving the
receiver over SPSP, reading its incoming payment, probing, paying): a receiver that trickles
its answers or keeps the sender busy without progress would otherwise hold one of this
replica's MAX_CONCURRENT_PAYMENTS slots, and the lease that keeps every other replica off the
payment, for as long as it liked. At the deadline the sender stops; packets already handed to
the pipeline finish (each within PACKET_LIFETIME), and the attempt fails like any other
(retried with backoff, or FAILED). The lease is renewed no later than the deadline plus one
packet lifetime: past that the worker lets it run out, as a crashed worker's would.

**Outcome.** COMPLETED, or on failure a retry with backoff (``state_attempts + 1``,
``process_at = now + backoff``), at most MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS times, then FAILED
with ``error``. The state change and its ``outgoing_payment.completed|failed`` event are written
in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import asyncpg

from kiungo.connector.inprocess import (
    InvalidReceiver,
    PipelineLink,
    ResolvedReceiver,
    local_receiver_url,
    resolve_receiver,
)
from kiungo.connector.node import Node
from kiungo.connector.peers import PeerInfo, internal_source
from kiungo.connector.pipeline.accounting import packet_legs
from kiungo.connector.receivers import Receiver, ReceiverKind
from kiungo.connector.spsp import find_receiver
from kiungo.events import OUTGOING_PAYMENT_EVENT_ROW, EventType, insert_event, outgoing_payment_data
from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.oer import MAX_UINT64, DecodeError
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.ledger import (
    AccountKind,
    CreditLimitExceeded,
    InsufficientBalance,
    LedgerError,
    TransferExists,
    TransferState,
    UnknownAccount,
    account_id_for,
)
from kiungo.open_payments import (
    INCOMING_PAYMENT_PATH,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.store.channels import PAYMENTS_DUE_CHANNEL
from kiungo.stream.crypto import DecryptionError, StreamKeys
from kiungo.stream.packet import decode_stream_packet
from kiungo.stream.sender import PaymentError, RateProbe, StreamSender
from kiungo.stream.server import Asset
from kiungo.tasks import stop_tasks

__all__ = ["LEASE", "MAX_IN_FLIGHT", "OutgoingPaymentWorker"]

log = logging.getLogger("kiungo.connector.sending")

LEASE = timedelta(seconds=10)
"""How long a claimed payment is ours without a renewal (renewed every third of it)."""
MAX_IN_FLIGHT = 10
"""Packets of one payment in flight at once (the bound on what a crash can pay twice)."""
PACKET_LIFETIME = timedelta(seconds=15)
PROBE_TIMEOUT = timedelta(seconds=15)
MAX_CONCURRENT_PAYMENTS = 20
RETRY_BACKOFF = timedelta(seconds=1)
"""The wait after the first failed attempt, doubled after each next one (up to a minute)."""
MAX_RETRY_BACKOFF = timedelta(seconds=60)
PENDING_RECHECK = timedelta(seconds=1)
_CLOSE_SECONDS = 2.0
_LEASE_GRACE = timedelta(seconds=2)
"""Past an attempt's deadline and its packets' lifetime, what recording the outcome may take."""
# Namespace of the ids of a local payment's transfer legs (uuid5 of "<payment id>:<leg>").
_LOCAL_TRANSFERS = uuid.UUID("9b0a6c1e-3f5d-4e7a-b2c8-1d4e6f8a0b3c")

_CLAIM = """
WITH due AS (
    SELECT id, process_at AS previous FROM outgoing_payments
    WHERE state = 'SENDING' AND (process_at IS NULL OR process_at <= now())
    ORDER BY process_at NULLS FIRST
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outgoing_payments AS p SET process_at = clock_timestamp() + $2::interval
FROM due WHERE p.id = due.id
RETURNING p.id, p.process_at, due.previous IS NOT NULL AS resumed
"""

_LOAD = """
SELECT p.id, p.state_attempts, p.sent_amount, p.delivered_amount,
       q.asset_id, a.code AS asset_code, a.scale AS asset_scale, q.receiver, q.debit_amount,
       q.fee_amount, q.receive_amount, q.receive_asset_code, q.receive_asset_scale,
       q.max_packet_amount, q.min_exchange_rate_numerator, q.min_exchange_rate_denominator,
       q.low_estimated_exchange_rate_numerator, q.low_estimated_exchange_rate_denominator,
       q.high_estimated_exchange_rate_numerator, q.high_estimated_exchange_rate_denominator,
       q.expires_at, q.stream_destination, q.stream_shared_secret
FROM outgoing_payments p
JOIN quotes q ON q.id = p.quote_id
JOIN assets a ON a.id = q.asset_id
WHERE p.id = $1
"""

_RENEW = """
UPDATE outgoing_payments
SET process_at = clock_timestamp() + $3::interval,
    sent_amount = coalesce($4, sent_amount),
    delivered_amount = coalesce($5, delivered_amount),
    updated_at = now()
WHERE id = $1 AND state = 'SENDING' AND process_at = $2
RETURNING process_at
"""


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Completed:
    sent: int
    delivered: int


@dataclass(frozen=True, slots=True)
class _Failed:
    error: str
    retryable: bool
    sent: int | None  # None: as the row has it
    delivered: int | None


@dataclass(frozen=True, slots=True)
class _Later:
    """Not an attempt: look again after ``wait`` (a crashed worker's holds still pending)."""

    wait: timedelta
    sent: int
    delivered: int


_Outcome = _Completed | _Failed | _Later


@dataclass(frozen=True, slots=True)
class _Payment:
    id: uuid.UUID
    state_attempts: int
    sent_amount: int
    delivered_amount: int
    asset_id: uuid.UUID
    asset_code: str
    asset_scale: int
    receiver: str
    budget: int  # debit_amount - fee_amount: the most it sends
    receive_amount: int
    receive_asset: Asset
    max_packet_amount: int | None
    min_rate: Fraction
    rate: Fraction  # the quote's low estimated rate: what it expects packets to get
    high_rate: Fraction
    quote_expires_at: datetime
    credentials: ResolvedReceiver | None  # what the quote's probe resolved (remote receivers)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> _Payment:
        min_rate = _rate(row, "min_exchange_rate")
        return cls(
            id=row["id"],
            state_attempts=int(row["state_attempts"]),
            sent_amount=int(row["sent_amount"]),
            delivered_amount=int(row["delivered_amount"]),
            asset_id=row["asset_id"],
            asset_code=row["asset_code"],
            asset_scale=row["asset_scale"],
            receiver=row["receiver"],
            budget=int(row["debit_amount"]) - int(row["fee_amount"] or 0),
            receive_amount=int(row["receive_amount"]),
            receive_asset=Asset(row["receive_asset_code"], row["receive_asset_scale"]),
            max_packet_amount=(
                None if row["max_packet_amount"] is None else int(row["max_packet_amount"])
            ),
            min_rate=min_rate,
            rate=max(_rate(row, "low_estimated_exchange_rate"), min_rate),
            high_rate=_rate(row, "high_estimated_exchange_rate"),
            quote_expires_at=row["expires_at"],
            credentials=(
                ResolvedReceiver(row["stream_destination"], bytes(row["stream_shared_secret"]))
                if row["stream_destination"] and row["stream_shared_secret"]
                else None
            ),
        )

    @property
    def account_id(self) -> uuid.UUID:
        return account_id_for(AccountKind.OUTGOING_PAYMENT, self.id)

    def source(self, *, paying: bool) -> PeerInfo:
        """The payment as a packet source: its account pays, or (probing) nothing does."""
        return internal_source(
            self.id,
            self.asset_id,
            self.asset_code,
            self.asset_scale,
            address="",
            account_kind=AccountKind.OUTGOING_PAYMENT if paying else None,
            name="outgoing payment",
        )

    def least_delivered(self, sent: int) -> int:
        """What ``sent`` delivered at least: every packet met the minimum rate."""
        value = sent * self.min_rate
        return -(-value.numerator // value.denominator)

    def done(self, sent: int, delivered: int) -> bool:
        return delivered >= self.receive_amount or sent >= self.budget


def _rate(row: asyncpg.Record, name: str) -> Fraction:
    numerator, denominator = row[f"{name}_numerator"], row[f"{name}_denominator"]
    if numerator is None or not denominator:
        return Fraction(0)
    return Fraction(int(numerator), int(denominator))


def _extra(payment_id: uuid.UUID) -> dict[str, str]:
    """The log fields naming a payment (LOG_FORMAT=json)."""
    return {"outgoing_payment_id": str(payment_id)}


# -- the lease ---------------------------------------------------------------------------------


class _Lease:
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
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + attempt_timeout.total_seconds()
        """The event loop time at which this attempt stops sending."""
        self._renew_until = self.deadline + (PACKET_LIFETIME + _LEASE_GRACE).total_seconds()
        self.lost = False
        self._lock = asyncio.Lock()
        self._extra = _extra(payment_id)

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
                token = await self._pool.fetchval(
                    _RENEW, self.payment_id, self.token, length, sent, delivered
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
                async with asyncio.timeout(interval):  # not wait_for: see kiungo.tasks
                    await stop.wait()
            if stop.is_set():
                return
            await self.renew()


# -- progress of a remote payment --------------------------------------------------------------


class _Progress:
    """What one attempt has sent and delivered, from the replies the pipeline gave; written to
    the row (one write at a time, always the latest totals) as it grows."""

    def __init__(
        self, payment: _Payment, lease: _Lease, keys: StreamKeys, sent: int, delivered: int
    ) -> None:
        self._payment = payment
        self._lease = lease
        self._keys = keys
        self.sent = sent
        self.delivered = delivered
        self.in_flight = 0
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None

    def starting(self, prepare: Prepare) -> None:
        self.in_flight += prepare.amount

    def finished(self, prepare: Prepare, reply: Fulfill | Reject) -> None:
        self.in_flight -= prepare.amount
        if not isinstance(reply, Fulfill) or prepare.amount == 0:
            return
        self.sent += prepare.amount
        self.delivered += self._delivered(prepare, reply)
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    def _delivered(self, prepare: Prepare, reply: Fulfill) -> int:
        try:
            return decode_stream_packet(self._keys.decrypt(reply.data)).prepare_amount
        except (DecryptionError, DecodeError):
            # No readable STREAM reply: the receiver accepted at least the packet's minimum.
            return self._payment.least_delivered(prepare.amount)

    async def _write(self) -> None:
        while self._dirty and not self._lease.lost:
            self._dirty = False
            await self._lease.renew(self.sent, self.delivered)

    async def flushed(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)


class _PaymentLink:
    """The sender's ``send``: refuses what would break the budget or outlive the lease, then
    hands the packet to the pipeline."""

    def __init__(self, node: Node, payment: _Payment, progress: _Progress, lease: _Lease) -> None:
        self._node = node
        self._payment = payment
        self._progress = progress
        self._lease = lease
        self.probing = True
        self.pipeline = PipelineLink(
            node, payment.source(paying=False), unfulfillable=True, observe=progress.finished
        )

    def start_paying(self) -> None:
        self.probing = False
        self.pipeline.source = self._payment.source(paying=True)
        self.pipeline.unfulfillable = False

    async def __call__(self, prepare: Prepare) -> Fulfill | Reject:
        address = self._node.address
        if self._lease.lost:
            return Reject("F00", address, "the payment's lease was lost", b"")
        if not self.probing and prepare.amount > 0:
            progress = self._progress
            left = self._payment.budget - progress.sent - progress.in_flight
            if prepare.amount > left:
                # F08 with what is left: the sender sends that much, then (nothing left) stops.
                return AmountTooLargeError(prepare.amount, max(left, 0)).to_reject(address)
        self._progress.starting(prepare)
        return await self.pipeline(prepare)


# -- the worker --------------------------------------------------------------------------------


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
        async with self._node.pool.acquire() as conn:
            rows = await conn.fetch(_CLAIM, limit, LEASE)
        for row in rows:
            lease = _Lease(
                self._node.pool,
                row["id"],
                row["process_at"],
                resumed=row["resumed"],
                attempt_timeout=self._attempt_timeout,
            )
            self._spawn(self._process(lease), f"outgoing-payment-{row['id']}")
        return len(rows)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as one of this worker's tasks (cancelled and awaited when it stops)."""
        task = asyncio.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _process(self, lease: _Lease) -> None:
        stop = asyncio.Event()
        keeper = asyncio.create_task(lease.keep_alive(stop))
        outcome: _Outcome | None = None
        payment: _Payment | None = None
        try:
            async with self._node.pool.acquire() as conn:
                row = await conn.fetchrow(_LOAD, lease.payment_id)
            if row is None:
                return
            payment = _Payment.from_row(row)
            outcome = await self._attempt(payment, lease)
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
                extra=_extra(lease.payment_id),
            )
            if payment is not None:
                outcome = _Failed("internal error", True, None, None)
        finally:
            stop.set()
        await asyncio.gather(keeper, return_exceptions=True)
        if payment is not None and outcome is not None and not lease.lost:
            try:
                await self._record(payment, lease, outcome)
            except Exception:
                log.exception(
                    "outgoing payment %s: recording the outcome failed",
                    payment.id,
                    extra=_extra(payment.id),
                )

    # -- one attempt ---------------------------------------------------------------------------

    async def _attempt(self, payment: _Payment, lease: _Lease) -> _Outcome:
        ledger = self._node.ledger
        sent, delivered = payment.sent_amount, payment.delivered_amount
        if await self._node.owed.book_debits_of(payment.account_id):
            # A fulfilled packet not yet booked: what was sent is not in the ledger yet.
            return _Later(PENDING_RECHECK, sent, delivered)
        try:
            balance = await ledger.balance(payment.account_id)
        except UnknownAccount:
            return _Failed("the outgoing payment has no ledger account: never funded", False, 0, 0)
        if balance.debits_pending > 0:
            # Packets of a worker that died are still held: wait for them to resolve.
            return _Later(PENDING_RECHECK, sent, delivered)
        # A local payment's one transfer is a posted debit: none, no need to look for it.
        local_done = await self._local_transfer_done(payment) if balance.debits_posted > 0 else None
        if local_done is not None:
            sent, delivered = local_done
        elif balance.debits_posted > sent:
            # Posted after the last progress write: it delivered at least its minimum.
            delivered += payment.least_delivered(balance.debits_posted - sent)
            sent = balance.debits_posted
        url = local_receiver_url(self._node.settings.open_payments_url, payment.receiver)
        if url is None and lease.resumed and not payment.done(sent, delivered):
            checked = await self._remote_progress(payment, sent, delivered)
            if isinstance(checked, _Failed):
                return checked
            delivered = checked
        if payment.done(sent, delivered):
            if local_done is not None:
                await self._settle_local_receiver(payment)
            return _Completed(sent, delivered)
        if sent == 0 and payment.quote_expires_at <= datetime.now(UTC):
            return _Failed("the quote expired before the payment was sent", False, 0, 0)
        if balance.available < payment.budget - sent:
            return _Failed(
                f"the payment's account holds {balance.available}, less than the "
                f"{payment.budget - sent} left to send",
                True,
                sent,
                delivered,
            )
        if url is not None:
            return await self._pay_locally(payment, url, sent, delivered)
        return await self._pay_remotely(payment, lease, sent, delivered)

    async def _remote_progress(self, payment: _Payment, sent: int, delivered: int) -> int | _Failed:
        """Resuming a payment into another node's incoming payment: what it has delivered,
        by what the receiver says it got (where its node offers that, as ours do).

        Packets in flight when a worker died may have been fulfilled downstream without this
        node seeing it (their holds expired): the receiver counts them, we do not. As Rafiki
        does, what the incoming payment still expects is what is left to deliver; that
        assumes no one else pays the same incoming payment meanwhile."""
        if INCOMING_PAYMENT_PATH.match(payment.receiver) is None:
            return delivered
        try:
            view = await fetch_incoming_payment(
                self._node.receiver_http,
                payment.receiver,
                max_seconds=self._node.settings.receiver_fetch_timeout_ms / 1000,
            )
        except ReceiverUnreadable as exc:
            log.info(
                "outgoing payment %s: the receiver's amounts are not known (%s)",
                payment.id, exc, extra=_extra(payment.id),
            )  # fmt: skip
            return delivered
        if view is None:
            gone = "the receiver's node no longer knows the incoming payment"
            return _Failed(gone, False, sent, delivered)
        receive = payment.receive_asset
        if (view.asset_code, view.asset_scale) != (receive.code, receive.scale):
            return _Failed("the receiver's asset is not the quote's", False, sent, delivered)
        full = view.incoming_amount is not None and view.received_amount >= view.incoming_amount
        left = 0 if full else view.remaining(datetime.now(UTC))
        if left is None:
            return delivered
        if left == 0 and not full:
            state = "completed" if view.completed else "expired"
            short = f"the incoming payment was {state} before it was paid in full"
            return _Failed(short, False, sent, delivered)
        counted = max(delivered, payment.receive_amount - left)
        if counted > delivered:
            log.warning(
                "outgoing payment %s: the receiver got %d more than this node saw fulfilled "
                "(packets in flight when a worker stopped)",
                payment.id, counted - delivered, extra=_extra(payment.id),
            )  # fmt: skip
        return counted

    # -- local receivers -------------------------------------------------------------------------

    @staticmethod
    def _local_ids(payment: _Payment) -> tuple[uuid.UUID, uuid.UUID]:
        return (
            uuid.uuid5(_LOCAL_TRANSFERS, f"{payment.id}:0"),
            uuid.uuid5(_LOCAL_TRANSFERS, f"{payment.id}:1"),
        )

    async def _local_transfer_done(self, payment: _Payment) -> tuple[int, int] | None:
        """(sent, delivered) when this payment's local transfer already happened."""
        first, second = self._local_ids(payment)
        transfer = await self._node.ledger.transfer(first)
        if transfer is None or transfer.state is not TransferState.POSTED:
            return None
        other = await self._node.ledger.transfer(second)
        delivered = other.amount if other is not None else transfer.amount
        return transfer.amount, delivered

    async def _pay_locally(
        self, payment: _Payment, url: str, sent: int, delivered: int
    ) -> _Outcome:
        node = self._node
        receiver = await find_receiver(node, url)
        if receiver is None:
            missing = f"no wallet address or incoming payment at {url}"
            return _Failed(missing, False, sent, delivered)
        if (receiver.asset_code, receiver.asset_scale) != (
            payment.receive_asset.code,
            payment.receive_asset.scale,
        ):
            return _Failed("the receiver's asset is not the quote's", False, sent, delivered)
        if not receiver.open_at(datetime.now(UTC)):
            return _Failed("the receiver no longer accepts payments", False, sent, delivered)
        source_amount = payment.budget - sent
        amount = payment.receive_amount - delivered
        if receiver.asset_id == payment.asset_id:
            source_amount = amount = min(source_amount, amount)
        elif payment.rate > 0:
            # What the amount costs at the quote's rate; a fixed-receive budget has the
            # slippage's room on top, which stays in the payment's account.
            cost = amount / payment.rate
            source_amount = min(source_amount, -(-cost.numerator // cost.denominator))
        await node.ledger.ensure_account(receiver.account_kind, receiver.id, receiver.asset_id)
        legs = packet_legs(
            payment.source(paying=True),
            source_amount,
            receiver.account_id,
            receiver.asset_id,
            amount,
            credit_limit=receiver.incoming_amount,
        )
        ids = self._local_ids(payment)
        legs = [dataclasses.replace(leg, id=ids[i]) for i, leg in enumerate(legs)]
        try:
            await node.ledger.create_transfers(legs)
        except CreditLimitExceeded:
            return _Failed(
                "the incoming payment would receive more than its amount", False, sent, delivered
            )
        except InsufficientBalance as exc:
            return _Failed(f"insufficient liquidity: {exc}", True, sent, delivered)
        except TransferExists:
            done = await self._local_transfer_done(payment)
            if done is None:
                return _Failed("a different local transfer exists", False, sent, delivered)
            sent, delivered = done
        except LedgerError as exc:
            return _Failed(f"the ledger refused the transfer: {exc!r}", True, sent, delivered)
        else:
            sent += source_amount
            delivered += amount
        await self._settle_local_receiver(payment, receiver)
        return _Completed(sent, delivered)

    async def _settle_local_receiver(
        self, payment: _Payment, receiver: Receiver | None = None
    ) -> None:
        """An incoming payment paid locally: PROCESSING, or COMPLETED (with its event) once it
        has received its amount."""
        node = self._node
        if receiver is None:
            url = local_receiver_url(node.settings.open_payments_url, payment.receiver)
            receiver = None if url is None else await find_receiver(node, url)
        if receiver is None or receiver.kind is not ReceiverKind.INCOMING_PAYMENT:
            return
        fresh = await node.receivers.incoming_payment(receiver.id)
        if fresh is not None:
            await node.receivers.settle(fresh, node.ledger)

    # -- remote receivers ------------------------------------------------------------------------

    async def _pay_remotely(
        self, payment: _Payment, lease: _Lease, sent: int, delivered: int
    ) -> _Outcome:
        node = self._node
        if payment.credentials is not None and not lease.resumed:
            # The quote's probe resolved them moments ago; a resumed payment asks again.
            resolved = payment.credentials
        else:
            try:
                async with asyncio.timeout_at(lease.deadline):
                    resolved = await resolve_receiver(node, payment.receiver)
            except InvalidReceiver as exc:
                return _Failed(f"invalid receiver: {exc}", True, sent, delivered)
            except TimeoutError:
                return _Failed(self._overran(), True, sent, delivered)
        progress = _Progress(payment, lease, StreamKeys(resolved.shared_secret), sent, delivered)
        link = _PaymentLink(node, payment, progress, lease)
        sender = StreamSender(
            link,
            destination=resolved.destination,
            shared_secret=resolved.shared_secret,
            source_address=node.address,
            source_asset=Asset(payment.asset_code, payment.asset_scale),
            packet_lifetime=PACKET_LIFETIME,
            max_in_flight=MAX_IN_FLIGHT,
            max_packet_amount=payment.max_packet_amount or MAX_UINT64,
        )
        error: str | None = None
        retryable = True
        try:
            async with asyncio.timeout_at(lease.deadline):
                if payment.rate > 0 and payment.max_packet_amount:
                    # The quote probed this path moments ago: pay on what it learned.
                    sender.assume(
                        RateProbe(
                            payment.rate,
                            max(payment.high_rate, payment.rate),
                            payment.max_packet_amount,
                            payment.receive_asset,
                        )
                    )
                else:
                    error, retryable = await self._probe(sender, payment)
                if error is None:
                    link.start_paying()
                    result = await sender.pay(
                        delivery_amount=payment.receive_amount - delivered,
                        min_exchange_rate=payment.min_rate,
                    )
                    if result.error is not None:
                        error = str(result.error)
        except TimeoutError:
            error = self._overran()
        finally:
            # Every packet given to the pipeline is posted or voided before anything is decided.
            await link.pipeline.drain()
            await progress.flushed()
        if not lease.lost:
            # Tell the receiver we are done while the outcome is written: the close packet
            # carries no money and the payment's end need not wait a round trip for it.
            self._spawn(self._close(sender, link), f"outgoing-payment-{payment.id}-close")
        sent, delivered = progress.sent, progress.delivered
        if payment.done(sent, delivered):
            return _Completed(sent, delivered)
        return _Failed(error or "the payment stopped short", retryable, sent, delivered)

    def _overran(self) -> str:
        seconds = self._attempt_timeout.total_seconds()
        return (
            f"the attempt did not finish within {seconds:g} s (OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS)"
        )

    @staticmethod
    async def _close(sender: StreamSender, link: _PaymentLink) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_SECONDS):
                await sender.close()
        await link.pipeline.drain()

    @staticmethod
    async def _probe(sender: StreamSender, payment: _Payment) -> tuple[str | None, bool]:
        """Probe the path (a quote without a rate or packet size); (error, retryable)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT.total_seconds()):
                probe = await sender.probe()
        except TimeoutError:
            return "the rate probe did not finish in time", True
        except PaymentError as exc:
            return f"rate probe failed: {exc}", True
        asset = probe.destination_asset
        if asset is None:
            return "the receiver did not tell its asset", True
        if asset != payment.receive_asset:
            return (
                f"the receiver's asset is {asset.code} at scale {asset.scale}, not the "
                f"quote's {payment.receive_asset.code} at {payment.receive_asset.scale}"
            ), False
        return None, True

    # -- recording the outcome -------------------------------------------------------------------

    async def _record(self, payment: _Payment, lease: _Lease, outcome: _Outcome) -> None:
        node = self._node
        withdrawal = None
        if not isinstance(outcome, _Later) and await node.owed.book_debits_of(payment.account_id):
            # A packet's post is owed (kiungo.connector.owed): the leftover would include money
            # already paid out, offered for withdrawal before the owed post could book it. The
            # payment ends once it is booked (the next attempt finds it done).
            outcome = _Later(
                PENDING_RECHECK,
                payment.sent_amount if outcome.sent is None else outcome.sent,
                payment.delivered_amount if outcome.delivered is None else outcome.delivered,
            )
        if not isinstance(outcome, _Later):
            balance = await node.ledger.balance(payment.account_id)
            if balance.available > 0:
                withdrawal = (payment.account_id, payment.asset_id, balance.available)
        max_attempts = node.settings.max_outgoing_payment_retry_attempts
        async with node.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT state, process_at, state_attempts FROM outgoing_payments "
                "WHERE id = $1 FOR UPDATE",
                payment.id,
            )
            if (
                current is None
                or current["state"] != "SENDING"
                or current["process_at"] != (lease.token)
            ):
                log.warning(
                    "outgoing payment %s: lease lost before its outcome",
                    payment.id,
                    extra=_extra(payment.id),
                )
                return
            attempts = int(current["state_attempts"])
            event: EventType | None = None
            if isinstance(outcome, _Later):
                await conn.execute(
                    "UPDATE outgoing_payments SET process_at = now() + $2::interval, "
                    "sent_amount = $3, delivered_amount = $4, updated_at = now() WHERE id = $1",
                    payment.id, outcome.wait, outcome.sent, outcome.delivered,
                )  # fmt: skip
            elif isinstance(outcome, _Completed):
                await conn.execute(
                    "UPDATE outgoing_payments SET state = 'COMPLETED', process_at = NULL, "
                    "error = NULL, sent_amount = $2, delivered_amount = $3, updated_at = now() "
                    "WHERE id = $1",
                    payment.id, outcome.sent, outcome.delivered,
                )  # fmt: skip
                event = EventType.OUTGOING_PAYMENT_COMPLETED
                log.info(
                    "outgoing payment %s completed: sent %d, delivered %d",
                    payment.id, outcome.sent, outcome.delivered, extra=_extra(payment.id),
                )  # fmt: skip
            elif outcome.retryable and attempts < max_attempts:
                backoff = min(RETRY_BACKOFF * 2**attempts, MAX_RETRY_BACKOFF)
                await conn.execute(
                    "UPDATE outgoing_payments SET state_attempts = state_attempts + 1, "
                    "process_at = now() + $2::interval, sent_amount = coalesce($3, sent_amount), "
                    "delivered_amount = coalesce($4, delivered_amount), updated_at = now() "
                    "WHERE id = $1",
                    payment.id, backoff, outcome.sent, outcome.delivered,
                )  # fmt: skip
                log.info(
                    "outgoing payment %s: attempt %d failed (%s); retrying in %s",
                    payment.id, attempts + 1, outcome.error, backoff, extra=_extra(payment.id),
                )  # fmt: skip
            else:
                await conn.execute(
                    "UPDATE outgoing_payments SET state = 'FAILED', process_at = NULL, "
                    "error = $2, state_attempts = state_attempts + 1, "
                    "sent_amount = coalesce($3, sent_amount), "
                    "delivered_amount = coalesce($4, delivered_amount), updated_at = now() "
                    "WHERE id = $1",
                    payment.id, outcome.error, outcome.sent, outcome.delivered,
                )  # fmt: skip
                event = EventType.OUTGOING_PAYMENT_FAILED
                log.warning(
                    "outgoing payment %s failed: %s",
                    payment.id,
                    outcome.error,
                    extra=_extra(payment.id),
                )
            if event is not None:
                row = await conn.fetchrow(OUTGOING_PAYMENT_EVENT_ROW, payment.id)
                assert row is not None
                await insert_event(
                    conn, event, payment.id, outgoing_payment_data(row), withdrawal=withdrawal
                )
