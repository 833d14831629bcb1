"""Quotes: what sending from a wallet address of this node to a receiver debits and delivers.

A quote fixes the amounts of one outgoing payment until it expires (QUOTE_LIFESPAN, and never
after the receiver's own expiry). All money is integers in the assets' smallest units and every
rate an exact ``Fraction`` of those units: *receiver's units per unit of ours*.

Receivers:

- **local**: a URL under OPEN_PAYMENTS_URL, ``<wallet address URL>`` of an active wallet
  address or ``<wallet address URL>/incoming-payments/<id>`` of an open incoming payment (a
  ``$pointer`` reads as ``https://``). The rate is the rates service's (EXCHANGE_RATES_URL; 1
  for the same currency), scaled by the two assets' scales; low, high and estimated rates are
  that one rate.
- **remote**: anything else (an http(s) URL answering SPSP, or a ``$pointer``). The connector
  probes it (``POST {ILP_CONNECTOR_URL}/internal/quote``); its low estimated rate is the rate.

Amounts (DESIGN §6): ``receive = floor(sent × rate)``, and the other way round ceil (by the
minimum rate, below); the minimum rate a payment accepts is ``rate × (1 - SLIPPAGE)``.

The sending fee (the sender's asset's latest SENDING fee: ``fixed`` plus ``basis_points``) is
charged on what is sent: ``fee(sent) = fixed + ceil(sent × basis_points / 10000)`` and
``debit = sent + fee``.

- fixed-receive: ``sent = ceil(receive / minimum rate)``, ``debit = sent + fee(sent)``: as
  Rafiki (and ``@interledger/pay``) quote it, the budget has room for the rate to move within
  the slippage and for every packet's rounding down; what the payment did not need stays in
  its account for withdrawal when it completes.
- fixed-send: ``sent`` is the largest amount with ``sent + fee(sent) <= debit``, which is
  ``floor(10000 × (debit - fixed) / (10000 + basis_points))``, and the fee is ``debit - sent``.
  That equals ``fee(sent)`` whenever some ``sent`` satisfies ``debit = sent + fee(sent)``
  exactly; when none does (the rounding of the basis points skips ``debit``), the fee is
  ``fee(sent) + 1``: the one unit left over is the node's, never the sender's surprise.

The quote keeps the fee it charged (``fee_amount``): a payment sends at most
``debit_amount - fee_amount``.
"""

from kiungo.payments.quotes.errors import (
    InvalidQuoteRequest,
    InvalidReceiver,
    QuoteError,
    QuoteNotFound,
    QuotingUnavailable,
    RateProbeFailed,
    WalletAddressInactive,
    WalletAddressNotFound,
)
from kiungo.payments.quotes.fees import SendingFee, sending_fee
from kiungo.payments.quotes.quoting import Amount, Quoting
from kiungo.payments.quotes.service import create_quote, load_quote

__all__ = [
    "Amount",
    "InvalidQuoteRequest",
    "InvalidReceiver",
    "QuoteError",
    "QuoteNotFound",
    "Quoting",
    "QuotingUnavailable",
    "RateProbeFailed",
    "SendingFee",
    "WalletAddressInactive",
    "WalletAddressNotFound",
    "create_quote",
    "load_quote",
    "sending_fee",
]
