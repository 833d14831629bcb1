"""Why quoting refuses: each refusal says what to show (the input at fault, and more)."""

from __future__ import annotations

from kiungo.refusal import Refusal

__all__ = [
    "InvalidQuoteRequest",
    "InvalidReceiver",
    "QuoteError",
    "QuoteNotFound",
    "QuotingUnavailable",
    "RateProbeFailed",
    "WalletAddressInactive",
    "WalletAddressNotFound",
]


class QuoteError(Refusal):
    """Quoting refused, and nothing stored. ``details`` go with the message to the caller: the
    input at fault as ``field``, and what else helps (``quoteError``, ``minSendAmount``)."""


class InvalidQuoteRequest(QuoteError):
    """The request cannot be quoted as it is (the caller's to change)."""


class InvalidReceiver(InvalidQuoteRequest):
    """The receiver is not one this node can pay."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"invalid receiver: {detail}", field="receiver", quoteError="InvalidReceiver"
        )


class RateProbeFailed(InvalidQuoteRequest):
    """The remote receiver's path could not be probed for a rate."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the rate probe failed: {detail}", field="receiver", quoteError="RateProbeFailed"
        )


class WalletAddressNotFound(QuoteError):
    def __init__(self) -> None:
        super().__init__("wallet address not found")


class WalletAddressInactive(QuoteError):
    def __init__(self) -> None:
        super().__init__("the wallet address is inactive")


class QuoteNotFound(QuoteError):
    def __init__(self) -> None:
        super().__init__("quote not found")


class QuotingUnavailable(QuoteError):
    """The rates service or the connector could not quote, or answered something unusable; a
    retry may do."""
