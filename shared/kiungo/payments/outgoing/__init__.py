"""The outgoing payment lifecycle: its states, the allowed transitions and the store functions
that perform them.

The backend creates a payment (FUNDING), funds it (SENDING) or cancels it (CANCELLED); the
connector's sending worker (:mod:`kiungo.connector.sending`) ends it COMPLETED or FAILED, or
counts a failed attempt and tries again. Both call :mod:`kiungo.payments.outgoing.store`; no
other module changes an outgoing payment's state.
"""

from kiungo.payments.outgoing import store
from kiungo.payments.outgoing.states import ENDED, LIFECYCLE, States

__all__ = ["ENDED", "LIFECYCLE", "States", "store"]
