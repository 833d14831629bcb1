"""Ledger errors: each refusal is its own type, mapped to ILP or GraphQL codes at the edges."""

from __future__ import annotations

__all__ = [
    "AlreadyPosted",
    "AlreadyVoided",
    "CreditLimitExceeded",
    "DifferentAssets",
    "InsufficientBalance",
    "InsufficientLiquidity",
    "InvalidAmount",
    "LedgerError",
    "LedgerUnavailable",
    "SameAccounts",
    "TransferExists",
    "TransferExpired",
    "UnknownAccount",
    "UnknownTransfer",
]


class LedgerError(Exception):
    """A transfer the ledger refused; nothing moved."""


class InsufficientBalance(LedgerError):
    """The debit (or, for a settlement account, the credit) would break the account's flags."""

    def __init__(self, message: str, account_id: object = None) -> None:
        super().__init__(message)
        self.account_id = account_id


class InsufficientLiquidity(InsufficientBalance):
    """An asset or peer liquidity account cannot cover the debit."""


class CreditLimitExceeded(LedgerError):
    """The credit account would receive more than the leg's limit (e.g. an incoming amount)."""


class UnknownAccount(LedgerError):
    pass


class UnknownTransfer(LedgerError):
    pass


class PartialGroup(LedgerError):
    """A post or void named some legs of a multi-leg transfer but not all: its legs happen or
    are released together."""


class TransferExists(LedgerError):
    """The id is taken by a transfer with other parameters."""


class AlreadyPosted(LedgerError):
    pass


class AlreadyVoided(LedgerError):
    pass


class TransferExpired(LedgerError):
    """The pending transfer outlived its timeout; its hold is released and it cannot be posted."""


class InvalidAmount(LedgerError):
    pass


class DifferentAssets(LedgerError):
    """The two accounts of a leg belong to different ledgers (assets)."""


class SameAccounts(LedgerError):
    pass


class LedgerUnavailable(LedgerError):
    """The database could not be reached or the batch could not commit; retry with the same id."""
