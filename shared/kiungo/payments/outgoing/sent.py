"""What an outgoing payment has sent, as both APIs show it (the admin API's
``OutgoingPayment.sentAmount``, the Open Payments ``sentAmount``).

While a payment is SENDING, every packet it has had fulfilled is a posted debit of its ledger
account (booked before the Fulfill is passed back to the sender), the truth Rafiki reads too
(``getTotalSent``); the row's ``sent_amount`` is the worker's progress, written after each
fulfilled packet (one write at a time) and so a moment behind, or further if the worker died.
A SENDING payment has sent the larger of the two (no withdrawal can debit its account before it
ends; a post the ledger could not take yet, :mod:`kiungo.connector.owed`, is in the row). Once
the payment has ended the row holds what the worker recorded at the end (what is left was
perhaps withdrawn since, a debit that was never sent); before it is funded it sent nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.payments.outgoing.states import States

__all__ = ["sent_amounts"]


async def sent_amounts(ledger: Ledger, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """What each payment has sent (rows with its ``id``, ``state`` and ``sent_amount``), in
    order: the ledger is read for the SENDING ones only."""
    sending = [row["id"] for row in rows if row["state"] == States.SENDING]
    posted: dict[Any, int] = {}
    if sending:
        balances = await ledger.balances(
            [account_id_for(AccountKind.OUTGOING_PAYMENT, payment_id) for payment_id in sending]
        )
        posted = {
            payment_id: balance.debits_posted
            for payment_id, balance in zip(sending, balances, strict=True)
            if balance is not None
        }
    return [max(int(row["sent_amount"]), posted.get(row["id"], 0)) for row in rows]
