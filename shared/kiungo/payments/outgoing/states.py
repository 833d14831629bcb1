"""The outgoing payment's states and the transitions between them, as data.

Rafiki's lifecycle: a payment is created FUNDING; funding it (the backend's
``depositOutgoingPaymentLiquidity``) makes it SENDING, or it is CANCELLED before that; the
connector's worker ends a SENDING payment COMPLETED or FAILED. A failed attempt that will be
retried is not a state change: the payment stays SENDING with one more attempt counted
(:func:`kiungo.payments.outgoing.store.retry`).
"""

from __future__ import annotations

from kiungo.models import OutgoingPaymentState
from kiungo.payments.lifecycle import Lifecycle

__all__ = ["ENDED", "LIFECYCLE", "States"]

States = OutgoingPaymentState

LIFECYCLE = Lifecycle(
    "outgoing payment",
    States,
    {
        States.FUNDING: {States.SENDING, States.CANCELLED},
        States.SENDING: {States.COMPLETED, States.FAILED},
    },
)

ENDED = frozenset(s for s in States if LIFECYCLE.is_final(s))
"""The states a payment ends in: what is left in its account may then be withdrawn."""
