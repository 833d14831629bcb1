"""One attempt at a payment: where it stands, then what is left paid.

**Resuming.** A payment claimed before (after a crash, a retry or a stop) first waits until its
account has no pending holds (a crashed worker's packets resolve by their expiry) and no owed
post (:mod:`kiungo.connector.owed`) debits it (nor does a payment end while one does), then
takes what was sent from the ledger (posted debits of the account, the truth for every packet
whose fulfillment we saw) and what was delivered from the row, adding for packets posted after
the last progress write the least they can have delivered (their amount at the minimum rate).
The bound: a resumed payment never re-sends a packet whose Fulfill this node posted. Packets
that were in flight when the worker died and were fulfilled downstream without this node
seeing it (their holds expire, so the ledger counts them as unsent; at most ``MAX_IN_FLIGHT``
packets of at most the maximum packet amount each) are not paid twice when the receiver is an
incoming payment whose node tells how much it received (:mod:`kiungo.openpayments.remote`, as ours
do): a resumed worker reads it and delivers only what it still expects, as Rafiki does. This
node's books then show those packets unpaid while the next node's show them paid: the
difference is this operator's, never the sender's nor the receiver's. To a receiver that does
not tell (a wallet address, another implementation), those packets can be paid twice. (Within
one process nothing is lost: a stopping worker lets its packets finish.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from kiungo.connector.node import Node
from kiungo.connector.sending import local, remote
from kiungo.connector.sending.lease import Lease
from kiungo.connector.sending.payment import (
    PENDING_RECHECK,
    Completed,
    Failed,
    Later,
    Outcome,
    Payment,
    log,
    log_extra,
)
from kiungo.ledger import UnknownAccount
from kiungo.openpayments.client import OpenPaymentsError
from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    IncomingPaymentView,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.payments.receivers import local_receiver_url

__all__ = ["attempt"]


async def attempt(
    node: Node,
    payment: Payment,
    lease: Lease,
    *,
    spawn: Callable[[Coroutine[Any, Any, None], str], None],
) -> Outcome:
    """One attempt at ``payment``: where it stands (the ledger, the row, a resumed payment's
    receiver), then the rest paid locally or over STREAM."""
    ledger = node.ledger
    sent, delivered = payment.sent_amount, payment.delivered_amount
    if await node.owed.book_debits_of(payment.account_id):
        # A fulfilled packet not yet booked: what was sent is not in the ledger yet.
        return Later(PENDING_RECHECK, sent, delivered)
    try:
        balance = await ledger.balance(payment.account_id)
    except UnknownAccount:
        return Failed("the outgoing payment has no ledger account: never funded", False, 0, 0)
    if balance.debits_pending > 0:
        # Packets of a worker that died are still held: wait for them to resolve.
        return Later(PENDING_RECHECK, sent, delivered)
    # A local payment's one transfer is a posted debit: none, no need to look for it.
    local_done = await local.transfer_done(node, payment) if balance.debits_posted > 0 else None
    if local_done is not None:
        sent, delivered = local_done
    elif balance.debits_posted > sent:
        # Posted after the last progress write: it delivered at least its minimum.
        delivered += payment.least_delivered(balance.debits_posted - sent)
        sent = balance.debits_posted
    url = local_receiver_url(node.settings.open_payments_url, payment.receiver)
    if url is None and lease.resumed and not payment.done(sent, delivered):
        checked = await _remote_progress(node, payment, sent, delivered)
        if isinstance(checked, Failed):
            return checked
        delivered = checked
    if payment.done(sent, delivered):
        if local_done is not None:
            await local.settle_receiver(node, payment)
        return Completed(sent, delivered)
    if sent == 0 and payment.quote_expires_at <= datetime.now(UTC):
        return Failed("the quote expired before the payment was sent", False, 0, 0)
    if balance.available < payment.budget - sent:
        return Failed(
            f"the payment's account holds {balance.available}, less than the "
            f"{payment.budget - sent} left to send",
            True,
            sent,
            delivered,
        )
    if url is not None:
        return await local.pay(node, payment, url, sent, delivered)
    return await remote.pay(node, payment, lease, sent, delivered, spawn=spawn)


async def _remote_progress(node: Node, payment: Payment, sent: int, delivered: int) -> int | Failed:
    """Resuming a payment into another node's incoming payment: what it has delivered,
    by what the receiver says it got (where its node offers that, as ours do).

    Packets in flight when a worker died may have been fulfilled downstream without this
    node seeing it (their holds expired): the receiver counts them, we do not. As Rafiki
    does, what the incoming payment still expects is what is left to deliver; that
    assumes no one else pays the same incoming payment meanwhile."""
    if INCOMING_PAYMENT_PATH.match(payment.receiver) is None:
        return delivered
    view: IncomingPaymentView | None
    try:
        view = await node.open_payments.incoming_payment(payment.receiver)
    except OpenPaymentsError as exc:
        view = None
        if exc.kind != "NotFound":  # not over Open Payments: maybe Kiungo's older JSON
            legacy = await _legacy_view(node, payment)
            if isinstance(legacy, Failed):
                return delivered
            view = legacy
    if view is None:
        gone = "the receiver's node no longer knows the incoming payment"
        return Failed(gone, False, sent, delivered)
    receive = payment.receive_asset
    if (view.asset_code, view.asset_scale) != (receive.code, receive.scale):
        return Failed("the receiver's asset is not the quote's", False, sent, delivered)
    full = view.incoming_amount is not None and view.received_amount >= view.incoming_amount
    left = 0 if full else view.remaining(datetime.now(UTC))
    if left is None:
        return delivered
    if left == 0 and not full:
        state = "completed" if view.completed else "expired"
        short = f"the incoming payment was {state} before it was paid in full"
        return Failed(short, False, sent, delivered)
    counted = max(delivered, payment.receive_amount - left)
    if counted > delivered:
        log.warning(
            "outgoing payment %s: the receiver got %d more than this node saw fulfilled "
            "(packets in flight when a worker stopped)",
            payment.id, counted - delivered, extra=log_extra(payment.id),
        )  # fmt: skip
    return counted


async def _legacy_view(node: Node, payment: Payment) -> IncomingPaymentView | Failed | None:
    """The incoming payment in Kiungo's older JSON (None: its node does not know it; Failed:
    its amounts are not told)."""
    try:
        return await fetch_incoming_payment(
            node.receiver_http,
            payment.receiver,
            max_seconds=node.settings.receiver_fetch_timeout_ms / 1000,
        )
    except ReceiverUnreadable as exc:
        log.info(
            "outgoing payment %s: the receiver's amounts are not known (%s)",
            payment.id, exc, extra=log_extra(payment.id),
        )  # fmt: skip
        return Failed(str(exc), True, 0, 0)
