"""Paying a local receiver: no ILP, one ledger transfer.

A receiver under OPEN_PAYMENTS_URL naming one of our wallet addresses or incoming payments is
paid by one ledger transfer of what the receive amount costs at the quote's rate (at most the
budget) out of the payment's account and of the receive amount into the receiver's (through
the assets' liquidity accounts across assets; an incoming payment's amount is the credit
limit). Its transfer ids derive from the payment's, so a retry after a crash replays it instead
of paying twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from kiungo.connector.node import Node
from kiungo.connector.pipeline.accounting import packet_legs
from kiungo.connector.receivers import Receiver, ReceiverKind
from kiungo.connector.sending.payment import Completed, Failed, Outcome, Payment
from kiungo.connector.spsp import find_receiver
from kiungo.ledger import (
    CreditLimitExceeded,
    InsufficientBalance,
    LedgerError,
    TransferExists,
    TransferState,
)
from kiungo.payments.receivers import local_receiver_url

__all__ = ["pay", "settle_receiver", "transfer_done"]

# Namespace of the ids of a local payment's transfer legs (uuid5 of "<payment id>:<leg>").
_LOCAL_TRANSFERS = uuid.UUID("9b0a6c1e-3f5d-4e7a-b2c8-1d4e6f8a0b3c")


def _ids(payment: Payment) -> tuple[uuid.UUID, uuid.UUID]:
    return (
        uuid.uuid5(_LOCAL_TRANSFERS, f"{payment.id}:0"),
        uuid.uuid5(_LOCAL_TRANSFERS, f"{payment.id}:1"),
    )


async def transfer_done(node: Node, payment: Payment) -> tuple[int, int] | None:
    """(sent, delivered) when this payment's local transfer already happened."""
    first, second = _ids(payment)
    transfer = await node.ledger.transfer(first)
    if transfer is None or transfer.state is not TransferState.POSTED:
        return None
    other = await node.ledger.transfer(second)
    delivered = other.amount if other is not None else transfer.amount
    return transfer.amount, delivered


async def pay(node: Node, payment: Payment, url: str, sent: int, delivered: int) -> Outcome:
    """Pay ``payment`` to the local receiver at ``url`` in one ledger transfer."""
    receiver = await find_receiver(node, url)
    if receiver is None:
        missing = f"no wallet address or incoming payment at {url}"
        return Failed(missing, False, sent, delivered)
    if (receiver.asset_code, receiver.asset_scale) != (
        payment.receive_asset.code,
        payment.receive_asset.scale,
    ):
        return Failed("the receiver's asset is not the quote's", False, sent, delivered)
    if not receiver.open_at(datetime.now(UTC)):
        return Failed("the receiver no longer accepts payments", False, sent, delivered)
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
    ids = _ids(payment)
    legs = [dataclasses.replace(leg, id=ids[i]) for i, leg in enumerate(legs)]
    try:
        await node.ledger.create_transfers(legs)
    except CreditLimitExceeded:
        return Failed(
            "the incoming payment would receive more than its amount", False, sent, delivered
        )
    except InsufficientBalance as exc:
        return Failed(f"insufficient liquidity: {exc}", True, sent, delivered)
    except TransferExists:
        done = await transfer_done(node, payment)
        if done is None:
            return Failed("a different local transfer exists", False, sent, delivered)
        sent, delivered = done
    except LedgerError as exc:
        return Failed(f"the ledger refused the transfer: {exc!r}", True, sent, delivered)
    else:
        sent += source_amount
        delivered += amount
    await settle_receiver(node, payment, receiver)
    return Completed(sent, delivered)


async def settle_receiver(node: Node, payment: Payment, receiver: Receiver | None = None) -> None:
    """An incoming payment paid locally: PROCESSING, or COMPLETED (with its event) once it
    has received its amount."""
    if receiver is None:
        url = local_receiver_url(node.settings.open_payments_url, payment.receiver)
        receiver = None if url is None else await find_receiver(node, url)
    if receiver is None or receiver.kind is not ReceiverKind.INCOMING_PAYMENT:
        return
    fresh = await node.receivers.incoming_payment(receiver.id)
    if fresh is not None:
        await node.receivers.settle(fresh, node.ledger)
