"""The outgoing payment worker: sends the payments the backend has funded (state SENDING).

One module per idea, in the order a payment meets them:

- :mod:`.worker` — the claim loop: polls (and listens for payments-due) and runs one attempt
  per claimed payment, at most MAX_CONCURRENT_PAYMENTS at once;
- :mod:`.lease` — claiming a payment, renewing the lease, the attempt's deadline;
- :mod:`.payment` — the payment as loaded (its quote's amounts and rates) and the outcomes;
- :mod:`.attempt` — one attempt: where a payment stands (a resumed one reconciled with the
  ledger and its receiver), then the rest paid by :mod:`.local` (one ledger transfer to our
  own receiver) or :mod:`.remote` (STREAM through our own packet path);
- :mod:`.outcome` — COMPLETED, a retry with backoff or FAILED, written through
  :mod:`kiungo.payments.outgoing.store` with its event.

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
"""

from kiungo.connector.sending.lease import LEASE
from kiungo.connector.sending.remote import MAX_IN_FLIGHT
from kiungo.connector.sending.worker import OutgoingPaymentWorker

__all__ = ["LEASE", "MAX_IN_FLIGHT", "OutgoingPaymentWorker"]
