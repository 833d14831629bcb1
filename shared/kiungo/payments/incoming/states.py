"""The incoming payment's states and the transitions between them, as data.

Rafiki's lifecycle: a payment is created PENDING; its first money makes it PROCESSING; it is
COMPLETED once it has received its incoming amount (or early, by ``completeReceiver``), or
EXPIRED past its expiry (or cancelled, by ``cancelIncomingPayment``, while still PENDING).
COMPLETED and EXPIRED are final: what it received may then be withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable

from kiungo.models import IncomingPaymentState
from kiungo.payments.lifecycle import Lifecycle

__all__ = ["ENDED", "LIFECYCLE", "OPEN", "States", "sql_list"]

States = IncomingPaymentState

LIFECYCLE = Lifecycle(
    "incoming payment",
    States,
    {
        States.PENDING: {States.PROCESSING, States.COMPLETED, States.EXPIRED},
        States.PROCESSING: {States.COMPLETED, States.EXPIRED},
    },
)

OPEN = LIFECYCLE.sources(States.COMPLETED)
"""The states in which a payment still accepts money (before its expiry)."""

ENDED = frozenset(s for s in States if LIFECYCLE.is_final(s))
"""The states a payment ends in: what it received may then be withdrawn."""


def sql_list(states: Iterable[States]) -> str:
    """``states`` as an SQL list of literals, ``('PENDING', 'PROCESSING')``, in the enum's
    order. Literals rather than a parameter: the planner matches them to the partial index on
    open payments (``ix_incoming_payments_open_expiry``), which a parameter would not."""
    chosen = set(states)
    return "(" + ", ".join(f"'{s.value}'" for s in States if s in chosen) + ")"
