"""The incoming payment's lifecycle: its states and allowed transitions (:mod:`.states`), the
store functions that perform each transition with its webhook event (:mod:`.store`), and the
expiry a new payment may have (:mod:`.expiry`)."""

from kiungo.payments.incoming.expiry import InvalidExpiry, expiry
from kiungo.payments.incoming.states import ENDED, LIFECYCLE, OPEN, States, sql_list

__all__ = ["ENDED", "LIFECYCLE", "OPEN", "InvalidExpiry", "States", "expiry", "sql_list"]
